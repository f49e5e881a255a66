"""The wire format of zmcp protocol v1 (see docs/PROTOCOL.md): Z85, the msgpack guard, the
header and inner message codecs with their checks, the seal, service addresses, job ids and
the replica proof. Pure functions, no sockets: the conformance vectors test this module.
"""
from __future__ import annotations

import functools
import hashlib
import math
import os
import re
from collections import OrderedDict

import msgpack
import nacl.bindings as nb

from .errors import ZmcpError, error_for

PROTOCOL_VERSION = 1
MAX_HEADER_BYTES = 512
DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024
MAX_DEPTH = 32
#: Values in one message, all containers together (a map entry counts two): PROTOCOL §5.2.
MAX_ELEMENTS = 100_000
#: A job result travels two levels down in a poll answer ({st, result: {..., result}}).
MAX_JOB_RESULT_DEPTH = MAX_DEPTH - 2
MAX_NACK_MSG_BYTES = 256
TAG_BYTES = 16
NONCE_BYTES = 24
SEAL_OVERHEAD = TAG_BYTES + NONCE_BYTES
SERVICE_PREFIX = "svc:"
PROOF_WINDOW_MS = 30_000
# "pub": a publication (docs/EVENTS.md); this package neither publishes nor subscribes, but
# reads the kind so that one reaching it is dropped as unsolicited, not refused as garbage.
KINDS = ("req", "res", "evt", "hb", "ack", "nack", "pub")
RESPONSE_STATUSES = ("ok", "accepted", "error")
JOB_STATUSES = ("running", "done", "error", "cancelled")
_SERVICE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_JOB_ID = re.compile(r"^[0-9a-f]{96}\Z")


def refusal(code: str, message: str) -> ZmcpError:
    return error_for(code, message, "local")


# ---- Z85 (ZeroMQ RFC 32) --------------------------------------------------------------------
Z85_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"
_Z85_DECODE = {c: i for i, c in enumerate(Z85_ALPHABET)}


def z85_encode(data: bytes) -> str:
    if len(data) % 4:
        raise ValueError(f"z85: length {len(data)} is not a multiple of 4")
    out = []
    for i in range(0, len(data), 4):
        value = int.from_bytes(data[i:i + 4], "big")
        chunk = []
        for _ in range(5):
            chunk.append(Z85_ALPHABET[value % 85])
            value //= 85
        out.append("".join(reversed(chunk)))
    return "".join(out)


def z85_decode(text: str) -> bytes:
    if len(text) % 5:
        raise ValueError(f"z85: length {len(text)} is not a multiple of 5")
    out = bytearray()
    for i in range(0, len(text), 5):
        value = 0
        for ch in text[i:i + 5]:
            digit = _Z85_DECODE.get(ch)
            if digit is None:
                raise ValueError(f"z85: invalid character {ch!r}")
            value = value * 85 + digit
        if value > 0xFFFFFFFF:
            raise ValueError("z85: group overflows 32 bits")
        out += value.to_bytes(4, "big")
    return bytes(out)


def is_z85_key(text: object) -> bool:
    """True for the Z85 text of a 32-byte key: 40 valid characters, no group above 32 bits."""
    if not isinstance(text, str) or len(text) != 40:
        return False
    return _is_z85_key_text(text)


@functools.lru_cache(maxsize=4096)  # asked of every message's sender and destination; keys repeat
def _is_z85_key_text(text: str) -> bool:
    try:
        z85_decode(text)
    except ValueError:
        return False
    return True


# ---- msgpack ------------------------------------------------------------------------------

