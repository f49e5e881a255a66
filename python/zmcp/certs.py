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


def service_of_file_name(name: str) -> str | None:
    """The service a certificate file name binds (``svc-pay`` → ``pay``), if any."""
    return name[4:] if name.startswith("svc-") and len(name) > 4 else None


def load_cert_directory(path: str, on_error=None) -> CertDirectory:
    """Every ``*.key`` of ``path`` (PROTOCOL §1). Names and service bindings come from the
    operator, never from certificate metadata (self-declared by whoever made the key pair): a
    certificate's name is its file name, a service's key is the certificate ``svc-NAME.key``.
    Metadata ``name``/``service`` that disagrees is ignored (reported); one key filed under two
    names is refused under both, so nothing depends on the order files sort in. Invalid files
    are skipped. ``on_error(message)`` hears every report."""
    d = CertDirectory()
    duplicates: set[str] = set()
    report = on_error or (lambda _msg: None)
    for file in sorted(os.listdir(path)):
        if not file.endswith(".key"):
            continue
        try:
            cert = load_certificate(os.path.join(path, file))
        except CertError as err:
            report(str(err))
            continue
        name = file[:-4]
        service = service_of_file_name(name)
        meta_name, meta_service = cert.metadata.get("name"), cert.metadata.get("service")
        if meta_name is not None and meta_name != name:
            report(f"{file}: metadata name = \"{meta_name}\" ignored; a certificate's name is its file name ({name})")
        if meta_service is not None and meta_service != service:
            report(f"{file}: metadata service = \"{meta_service}\" ignored; a service's key is the certificate svc-NAME.key")
        if cert.public_key in d.by_key or cert.public_key in duplicates:
            duplicates.add(cert.public_key)
            report(f"{file}: key {cert.public_key} is also filed as {d.by_key.get(cert.public_key, 'another certificate')}; refused under both names")
            continue
        d.by_name[name] = cert.public_key
        d.by_key[cert.public_key] = name
        if service:
            d.services[service] = cert.public_key
    for key in duplicates:
        name = d.by_key.pop(key, None)
        if name is None:
            continue
        d.by_name.pop(name, None)
        service = service_of_file_name(name)
        if service:
            d.services.pop(service, None)
    return d
