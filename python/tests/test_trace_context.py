"""§8.1: a request may carry the caller's W3C trace context (`tc`) inside the seal. A TypeScript
caller with OpenTelemetry installed sends it on every call, so the Python agent must accept the
field (and refuse a malformed one as bad_frame, like any other field)."""
import os
import time
import unittest

from zmcp import wire
from zmcp.errors import ZmcpError

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def _request(tc: object) -> tuple[bytes, bytes]:
    header = wire.encode_header({"v": wire.PROTOCOL_VERSION, "k": "req", "id": os.urandom(16), "to": "B" * 40, "exp": int(time.time() * 1000) + 5000})
    draft = {"t": "req", "ts": int(time.time() * 1000), "rid": os.urandom(16), "tool": "add", "args": {"a": 1}}
    if tc is not None:
        draft["tc"] = tc
    return wire.encode_inner(draft, header), header


def _code(fn) -> str:
    try:
        fn()
        return "ok"
    except ZmcpError as err:
        return err.code


class TraceContext(unittest.TestCase):
    def test_accepts_traceparent_and_tracestate(self):
        for tc in ({"traceparent": TRACEPARENT}, {"traceparent": TRACEPARENT, "tracestate": "vendor=a,other=b"}):
            body, header = _request(tc)
            for defer in (False, True):
                m = wire.decode_inner(body, header, defer_args=defer)
                self.assertEqual(m["tc"], tc)
                self.assertEqual(wire.decode_args(m["args"]), {"a": 1})

    def test_refuses_a_malformed_trace_context(self):
        for tc in ("00-abc", {}, {"tracestate": "a=b"}, {"traceparent": 5}, {"traceparent": "x" * 129},
                   {"traceparent": TRACEPARENT, "tracestate": "x" * 513}, {"traceparent": TRACEPARENT, "baggage": "k=v"}):
            body, header = _request(tc)
            self.assertEqual(_code(lambda: wire.decode_inner(body, header, defer_args=True)), "bad_frame", repr(tc))

    def test_a_request_without_it_is_unchanged(self):
        body, header = _request(None)
        self.assertNotIn("tc", wire.decode_inner(body, header))


if __name__ == "__main__":
    unittest.main()