def check_msgpack(data: bytes, max_depth: int, max_elements: int = MAX_ELEMENTS) -> None:
    """Structural check before decoding (refuses ext types, 0xc1, truncation, excess depth,
    containers declaring more values than bytes remain, more than ``max_elements`` values in
    all containers together (a map entry counts two), trailing bytes). Raises bad_frame."""
    elements = 0
    end = len(data)
    p = 0

    def bad(why: str) -> ZmcpError:
        return refusal("bad_frame", f"message is not acceptable msgpack: {why} (at byte {p})")

    def take(n: int) -> int:
        nonlocal p
        if p + n > end:
            raise bad("truncated")
        v = int.from_bytes(data[p:p + n], "big")
        p += n
        return v

    open_ = [1]
    while open_:
        if open_[-1] == 0:
            open_.pop()
            continue
        open_[-1] -= 1
        b = take(1)
        skip = count = 0
        if b <= 0x7F or b >= 0xE0 or b in (0xC0, 0xC2, 0xC3):
            pass
        elif b <= 0x8F:
            count = (b & 0x0F) * 2
        elif b <= 0x9F:
            count = b & 0x0F
        elif b <= 0xBF:
            skip = b & 0x1F
        elif b in (0xC4, 0xD9):
            skip = take(1)
        elif b in (0xC5, 0xDA):
            skip = take(2)
        elif b in (0xC6, 0xDB):
            skip = take(4)
        elif b in (0xCC, 0xD0):
            skip = 1
        elif b in (0xCD, 0xD1):
            skip = 2
        elif b in (0xCA, 0xCE, 0xD2):
            skip = 4
        elif b in (0xCB, 0xCF, 0xD3):
            skip = 8
        elif b == 0xDC:
            count = take(2)
        elif b == 0xDD:
            count = take(4)
        elif b == 0xDE:
            count = take(2) * 2
        elif b == 0xDF:
            count = take(4) * 2
        else:
            raise bad("the never-used byte 0xc1" if b == 0xC1 else "extension types are not accepted")
        if skip:
            if p + skip > end:
                raise bad("truncated")
            p += skip
        if count:
            if count > end - p:
                raise bad(f"a container declares {count} values but {end - p} bytes remain")
            elements += count
            if elements > max_elements:
                raise bad(f"more than {max_elements} values in one message")
            if len(open_) > max_depth:
                raise bad(f"nested deeper than {max_depth}")
            open_.append(count)
    if p != end:
        raise bad(f"{end - p} bytes after the value")


def _no_ext(code: int, data: bytes):  # pragma: no cover - check_msgpack refuses ext first
    raise refusal("bad_frame", "extension types are not accepted")


def pack(value: object) -> bytes:
    """msgpack as zmcp writes it: bytes as bin, str as str, int as the shortest int, float as float64."""
    return msgpack.packb(value, use_bin_type=True, use_single_float=False, strict_types=False)


def unpack(data: bytes, max_depth: int = MAX_DEPTH) -> object:
    check_msgpack(data, max_depth)
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False, ext_hook=_no_ext, use_list=True)
    except ZmcpError:
        raise
    except Exception as err:  # invalid UTF-8 in a str, etc.
        raise refusal("bad_frame", f"message is not msgpack: {err}") from err


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_int(v: object) -> bool:
    # A float64 holding an integer is the same JS number: accepted (docs/PROTOCOL.md §4).
    return _is_number(v) and float(v).is_integer() and abs(v) <= 2**53 - 1


def _bytes(v: object, n: int) -> bool:
    return isinstance(v, bytes) and len(v) == n


def _str(v: object, max_len: int, min_len: int = 0) -> bool:
    # Caps count UTF-16 code units, as JS string length does.
    return isinstance(v, str) and min_len <= len(v.encode("utf-16-le")) // 2 <= max_len


# "dur": a durable message (docs/DURABLE.md): set on the answers and events of a durable request.
# "sq": a publication's sequence number on its topic (docs/PROTOCOL.md §19).
HEADER_KEYS = ("v", "k", "id", "to", "exp", "re", "as", "dur", "sq", "code", "msg")


def encode_header(header: dict) -> bytes:
    """msgpack of the header in its own key order (any order is valid: receivers hash the
    bytes as received); absent fields are omitted, never written as nil."""
    return pack({k: v for k, v in header.items() if v is not None})


def decode_header(frame: bytes) -> dict:
    """Header frame → dict. Raises too_large | bad_frame | unsupported_version."""
    if len(frame) > MAX_HEADER_BYTES:
        raise refusal("too_large", f"header of {len(frame)} bytes exceeds {MAX_HEADER_BYTES}")
    h = unpack(frame)
    if not isinstance(h, dict):
        raise refusal("bad_frame", "invalid header: not a map")
    problem = _header_problem(h)
    if problem:
        raise refusal("bad_frame", f"invalid header: {problem}")
    if h["v"] != PROTOCOL_VERSION:
        raise refusal("unsupported_version", f"protocol version {h['v']} is not {PROTOCOL_VERSION}")
    h["exp"] = math.floor(h["exp"])
    return h


