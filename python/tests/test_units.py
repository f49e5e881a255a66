"""Unit tests of the Python package's pieces that need no broker (the interop tests in
test/integration/python-interop.test.ts cover the rest against the TypeScript implementation)."""
import asyncio
import os
import tempfile
import unittest

import zmq.auth

import zmcp
from zmcp import wire
from zmcp.agent import Agent, ClockOffsets, Job, ReplayGuard, _Pending
from zmcp.certs import load_cert_directory, load_secret_certificate
from zmcp.schema import validate


class Errors(unittest.TestCase):
    def test_each_wire_code_has_a_class(self):
        for code in zmcp.errors.WIRE_CODES + zmcp.errors.LOCAL_CODES:
            cls = zmcp.ERROR_CLASSES[code]
            self.assertTrue(issubclass(cls, zmcp.ZmcpError))
            self.assertEqual(cls("x").code, code)
        self.assertIs(zmcp.error_for("no_route", "m", "broker").__class__, zmcp.NoRouteError)
        self.assertEqual(zmcp.error_for("token_scope", "m", "peer").origin, "peer")

    def test_an_unknown_code_from_a_newer_peer_stays_readable(self):
        err = zmcp.errors.remote_error({"code": "displaced_v2", "message": "later"}, "peer")
        self.assertIsInstance(err, zmcp.ToolFailedError)
        self.assertIn("displaced_v2", str(err))
        self.assertIsInstance(zmcp.errors.remote_error(None, "peer"), zmcp.BadFrameError)


class Schema(unittest.TestCase):
    S = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}, "xs": {"type": "array", "items": {"type": "number"}, "minItems": 1},
                                          "mode": {"enum": ["a", "b"]}}, "required": ["n"], "additionalProperties": False}

    def test_accepts(self):
        self.assertEqual(validate({"n": 2, "xs": [1, 2.5], "mode": "a"}, self.S), [])

    def test_refuses_with_paths(self):
        self.assertEqual(validate({}, self.S), ["n: is required"])
        self.assertEqual(validate({"n": 0}, self.S), ["n: must be >= 1"])
        self.assertEqual(validate({"n": 1.5}, self.S), ["n: expected integer"])
        self.assertEqual(validate({"n": True}, self.S), ["n: expected integer"])
        self.assertEqual(validate({"n": 1, "xs": ["a"]}, self.S), ["xs[0]: expected number"])
        self.assertEqual(validate({"n": 1, "xs": []}, self.S), ["xs: must have at least 1 items"])
        self.assertEqual(validate({"n": 1, "zz": 1}, self.S), ["zz: is not allowed"])
        self.assertEqual(validate({"n": 1, "mode": "c"}, self.S), ["mode: must be one of ['a', 'b']"])
        self.assertEqual(validate([], self.S), ["(root): expected object"])


class Guards(unittest.TestCase):
    def test_replay_guard(self):
        g = ReplayGuard(window_ms=1000, not_before=0)
        g.check("p:1", 10_000, 10_500)
        with self.assertRaises(zmcp.ReplayError):
            g.check("p:1", 10_000, 10_600)
        with self.assertRaises(zmcp.ReplayError):
            g.check("p:2", 10_000, 11_001)
        g.check("p:1", 13_000, 13_000)  # forgotten at ts + window

    def test_replay_guard_after_a_clock_step_back(self):
        g = ReplayGuard(window_ms=60_000, not_before=0)
        t = 1_800_000_000_000
        g.check("m:1", t, t + 5)
        g.check("c:1", t + 60_001, t + 60_001)  # m:1's id is pruned here
        with self.assertRaises(zmcp.BusyError):  # this clock stepped back 2 ms: not run again
            g.check("m:1", t, t + 59_999)

    def test_clock_offsets_take_the_minimum(self):
        c = ClockOffsets(period_ms=60_000)
        self.assertEqual(c.observe("p", 1000, 6000), 5000)
        self.assertEqual(c.observe("p", 2000, 6500), 4500)
        self.assertEqual(c.observe("p", 3000, 9000), 4500)

    def test_msgpack_guard(self):
        with self.assertRaises(zmcp.BadFrameError):
            wire.unpack(bytes.fromhex("dd000fffff"))  # a million slots declared in 5 bytes
        with self.assertRaises(zmcp.BadFrameError):
            wire.unpack(bytes.fromhex("d40100"))  # fixext
        self.assertEqual(wire.unpack(wire.pack({"a": [1, b"x"]})), {"a": [1, b"x"]})


