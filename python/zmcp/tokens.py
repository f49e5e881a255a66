"""Capability tokens (docs/PROTOCOL.md §10): compact JWS, EdDSA (Ed25519), checked exactly as
src/auth/tokens.ts checks them: signature by ``kid``, ``exp``/``nbf`` with a clock skew, audience,
the ``cnf["zmcp:key"]`` binding to the sender's curve key, the deny list, and the scope.
"""
from __future__ import annotations

import base64
import json
import re
import time
from collections import OrderedDict
from dataclasses import dataclass

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from .errors import ERROR_CLASSES, error_for
from .wire import is_z85_key

CNF_KEY = "zmcp:key"
MAX_TOKEN_CHARS = 8192
DEFAULT_AUDIENCE = "mesh"
DEFAULT_CLOCK_SKEW_MS = 30_000
_B64U = re.compile(r"^[A-Za-z0-9_-]+$")
_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]{1,256}$")
ConfigError = ERROR_CLASSES["config"]


def b64u_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def scope_covers(granted, required: str) -> bool:
    """Equal, or a granted scope ending in ``*`` whose prefix starts ``required``.

    Topic scopes (``pub:TOPIC``, ``sub:TOPIC``) differ, as in src/auth/tokens.ts: a granted scope
    of the same kind is a topic pattern (``*`` one dotted token, ``>`` one or more trailing ones).
    """
    kind = next((k for k in _TOPIC_SCOPE_KINDS if required.startswith(k)), None)
    for g in granted:
        if g == required:
            return True
        if kind is not None and g.startswith(kind):
            if topic_pattern_covers(g[len(kind):], required[len(kind):]):
                return True
            continue
        if g.endswith("*") and required.startswith(g[:-1]):
            return True
    return False


_TOPIC_SCOPE_KINDS = ("pub:", "sub:")
# The topic rules of src/events/topics.ts: tokens of A-Z a-z 0-9 _ -, at most 128 characters and 16 tokens.
MAX_TOPIC_CHARS = 128
_MAX_TOPIC_TOKENS = 16
_TOPIC_TOKEN = re.compile(r"^[A-Za-z0-9_-]+$")


def is_topic(topic: str, wildcards: bool = False) -> bool:
    """A dotted topic; with ``wildcards`` also a pattern (``*`` whole tokens, ``>`` only last)."""
    if not isinstance(topic, str) or not 0 < len(topic) <= MAX_TOPIC_CHARS:
        return False
    tokens = topic.split(".")
    if len(tokens) > _MAX_TOPIC_TOKENS:
        return False
    return all(
        _TOPIC_TOKEN.match(t) or (wildcards and (t == "*" or (t == ">" and i == len(tokens) - 1)))
        for i, t in enumerate(tokens)
    )


def topic_pattern_covers(granted: str, required: str) -> bool:
    """True when every topic ``required`` matches, ``granted`` matches too."""
    if not is_topic(granted, True) or not is_topic(required, True):
        return False
    g, r = granted.split("."), required.split(".")
    for i, gt in enumerate(g):
        if gt == ">":
            return len(r) > i
        if i >= len(r):
            return False
        if gt == "*":
            if r[i] == ">":
                return False
            continue
        if r[i] != gt:
            return False
    return len(r) == len(g)


def default_tool_scope(tool: str) -> str:
    return f"call:{tool}"


def check_scope_token(scope: str) -> None:
    if not isinstance(scope, str) or not _SCOPE_TOKEN.match(scope):
        raise ConfigError(f"scope {scope!r} must be 1 to 256 printable characters without spaces, quotes or backslashes")


def load_authority(source) -> dict[str, VerifyKey]:
    """kid → Ed25519 verify key, from a JWK / JWK Set file path, a JWK dict, or a list of them."""
    sources = source if isinstance(source, (list, tuple)) else [source]
    keys: dict[str, VerifyKey] = {}
    for s in sources:
        if isinstance(s, str):
            with open(s, encoding="utf-8") as f:
                s = json.load(f)
        jwks = s["keys"] if isinstance(s, dict) and "keys" in s else [s]
        for jwk in jwks:
            if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or not isinstance(jwk.get("x"), str):
                raise ConfigError("authority: not an Ed25519 JWK")
            x = b64u_decode(jwk["x"])
            kid = jwk.get("kid") or _thumbprint(jwk)
            keys[kid] = VerifyKey(x)
    if not keys:
        raise ConfigError("at least one authority key is required")
    return keys


def _thumbprint(jwk: dict) -> str:
    import hashlib
    canonical = json.dumps({"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"]}, separators=(",", ":"))
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


@dataclass(frozen=True)
class VerifiedToken:
    sub: str
    iss: str | None
    aud: tuple
    jti: str
    scopes: tuple
    key: str
    kid: str
    exp: int  # ms
    nbf: int | None
    iat: int | None
    claims: dict


def _json_part(part: str):
    try:
        return json.loads(b64u_decode(part).decode("utf-8"))
    except Exception:
        return None


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and v not in (float("inf"), float("-inf"))