def _header_problem(h: dict) -> str | None:
    for key in h:
        if key not in HEADER_KEYS:
            return f"unknown key {key!r}"
    if not _is_number(h.get("v")):
        return "v must be a number"
    if h.get("k") not in KINDS:
        return "k must be one of " + ", ".join(KINDS)
    if not _bytes(h.get("id"), 16):
        return "id must be 16 bytes (bin)"
    if not _str(h.get("to"), 128):
        return "to must be a string of at most 128 characters"
    # A fractional exp (a peer computing ms as a float) is read floored (docs/PROTOCOL.md, time rules).
    if not _is_number(h.get("exp")) or not math.isfinite(h["exp"]) or h["exp"] < 0 or h["exp"] > 2**53 - 1:
        return "exp must be a non-negative number of ms"
    if "re" in h and not _bytes(h["re"], 16):
        return "re must be 16 bytes (bin)"
    if "as" in h and not _str(h["as"], 128):
        return "as must be a string of at most 128 characters"
    if "dur" in h and h["dur"] is not True:
        return "dur must be true when present"
    if "sq" in h and (not _is_int(h["sq"]) or h["sq"] < 0):
        return "sq must be a non-negative integer"
    if "code" in h and not _str(h["code"], 64):
        return "code must be a string of at most 64 characters"
    if "msg" in h and not _str(h["msg"], 1024):
        return "msg must be a string of at most 1024 characters"
    return None


def digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def encode_inner(draft: dict, header_bytes: bytes) -> bytes:
    """An inner message bound to ``header_bytes`` (its ``h`` is the SHA-256 of them), msgpack."""
    body = {k: v for k, v in draft.items() if v is not None or k in ("args", "result")}
    body["h"] = digest(header_bytes)
    return pack(body)


_INNER_KEYS = {
    "req": {"t", "h", "ts", "rid", "tool", "args", "tok", "tc"},
    "res": {"t", "h", "ts", "st", "result", "error"},
    "evt": {"t", "h", "ts", "job", "st", "progress", "result", "error"},
}


def _error_body_problem(e: object) -> str | None:
    if not isinstance(e, dict) or set(e) != {"code", "message"}:
        return "error must be {code, message}"
    if not _str(e["code"], 64) or not _str(e["message"], 4096):
        return "error.code (<= 64) and error.message (<= 4096) must be strings"
    return None


def _trace_context_problem(tc: object) -> str | None:
    """§8.1: the caller's W3C trace context, {traceparent: str <= 128, tracestate?: str <= 512}.
    Accepted and not used here (this agent records no spans); never identity or authorization."""
    if not isinstance(tc, dict) or "traceparent" not in tc or not set(tc) <= {"traceparent", "tracestate"}:
        return "tc must be {traceparent, tracestate?}"
    if not _str(tc["traceparent"], 128) or "tracestate" in tc and not _str(tc["tracestate"], 512):
        return "tc.traceparent (<= 128) and tc.tracestate (<= 512) must be strings"
    return None


def _inner_problem(m: dict) -> str | None:
    t = m.get("t")
    if t not in _INNER_KEYS:
        return "t must be req, res or evt"
    for key in m:
        if key not in _INNER_KEYS[t]:
            return f"unknown key {key!r}"
    if not _bytes(m.get("h"), 32):
        return "h must be 32 bytes (bin)"
    if not _is_number(m.get("ts")):
        return "ts must be a number"
    if t == "req":
        if not _bytes(m.get("rid"), 16):
            return "rid must be 16 bytes (bin)"
        if not _str(m.get("tool"), 256, 1):
            return "tool must be a string of 1 to 256 characters"
        if "args" not in m:
            return "args is required"
        if "tok" in m and not _str(m["tok"], 8192):
            return "tok must be a string of at most 8192 characters"
        if "tc" in m:
            return _trace_context_problem(m["tc"])
        return None
    if t == "res":
        if m.get("st") not in RESPONSE_STATUSES:
            return "st must be one of " + ", ".join(RESPONSE_STATUSES)
        return _error_body_problem(m["error"]) if "error" in m else None
    if not _str(m.get("job"), 128):
        return "job must be a string of at most 128 characters"
    if m.get("st") not in JOB_STATUSES:
        return "st must be one of " + ", ".join(JOB_STATUSES)
    if "progress" in m:
        p = m["progress"]
        if not isinstance(p, dict) or not set(p) <= {"progress", "total", "message"} or not _is_number(p.get("progress")):
            return "progress must be {progress, total?, message?}"
        if "total" in p and not _is_number(p["total"]) or "message" in p and not _str(p["message"], 4096):
            return "progress.total must be a number, progress.message a string"
    return _error_body_problem(m["error"]) if "error" in m else None


