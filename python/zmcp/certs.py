"""CURVE certificates in the czmq/pyzmq text format (``zmq.auth.create_certificates`` writes
them, and so does ``zmq-keygen``): ``NAME.key`` public, ``NAME.key_secret`` secret. Parsed
here rather than with ``zmq.auth.load_certificate`` because the metadata (``name``,
``service``) matters too.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import nacl.bindings as nb

from .errors import ERROR_CLASSES
from .wire import is_z85_key, z85_decode, z85_encode

CertError = ERROR_CLASSES["cert"]


@dataclass
class Certificate:
    public_key: str
    secret_key: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


def _unquote(raw: str) -> str:
    v = raw.strip()
    if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'":
        return v[1:-1]
    hash_ = v.find("#")
    return (v[:hash_] if hash_ >= 0 else v).strip()


def parse_certificate(text: str, source: str = "certificate") -> Certificate:
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        eq = line.find("=")
        if not raw[0].isspace():
            current = sections.setdefault((line[:eq] if eq >= 0 else line).strip(), {})
            continue
        if current is None or eq < 0:
            continue
        current[line[:eq].strip()] = _unquote(line[eq + 1:])
    curve = sections.get("curve", {})
    public = curve.get("public-key")
    if not public or not is_z85_key(public):
        raise CertError(f"{source}: no valid curve public-key")
    cert = Certificate(public, None, dict(sections.get("metadata", {})))
    secret = curve.get("secret-key")
    if secret:
        if not is_z85_key(secret):
            raise CertError(f"{source}: secret-key is not 40 Z85 characters")
        if z85_encode(nb.crypto_scalarmult_base(z85_decode(secret))) != public:
            raise CertError(f"{source}: secret-key does not match public-key")
        cert.secret_key = secret
    return cert


def load_certificate(path: str) -> Certificate:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as err:
        raise CertError(f"cannot read certificate {path}: {err}") from err
    return parse_certificate(text, path)


def load_secret_certificate(path: str) -> Certificate:
    cert = load_certificate(path)
    if not cert.secret_key:
        raise CertError(f"{path} is a public certificate; a .key_secret file is needed")
    return cert


@dataclass
class CertDirectory:
    by_name: dict[str, str] = field(default_factory=dict)
    by_key: dict[str, str] = field(default_factory=dict)
    services: dict[str, str] = field(default_factory=dict)


def load_cert_directory(path: str) -> CertDirectory:
    """Every ``*.key`` of ``path``: names (file name, metadata ``name``) and service keys
    (metadata ``service``). Invalid files are skipped."""
    d = CertDirectory()
    for file in sorted(os.listdir(path)):
        if not file.endswith(".key"):
            continue
        try:
            cert = load_certificate(os.path.join(path, file))
        except CertError:
            continue
        name = file[:-4]
        d.by_name[name] = cert.public_key
        meta_name = cert.metadata.get("name")
        if meta_name and meta_name not in d.by_name:
            d.by_name[meta_name] = cert.public_key
        d.by_key.setdefault(cert.public_key, name)
        service = cert.metadata.get("service")
        if service and service not in d.services:
            d.services[service] = cert.public_key
    return d
