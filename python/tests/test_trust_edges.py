"""The trust-edges rules (docs/PROTOCOL.md §1, §3.4, §5.2, §6.5, §7, §10.2) in the Python
agent, without sockets: what it reads from a certificate directory, what it refuses to decode
or to send, its replay and clock rules, and what it does on a broker notice or a forged answer.
The interop tests (test/integration/python-trust.test.ts) drive the same rules through real
processes."""
from __future__ import annotations

import asyncio
import math
import os
import sys
import tempfile
import unittest

import zmq.asyncio
import zmq.auth

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import zmcp  # noqa: E402
from zmcp import wire  # noqa: E402
from zmcp.agent import Agent, ByteBudget, ClockOffsets, ReplayGuard, ToolContext, _depth_problem, _Dropped, _Pending  # noqa: E402
from zmcp.certs import load_cert_directory  # noqa: E402


def _with_metadata(path: str, lines: str) -> None:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    with open(path, "w", encoding="utf-8") as f:
        f.write(text.replace("metadata\n", "metadata\n" + lines))


class CertDirectoryFromTheOperator(unittest.TestCase):
    def test_metadata_binds_nothing(self):
        with tempfile.TemporaryDirectory() as d:
            pay, _ = zmq.auth.create_certificates(d, "svc-pay")
            # "aaa" sorts first and claims the service and the name bob in its metadata.
            evil, _ = zmq.auth.create_certificates(d, "aaa")
            bob, _ = zmq.auth.create_certificates(d, "bob")
            _with_metadata(evil, '    service = "pay"\n    name = "bob"\n')
            reports: list[str] = []
            directory = load_cert_directory(d, reports.append)
            keys = {n: zmcp.load_certificate(p).public_key for n, p in (("pay", pay), ("evil", evil), ("bob", bob))}
            self.assertEqual(directory.services, {"pay": keys["pay"]})
            self.assertEqual(directory.by_name["bob"], keys["bob"])
            self.assertEqual(directory.by_name["aaa"], keys["evil"])
            self.assertTrue(any("metadata service" in r for r in reports), reports)
            self.assertTrue(any("metadata name" in r for r in reports), reports)

    def test_one_key_under_two_names_is_refused_under_both(self):
        with tempfile.TemporaryDirectory() as d:
            pub, _ = zmq.auth.create_certificates(d, "carol")
            with open(pub, encoding="utf-8") as f:
                text = f.read()
            with open(os.path.join(d, "svc-pay.key"), "w", encoding="utf-8") as f:
                f.write(text)
            reports: list[str] = []
            directory = load_cert_directory(d, reports.append)
            self.assertNotIn("carol", directory.by_name)
            self.assertNotIn("svc-pay", directory.by_name)
            self.assertNotIn("pay", directory.services)
            self.assertTrue(any("refused under both" in r for r in reports), reports)


class Decoding(unittest.TestCase):
    def test_value_cap_counts_across_containers(self):
        ok = wire.pack({"a": [0] * 50_000, "b": [0] * 49_996})  # 4 + 99,996 = 100,000
        wire.check_msgpack(ok, wire.MAX_DEPTH)
        over = wire.pack({"a": [0] * 50_000, "b": [0] * 49_997})
        with self.assertRaises(zmcp.BadFrameError) as ctx:
            wire.check_msgpack(over, wire.MAX_DEPTH)
        self.assertIn("100000 values", ctx.exception.message)

    def test_args_stay_undecoded_until_asked(self):
        header = wire.encode_header({"v": 1, "k": "req", "id": b"i" * 16, "to": "x", "exp": 1})
        # args hold a map whose key is an array: msgpack in Python cannot decode it (unhashable).
        bad_args = bytes.fromhex("81") + bytes.fromhex("9101") + bytes.fromhex("01")
        draft = wire.pack({"t": "req", "ts": 1, "rid": b"r" * 16, "tool": "t", "h": wire.digest(header)})
        plaintext = bytes([draft[0] + 1]) + draft[1:] + bytes.fromhex("a461726773") + bad_args
        with self.assertRaises(zmcp.BadFrameError):
            wire.decode_inner(plaintext, header)
        inner = wire.decode_inner(plaintext, header, defer_args=True)
        self.assertIsInstance(inner["args"], wire.RawArgs)
        with self.assertRaises(zmcp.BadFrameError):
            wire.decode_args(inner["args"])
        good = wire.encode_inner({"t": "req", "ts": 1, "rid": b"r" * 16, "tool": "t", "args": {"n": [1, 2]}}, header)
        self.assertEqual(wire.decode_args(wire.decode_inner(good, header, defer_args=True)["args"]), {"n": [1, 2]})