class RawArgs:
    """A request's ``args`` set aside undecoded (``decode_inner(..., defer_args=True)``): the
    callee checks the token first, so a caller without one never makes it decode them."""

    __slots__ = ("data",)

    def __init__(self, data: bytes):
        self.data = data


def decode_args(args: object) -> object:
    """A request's ``args``, decoded if they were set aside. Raises bad_frame."""
    if not isinstance(args, RawArgs):
        return args
    try:
        return msgpack.unpackb(args.data, raw=False, strict_map_key=False, ext_hook=_no_ext, use_list=True)
    except Exception as err:  # noqa: BLE001 - e.g. invalid UTF-8, an unhashable map key
        raise refusal("bad_frame", f"arguments are not msgpack: {err}") from err


def skip_value(data: bytes, p: int) -> int:
    """The offset just past the value at ``p`` in msgpack that check_msgpack accepted."""
    pending = 1
    while pending > 0:
        pending -= 1
        b = data[p]
        p += 1
        if b <= 0x7F or b >= 0xE0 or b in (0xC0, 0xC2, 0xC3):
            continue
        if b <= 0x8F:
            pending += (b & 0x0F) * 2
        elif b <= 0x9F:
            pending += b & 0x0F
        elif b <= 0xBF:
            p += b & 0x1F
        elif b in (0xC4, 0xD9, 0xC5, 0xDA, 0xC6, 0xDB):
            n = {0xC4: 1, 0xD9: 1, 0xC5: 2, 0xDA: 2, 0xC6: 4, 0xDB: 4}[b]
            p += n + int.from_bytes(data[p:p + n], "big")
        elif b in (0xCC, 0xD0):
            p += 1
        elif b in (0xCD, 0xD1):
            p += 2
        elif b in (0xCA, 0xCE, 0xD2):
            p += 4
        elif b in (0xCB, 0xCF, 0xD3):
            p += 8
        elif b in (0xDC, 0xDD, 0xDE, 0xDF):
            n = 2 if b in (0xDC, 0xDE) else 4
            pending += int.from_bytes(data[p:p + n], "big") * (2 if b >= 0xDE else 1)
            p += n
        else:
            raise refusal("bad_frame", f"message is not acceptable msgpack (at byte {p - 1})")
    return p


def _args_range(data: bytes) -> tuple[int, int] | None:
    b = data[0]
    if 0x80 <= b <= 0x8F:
        entries, p = b & 0x0F, 1
    elif b == 0xDE:
        entries, p = int.from_bytes(data[1:3], "big"), 3
    else:
        return None
    for _ in range(entries):
        key_end = skip_value(data, p)
        value_end = skip_value(data, key_end)
        if data[p:key_end] == b"\xa4args":
            return key_end, value_end
        p = value_end
    return None


def decode_inner(plaintext: bytes, header_bytes: bytes, defer_args: bool = False) -> dict:
    """Opened plaintext → inner dict, bound to ``header_bytes``. Raises bad_frame | bad_seal.
    With ``defer_args``, a request's ``args`` stay undecoded as :class:`RawArgs` (§5.2)."""
    check_msgpack(plaintext, MAX_DEPTH)
    span = _args_range(plaintext) if defer_args else None
    if span:
        raw = RawArgs(bytes(plaintext[span[0]:span[1]]))
        m = unpack(plaintext[:span[0]] + b"\xc0" + plaintext[span[1]:])
        if isinstance(m, dict) and m.get("t") == "req" and "args" in m:
            m["args"] = raw
    else:
        m = unpack(plaintext)
    if not isinstance(m, dict):
        raise refusal("bad_frame", "invalid message: not a map")
    problem = _inner_problem(m)
    if problem:
        raise refusal("bad_frame", f"invalid message: {problem}")
    if m["h"] != digest(header_bytes):
        raise refusal("bad_seal", "header does not match the sealed digest (tampered in transit)")
    return m


# ---- the seal --------------------------------------------------------------------------------

