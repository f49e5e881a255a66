"""zmcp for Python: join a zmcp mesh natively (protocol v1, docs/PROTOCOL.md).

Dependencies: pyzmq, PyNaCl, msgpack only.
"""
from .agent import Agent, Job, ToolContext
from .certs import Certificate, load_certificate, load_secret_certificate, load_cert_directory
from .errors import *  # noqa: F401,F403 - one exception class per error code
from .errors import ZmcpError, ERROR_CLASSES, error_for
from .sync import SyncAgent
from .tokens import TokenVerifier, VerifiedToken
from .wire import PROTOCOL_VERSION

__all__ = ["Agent", "Job", "ToolContext", "SyncAgent", "Certificate", "load_certificate", "load_secret_certificate",
           "load_cert_directory", "ZmcpError", "ERROR_CLASSES", "error_for", "TokenVerifier", "VerifiedToken", "PROTOCOL_VERSION"]