class TimeRules(unittest.TestCase):
    def test_requests_stamped_before_the_start_grace_are_busy(self):
        g = ReplayGuard(window_ms=60_000, start_grace=2_000)
        start = g.not_before + 2_000
        with self.assertRaises(zmcp.BusyError):
            g.check("p:1", start - 2_500, start)
        g.check("p:2", start - 1_500, start)

    def test_offsets_restart_when_the_peer_clock_steps_back(self):
        c = ClockOffsets()
        self.assertEqual(c.observe("p", 10_000, 10_050), 50)
        # The peer's clock steps back by 5 s: its deadlines must not look 5 s later forever.
        self.assertEqual(c.observe("p", 5_100.7, 10_100), 5_000)
        self.assertIsInstance(c.observe("p", 5_200.9, 10_200), int)

    def test_offsets_restart_when_this_clock_steps(self):
        c = ClockOffsets()
        c.observe("p", 10_000, 10_050, mono=0.0)
        # Our wall clock jumped 10 s ahead of the monotonic one: the old minimum is gone.
        self.assertEqual(c.observe("p", 10_100, 20_150, mono=0.1), 10_050)


class SenderChecks(unittest.TestCase):
    def test_progress_the_receiver_would_refuse_raises_type_error(self):
        sent: list = []
        ctx = ToolContext("k", None, "r", 0, None, "job", sent.append)
        for bad in ((math.nan,), (1, math.inf), ("half",), (1, None, "m" * 4097)):
            with self.assertRaises(TypeError):
                ctx.progress(*bad)
        ctx.progress(1, 2, "ok")
        self.assertEqual(sent, [{"progress": 1, "total": 2, "message": "ok"}])

    def test_too_deep_results_are_found(self):
        deep: object = 1
        for _ in range(31):
            deep = [deep]
        self.assertIsNone(_depth_problem(deep, 31))
        self.assertIn("deeper than the 30", _depth_problem(deep, 30))
        cyclic: list = []
        cyclic.append(cyclic)
        self.assertIsNotNone(_depth_problem(cyclic, 30))


class Budgets(unittest.TestCase):
    def test_entries_and_bytes_per_caller_and_in_total(self):
        b = ByteBudget({"max_entries": 3, "max_bytes": 1000, "max_entries_per_owner": 2, "max_bytes_per_owner": 600}, "answer cache")
        b.add("a", 1, 0)
        self.assertIsNone(b.refusal("a"))
        b.add("a", 1, 100)
        self.assertIn("this caller holds 2 entries", b.refusal("a"))
        self.assertIsNone(b.refusal("b"))
        b.add("b", 1, 900)
        self.assertIn("3 entries held", b.refusal("c"))
        b.add("a", -2, -100)
        self.assertIn("900 bytes", b.refusal("b"))
        b.add("b", -1, -900)
        self.assertEqual((b.entries, b.bytes), (0, 0))