def shared_key(secret_key: bytes, peer_public: bytes) -> bytes:
    """X25519 + HSalsa20 (NaCl crypto_box_beforenm)."""
    return nb.crypto_box_beforenm(peer_public, secret_key)


def seal_with(key: bytes, plaintext: bytes, nonce: bytes | None = None) -> bytes:
    """``[Poly1305 tag 16][nonce 24][ciphertext]`` (XSalsa20-Poly1305 secretbox)."""
    nonce = os.urandom(NONCE_BYTES) if nonce is None else nonce
    boxed = nb.crypto_secretbox(plaintext, nonce, key)  # tag || ciphertext
    return boxed[:TAG_BYTES] + nonce + boxed[TAG_BYTES:]


def open_with(key: bytes, body: bytes) -> bytes:
    if len(body) < SEAL_OVERHEAD:
        raise refusal("bad_seal", f"sealed body of {len(body)} bytes is shorter than {SEAL_OVERHEAD}")
    try:
        return nb.crypto_secretbox_open(body[:TAG_BYTES] + body[SEAL_OVERHEAD:], body[TAG_BYTES:SEAL_OVERHEAD], key)
    except Exception as err:
        raise refusal("bad_seal", "sealed body did not open (wrong key or tampered)") from err


class Sealer:
    """One secret key and its cache of shared keys per peer (Z85 public key)."""

    def __init__(self, secret_key_z85: str, max_peers: int = 10_000):
        self._secret = z85_decode(secret_key_z85)
        self._cache: OrderedDict[str, bytes] = OrderedDict()  # evicted from the front: see agent.ReplayGuard
        self._max = max_peers

    def shared(self, peer: str) -> bytes:
        key = self._cache.get(peer)
        if key is None:
            if not is_z85_key(peer):
                raise refusal("bad_seal", "peer key is not a Z85 key")
            key = shared_key(self._secret, z85_decode(peer))
            if len(self._cache) >= self._max:
                self._cache.popitem(last=False)
            self._cache[peer] = key
        return key

    def seal(self, peer: str, plaintext: bytes) -> bytes:
        return seal_with(self.shared(peer), plaintext)

    def open(self, peer: str, body: bytes) -> bytes:
        return open_with(self.shared(peer), body)


# ---- addresses, job ids, the replica proof ---------------------------------------------------

def is_service_name(name: object) -> bool:
    return isinstance(name, str) and bool(_SERVICE_NAME.match(name))


def parse_service_address(to: str) -> tuple[str, str | None] | None:
    """``svc:NAME`` → (NAME, None); ``svc:NAME@KEY`` → (NAME, KEY); anything else → None.
    The replica key is recognised by its fixed length (Z85 may itself hold "@")."""
    if not to.startswith(SERVICE_PREFIX):
        return None
    rest = to[len(SERVICE_PREFIX):]
    if len(rest) > 41 and rest[-41] == "@" and is_z85_key(rest[-40:]):
        name = rest[:-41]
        return (name, rest[-40:]) if is_service_name(name) else None
    return (rest, None) if is_service_name(rest) else None


def service_address(name: str, replica: str | None = None) -> str:
    return f"{SERVICE_PREFIX}{name}" + (f"@{replica}" if replica else "")


def new_job_id(runner_key: str) -> str:
    """§10.1: 16 random bytes then the runner's public key, in lowercase hex (shell-safe)."""
    return os.urandom(16).hex() + z85_decode(runner_key).hex()


def job_runner(job_id: object) -> str | None:
    """The Z85 key of the agent running ``job_id`` (96 lowercase hex: the last 64 are its key)."""
    if isinstance(job_id, str) and _JOB_ID.match(job_id):
        return z85_encode(bytes.fromhex(job_id[32:]))
    return None


def proof_plaintext(replica_key: str, ts: int) -> bytes:
    # ts is an integer of ms: its decimal text is what JS prints for it.
    return f"zmcp-service-proof|{replica_key}|{int(ts)}".encode()


def make_service_proof(key: bytes, replica_key: str, ts: int, nonce: bytes | None = None) -> bytes:
    return seal_with(key, proof_plaintext(replica_key, ts), nonce)


def verify_service_proof(key: bytes, proof: bytes, replica_key: str, ts: int, now: int) -> bool:
    if abs(now - ts) > PROOF_WINDOW_MS:
        return False
    try:
        return open_with(key, proof) == proof_plaintext(replica_key, ts)
    except ZmcpError:
        return False