class Certs(unittest.TestCase):
    def test_reads_pyzmq_certificates_and_service_metadata(self):
        with tempfile.TemporaryDirectory() as d:
            public, secret = zmq.auth.create_certificates(d, "carol")
            svc_public, _ = zmq.auth.create_certificates(d, "svc-calc")
            # pyzmq 24 drops the metadata it is given; czmq and zmq-keygen write it like this.
            with open(svc_public, encoding="utf-8") as f:
                text = f.read()
            with open(svc_public, "w", encoding="utf-8") as f:
                f.write(text.replace("metadata\n", 'metadata\n    service = "calc"\n'))
            cert = load_secret_certificate(secret)
            pub, sec = zmq.auth.load_certificate(secret)
            self.assertEqual((cert.public_key, cert.secret_key), (pub.decode(), sec.decode()))
            directory = load_cert_directory(d)
            self.assertEqual(directory.by_name["carol"], cert.public_key)
            self.assertIn("calc", directory.services)
            with self.assertRaises(zmcp.CertError):
                load_secret_certificate(public)


def _bare_agent() -> Agent:
    """An Agent with only the state the receive path reads (no socket)."""
    agent = Agent.__new__(Agent)
    agent._pending = {}
    agent._late = {}
    agent._started = {}
    return agent


class AnswerBinding(unittest.TestCase):
    """§5.4: an answer counts only if sealed by the key that was addressed; an event only from
    the runner named in the job id, sealed with the key the job was started on."""

    def test_responses(self):
        async def run():
            a = _bare_agent()
            bob, mallory, svc = "B" * 40, "M" * 40, "S" * 40
            direct = _Pending(asyncio.get_running_loop().create_future(), seal_key=bob, peer=bob)
            service = _Pending(asyncio.get_running_loop().create_future(), seal_key=svc, peer=None)
            a._pending = {b"1" * 16: direct, b"2" * 16: service}
            ok = {"t": "res", "st": "ok", "result": 1}
            a._on_response(mallory, mallory, {"re": b"1" * 16}, dict(ok))  # someone else answers
            a._on_response(mallory, svc, {"re": b"1" * 16}, dict(ok))  # a service's seal for a direct call
            self.assertFalse(direct.future.done())
            a._on_response(mallory, mallory, {"re": b"2" * 16}, dict(ok))  # a replica with its own key
            self.assertFalse(service.future.done())
            a._on_response(bob, bob, {"re": b"1" * 16}, dict(ok))
            a._on_response(mallory, svc, {"re": b"2" * 16}, dict(ok))
            self.assertEqual(direct.future.result()["_from"], bob)
            self.assertEqual(service.future.result()["_from"], mallory)
        asyncio.run(run())

    def test_events(self):
        async def run():
            a = _bare_agent()
            runner, other = "R" * 40, "O" * 40
            job = Job(a, "0" * 32 + runner, runner, runner, runner)
            a._started[job.id] = job
            a._on_event(other, other, {"job": job.id, "st": "done", "result": "forged"})
            a._on_event(runner, "S" * 40, {"job": job.id, "st": "done", "result": "forged"})
            self.assertFalse(job.done)
            a._on_event(runner, runner, {"job": job.id, "st": "done", "result": "real"})
            self.assertEqual(await job.result(1), "real")
        asyncio.run(run())


if __name__ == "__main__":
    unittest.main()