class Liveness(unittest.TestCase):
    """§2.4 against a real CURVE ROUTER on 127.0.0.1 standing in for the broker."""

    def _run(self, ack: bool) -> tuple[int, list[dict], list[bytes]]:
        async def run():
            server_public, server_secret = zmq.curve_keypair()
            client_public, client_secret = zmq.curve_keypair()
            ctx = zmq.asyncio.Context()
            router = ctx.socket(zmq.ROUTER)
            router.curve_server = True
            router.curve_publickey, router.curve_secretkey = server_public, server_secret
            router.setsockopt(zmq.LINGER, 0)
            port = router.bind_to_random_port("tcp://127.0.0.1")
            headers: list[dict] = []
            bodies: list[bytes] = []

            async def serve():
                while True:
                    rid, header_bytes, body = await router.recv_multipart()
                    h = wire.decode_header(header_bytes)
                    headers.append(h)
                    bodies.append(body)
                    if ack:
                        reply = {"v": 1, "k": "ack", "id": os.urandom(16), "to": "", "exp": 1, "re": h["id"]}
                        await router.send_multipart([rid, b"", wire.encode_header(reply), b""])
            server = asyncio.ensure_future(serve())
            cert = zmcp.Certificate(client_public.decode(), client_secret.decode())
            agent = await Agent.connect(f"tcp://127.0.0.1:{port}", cert, server_key=server_public.decode(), heartbeat_interval=0.2)
            try:
                await asyncio.sleep(1.5)  # 2.5 x the silence that makes the agent redial
                return agent.redials, headers, bodies
            finally:
                await agent.close()
                server.cancel()
                router.close(0)
                ctx.term()
        return asyncio.run(run())

    def test_hb_every_interval_and_a_redial_when_the_broker_is_silent(self):
        redials, headers, bodies = self._run(ack=False)
        self.assertGreaterEqual(redials, 1)
        self.assertGreaterEqual(len(headers), 4)
        self.assertTrue(all(h["k"] == "hb" and h["to"] == "" for h in headers))
        self.assertEqual(wire.unpack(bodies[0]), {"svc": []})

    def test_no_redial_while_the_broker_acks(self):
        redials, headers, _ = self._run(ack=True)
        self.assertEqual(redials, 0)
        self.assertGreaterEqual(len(headers), 4)


def _bare_agent() -> Agent:
    agent = Agent.__new__(Agent)
    agent._pending = {}
    agent._late = {}
    agent._started = {}
    agent._tasks = set()
    agent._acks = {}
    agent._closed = False
    agent.closed_error = None
    agent.public_key = "A" * 40
    return agent


class BrokerNoticesAndForgeries(unittest.TestCase):
    def test_displaced_notice_closes_with_the_typed_error(self):
        async def run():
            a = _bare_agent()
            a._closed_future = asyncio.get_running_loop().create_future()
            closed_with: list = []

            async def close(err=None):
                closed_with.append(err)
            a.close = close
            # A nack with a re is an ordinary refusal, not a notice.
            a._on_broker(wire.encode_header({"v": 1, "k": "nack", "id": b"n" * 16, "to": "", "exp": 1, "re": b"x" * 16, "code": "displaced"}))
            await asyncio.sleep(0)
            self.assertEqual(closed_with, [])
            a._on_broker(wire.encode_header({"v": 1, "k": "nack", "id": b"n" * 16, "to": "", "exp": 1, "code": "displaced", "msg": "taken over"}))
            await asyncio.sleep(0)
            self.assertEqual(len(closed_with), 1)
            self.assertIsInstance(closed_with[0], zmcp.DisplacedError)
            self.assertEqual((closed_with[0].code, closed_with[0].origin), ("displaced", "broker"))
        asyncio.run(run())

    def test_forged_answer_is_noted_not_accepted(self):
        async def run():
            a = _bare_agent()
            bob, mallory = "B" * 40, "M" * 40
            pending = _Pending(asyncio.get_running_loop().create_future(), seal_key=bob, peer=bob)
            a._pending = {b"1" * 16: pending}
            with self.assertRaises(_Dropped):
                a._check_responder({"re": b"1" * 16}, mallory, mallory)
            self.assertFalse(pending.future.done())
            self.assertIsInstance(pending.refused, zmcp.BadSealError)
            a._check_responder({"re": b"1" * 16}, bob, bob)  # the real one passes
        asyncio.run(run())


if __name__ == "__main__":
    unittest.main()
