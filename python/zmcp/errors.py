"""zmcp's errors as Python exceptions: one class per wire code, all under ZmcpError.

A code that travelled on the wire (from the broker or the called peer) raises the class of
that code with ``origin`` set to ``"broker"`` or ``"peer"``; local failures (timeout, closed,
config...) have their own classes. ``err.code`` is always the protocol's string code.
"""
from __future__ import annotations

WIRE_CODES = (
    "no_route", "busy", "too_large", "bad_frame", "expired", "bad_seal", "replay",
    "unknown_tool", "invalid_args", "tool_failed", "unsupported_version", "forbidden",
    "unknown_job", "cancelled", "token_missing", "token_invalid", "token_expired",
    "token_not_yet_valid", "token_audience", "token_key_mismatch", "token_scope",
    "revoked", "rate_limited", "unavailable", "displaced",
)
LOCAL_CODES = ("timeout", "aborted", "closed", "config", "cert", "unknown_peer", "handshake_failed", "token_unavailable")
#: Codes worth another attempt with the same request id (nothing ran, or the answer was lost).
RETRYABLE = frozenset({"busy", "no_route", "timeout"})


class ZmcpError(Exception):
    """Base class. ``code`` is the protocol's error code; ``origin`` is "broker", "peer" or "local"."""

    code = "tool_failed"

    def __init__(self, message: str = "", *, code: str | None = None, origin: str = "local"):
        super().__init__(message)
        if code is not None:
            self.code = code
        self.origin = origin
        self.message = message

    def to_wire(self) -> dict:
        return {"code": self.code, "message": self.message}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, origin={self.origin!r}, message={self.message!r})"


def _camel(code: str) -> str:
    return "".join(part.capitalize() for part in code.split("_")) + "Error"


#: code → exception class, e.g. "no_route" → NoRouteError.
ERROR_CLASSES: dict[str, type[ZmcpError]] = {}
for _code in WIRE_CODES + LOCAL_CODES:
    _cls = type(_camel(_code), (ZmcpError,), {"code": _code, "__doc__": f"Error code ``{_code}``."})
    ERROR_CLASSES[_code] = _cls
    globals()[_cls.__name__] = _cls

TimeoutError_ = ERROR_CLASSES["timeout"]  # noqa: N816 (also exported as ZmcpTimeoutError)
ZmcpTimeoutError = TimeoutError_
ProtocolError = ZmcpError  # a refusal raised while decoding carries its wire code


def error_for(code: str, message: str, origin: str = "local") -> ZmcpError:
    """The exception for ``code``. An unknown code from a newer peer becomes tool_failed, text kept."""
    cls = ERROR_CLASSES.get(code)
    if cls is None or (origin != "local" and code not in WIRE_CODES):
        return ERROR_CLASSES["tool_failed"](f"{code}: {message}", origin=origin)
    return cls(message, origin=origin)


def remote_error(body: object, origin: str) -> ZmcpError:
    if not isinstance(body, dict) or not isinstance(body.get("code"), str):
        return ERROR_CLASSES["bad_frame"]("error answer without an error", origin=origin)
    return error_for(body["code"], str(body.get("message", "")), origin)


__all__ = ["ZmcpError", "ERROR_CLASSES", "WIRE_CODES", "LOCAL_CODES", "RETRYABLE", "error_for", "remote_error", "ZmcpTimeoutError"] + [
    c.__name__ for c in ERROR_CLASSES.values()
]