class Durable(unittest.TestCase):
    """The dur header field (docs/DURABLE.md): read, refused when not true; the replay rule for stored messages."""

    def test_header_field(self):
        h = {"v": 1, "k": "req", "id": os.urandom(16), "to": "x", "exp": 5, "dur": True}
        self.assertIs(wire.decode_header(wire.encode_header(h))["dur"], True)
        with self.assertRaises(zmcp.ZmcpError) as cm:
            wire.decode_header(wire.encode_header({**h, "dur": False}))
        self.assertEqual(cm.exception.code, "bad_frame")

    def test_stale_durable_is_busy_not_replay(self):
        guard = ReplayGuard(60_000)
        now = 10_000_000
        with self.assertRaises(zmcp.ZmcpError) as cm:
            guard.check("a", now - 90_000, now, True)
        self.assertEqual(cm.exception.code, "busy")
        with self.assertRaises(zmcp.ZmcpError) as cm:
            guard.check("b", now - 90_000, now, False)
        self.assertEqual(cm.exception.code, "replay")


class TopicScopes(unittest.TestCase):
    """pub:/sub: scopes read as topic patterns, the same cases as test/unit/group-keys.test.ts."""

    def test_cases(self):
        from zmcp.tokens import scope_covers

        cases = [
            ("sub:docs.>", "sub:docs.a.b.c", True),
            ("sub:docs.>", "sub:docs.*", True),
            ("sub:docs.>", "sub:docs", False),
            ("sub:docs.*", "sub:docs.a", True),
            ("sub:docs.*", "sub:docs.a.b", False),
            ("sub:docs.*", "sub:docs.>", False),
            ("sub:docs.a", "sub:docs.*", False),
            ("sub:*.indexed", "sub:docs.indexed", True),
            ("sub:docs*", "sub:docs.a", False),
            ("pub:docs.>", "sub:docs.a", False),
            ("*", "pub:docs.a", True),
            ("call:jobs.*", "call:jobs.a.b", True),
        ]
        for granted, required, expected in cases:
            self.assertEqual(scope_covers([granted], required), expected, (granted, required))



class AnswerPruning(unittest.TestCase):
    """An answer kept far longer than the usual span (exp = 2^53 - 1 from any admitted caller)
    must not hold back the forgetting of everyone else's, as it did at the front of the finish
    order (the TypeScript cache had the same defect: test/security/perf7-attack-answer-cache)."""

    def test_a_pinned_answer_does_not_hold_back_the_others(self):
        from unittest import mock
        from zmcp.agent import DEFAULT_ANSWER_LIMITS, ByteBudget
        agent = Agent.__new__(Agent)
        agent._answers, agent._answer_owner = {}, {}
        agent._answer_times, agent._answer_far = __import__("collections").OrderedDict(), []
        agent._answer_budget = ByteBudget(dict(DEFAULT_ANSWER_LIMITS), "answer cache")
        clock = {"mono": 1000.0, "ms": 1_000_000}
        with mock.patch("zmcp.agent.time.monotonic", lambda: clock["mono"]), mock.patch("zmcp.agent.now_ms", lambda: clock["ms"]):
            agent._finish_answer("x:pinned", {"st": "ok", "result": 1}, float(2 ** 53 - 1))
            for i in range(50):
                agent._finish_answer(f"h:{i}", {"st": "ok", "result": i}, clock["ms"] + 10_000)
            self.assertEqual(len(agent._answers), 51)
            clock["mono"] += 200.0  # past every honest answer's deadline + the 120 s window
            clock["ms"] += 200_000
            agent._prune_answers()
            self.assertEqual(sorted(agent._answers), ["x:pinned"])
            agent._finish_answer("h:late", {"st": "ok", "result": 0}, clock["ms"] + 10_000)
            clock["mono"] += 200.0
            agent._prune_answers()
            self.assertEqual(sorted(agent._answers), ["x:pinned"])  # forgotten by its own time