class TokenVerifier:
    def __init__(self, authority, audience: str = DEFAULT_AUDIENCE, clock_skew: int = DEFAULT_CLOCK_SKEW_MS,
                 deny_list: str | None = None, max_token_lifetime: int = 300):
        self.keys = load_authority(authority)
        if not isinstance(max_token_lifetime, int) or max_token_lifetime <= 0:
            raise ValueError("max_token_lifetime must be a positive integer of seconds")
        #: Longest lifetime accepted, ms (PROTOCOL §12.3): the issuer's default cap.
        self.max_token_lifetime = max_token_lifetime * 1000
        self.audience = audience
        self.clock_skew = clock_skew
        self.deny_list = deny_list
        self._cache: OrderedDict[str, VerifiedToken] = OrderedDict()  # evicted from the front: see agent.ReplayGuard

    def _denied(self) -> tuple[set, set]:
        if not self.deny_list:
            return set(), set()
        try:
            with open(self.deny_list, encoding="utf-8") as f:
                d = json.load(f)
            return set(d.get("jti", [])), set(d.get("keys", []))
        except (OSError, ValueError):
            return set(), set()

    def verify(self, token: str, now: int | None = None) -> VerifiedToken:
        now = int(time.time() * 1000) if now is None else now
        v = self._cache.get(token) or self._verify_uncached(token)
        cap = self.max_token_lifetime
        # exp - iat catches a long-lived token at once (even back-dated); exp - now, checked
        # after nbf, catches one with no iat or an iat placed near a far exp (exp: 1e308).
        # One second of slack: issuers compute iat and exp from two clock reads (PROTOCOL §12).
        if v.iat is not None and v.exp - v.iat > cap + 1000:
            raise error_for("token_invalid", f"token lifetime of {(v.exp - v.iat) / 1000:g} s exceeds the maximum of {cap / 1000:g} s")
        if now - self.clock_skew >= v.exp:
            self._cache.pop(token, None)
            raise error_for("token_expired", f"token expired at {v.exp} ms")
        if v.nbf is not None and now + self.clock_skew < v.nbf:
            raise error_for("token_not_yet_valid", f"token is not valid before {v.nbf} ms")
        if v.exp - now > cap + self.clock_skew:
            raise error_for("token_invalid", f"token expires {(v.exp - now) / 1000:g} s from now, beyond the maximum lifetime of {cap / 1000:g} s")
        if self.audience not in v.aud:
            raise error_for("token_audience", f"token is for {list(v.aud)}, not {self.audience!r}")
        if len(self._cache) > 10_000:
            self._cache.popitem(last=False)
        self._cache[token] = v
        return v

    def authorize(self, token: str | None, sender: str, scope: str | None, now: int | None = None) -> VerifiedToken:
        if not token:
            raise error_for("token_missing", "a capability token is required")
        v = self.verify(token, now)
        if v.key != sender:
            raise error_for("token_key_mismatch", "token is bound to another key than the sender's")
        jtis, keys = self._denied()
        if v.jti in jtis or v.key in keys:
            raise error_for("revoked", f"token {v.jti} is revoked" if v.jti in jtis else "sender key is revoked")
        if scope is not None and not scope_covers(v.scopes, scope):
            raise error_for("token_scope", f"token scope does not cover {scope!r}")
        return v

    def _verify_uncached(self, token: str) -> VerifiedToken:
        def invalid(why: str):
            return error_for("token_invalid", f"token {why}")
        if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
            raise invalid(f"longer than {MAX_TOKEN_CHARS} characters")
        parts = token.split(".")
        if len(parts) != 3 or not all(_B64U.match(p) for p in parts):
            raise invalid("is not a compact JWS (three base64url parts)")
        h, p, s = parts
        header = _json_part(h)
        if not isinstance(header, dict) or header.get("alg") not in ("EdDSA", "Ed25519") or "crit" in header:
            raise invalid("header is not an EdDSA JWS header")
        kid = header.get("kid")
        if kid is not None and (not isinstance(kid, str) or not 1 <= len(kid) <= 256):
            raise invalid("header kid is invalid")
        if kid is not None:
            key = self.keys.get(kid)
        elif len(self.keys) == 1:
            kid, key = next(iter(self.keys.items()))
        else:
            key = None
        if key is None:
            raise invalid("has no kid and several authorities are trusted" if kid is None else f"is signed by an untrusted authority (kid {kid!r})")
        signature = b64u_decode(s)
        try:
            if len(signature) != 64:
                raise BadSignatureError()
            key.verify(f"{h}.{p}".encode("ascii"), signature)
        except BadSignatureError:
            raise invalid("signature does not verify") from None
        c = _json_part(p)
        problem = _claims_problem(c)
        if problem:
            raise invalid(f"claims are invalid: {problem}")
        aud = c.get("aud")
        auds = () if aud is None else (aud,) if isinstance(aud, str) else tuple(aud)
        return VerifiedToken(
            sub=c["sub"], iss=c.get("iss"), aud=auds, jti=c["jti"],
            scopes=tuple(x for x in c["scope"].split(" ") if x), key=c["cnf"][CNF_KEY], kid=kid,
            exp=c["exp"] * 1000, nbf=None if c.get("nbf") is None else c["nbf"] * 1000,
            iat=None if c.get("iat") is None else c["iat"] * 1000, claims=c,
        )


def _claims_problem(c) -> str | None:
    if not isinstance(c, dict):
        return "not a JSON object"
    def s(v, lo=0, hi=256):
        return isinstance(v, str) and lo <= len(v) <= hi
    if "iss" in c and not s(c["iss"]):
        return "iss"
    if not s(c.get("sub"), 1):
        return "sub"
    aud = c.get("aud")
    if aud is not None and not (s(aud) or (isinstance(aud, list) and len(aud) <= 32 and all(s(a) for a in aud))):
        return "aud"
    if not _is_num(c.get("exp")):
        return "exp"
    for k in ("nbf", "iat"):
        if k in c and not _is_num(c[k]):
            return k
    if not s(c.get("jti"), 1):
        return "jti"
    if not s(c.get("scope"), 0, MAX_TOKEN_CHARS):
        return "scope"
    cnf = c.get("cnf")
    if not isinstance(cnf, dict) or not is_z85_key(cnf.get(CNF_KEY)):
        return "cnf"
    return None
