"""Late answers and the retry budget (docs/PROTOCOL.md §8.2 rule 4) in the Python agent: two
real agents through a CURVE ROUTER on 127.0.0.1 standing in for the broker, which routes by the
header's ``to`` (as the broker does) and lets a test drop messages or refuse them (``nack``).

- the answer to a timed-out attempt answers its call, also when every later attempt's answer
  is lost;
- many calls to a slow tool: resends after a timeout stay within the budget, every call gets its
  answer, the tool runs once per call;
- a ``nack`` to a timed-out attempt (it never arrived) makes a held call resend at once;
- close() ends a held call at once with ``closed``;
- calls whose answers were lost resend as places in the budget free (a resending call ends),
  not one budget's share per attempt timeout;
- a forged answer to a timed-out attempt is dropped without marking the pending one refused;
- parity with the TypeScript caller's retry loop (src/agent/caller.ts): late refusals, late
  nacks, forged late answers, the "its answer was dropped" wait, and deadlines (rules 1-5 of the
  classes LateRefusals, LateNacks, ForgedLateAnswers, DroppedAnswers, Deadlines).
"""
from __future__ import annotations

import asyncio
import os
import sys
import time
import unittest
from typing import Awaitable, Callable

import zmq
import zmq.asyncio

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import zmcp  # noqa: E402
from zmcp import wire  # noqa: E402
from zmcp.agent import MIN_RETRYING, Agent, RetryBudget, _Call, _Dropped, _is_dropped_answer, _Pending  # noqa: E402


class Relay:
    """A broker stand-in: forwards ``[to, sender, header, body]`` by the header's ``to`` (a key).
    ``decide(header)`` → ``"forward"`` (default), ``"drop"``, or a nack code to refuse with."""

    def __init__(self) -> None:
        self.ctx = zmq.asyncio.Context()
        public, secret = zmq.curve_keypair()
        self.server_key = public.decode()
        r = self.ctx.socket(zmq.ROUTER)
        r.curve_server = True
        r.curve_publickey, r.curve_secretkey = public, secret
        r.setsockopt(zmq.LINGER, 0)
        self.port = r.bind_to_random_port("tcp://127.0.0.1")
        self.router = r
        self.decide: Callable[[dict], str] = lambda h: "forward"
        self.requests: list[dict] = []  # every req header seen, in order
        self.task = asyncio.ensure_future(self._serve())

    async def _serve(self) -> None:
        while True:
            sender, header_bytes, body = await self.router.recv_multipart()
            h = wire.decode_header(header_bytes)
            if h["k"] == "hb":
                continue
            if h["k"] == "req":
                self.requests.append(h)
            action = self.decide(h)
            if action == "drop":
                continue
            if action != "forward":
                await self.nack(sender, h["id"], action)
                continue
            await self.router.send_multipart([h["to"].encode(), sender, header_bytes, body])

    async def nack(self, to: bytes, re_: bytes, code: str) -> None:
        header = {"v": 1, "k": "nack", "id": os.urandom(16), "to": "", "exp": int(time.time() * 1000) + 30_000, "re": re_, "code": code}
        await self.router.send_multipart([to, b"", wire.encode_header(header), b""])

    async def agent(self, **options) -> Agent:
        public, secret = zmq.curve_keypair()
        cert = zmcp.Certificate(public.decode(), secret.decode())
        return await Agent.connect(f"tcp://127.0.0.1:{self.port}", cert, server_key=self.server_key, heartbeat_interval=0, **options)

    async def close(self) -> None:
        self.task.cancel()
        self.router.close(0)
        self.ctx.term()


async def _pair(**caller_options) -> tuple[Relay, Agent, Agent]:
    relay = Relay()
    callee = await relay.agent(max_concurrency=1000)
    caller = await relay.agent(**caller_options)
    await asyncio.sleep(0.1)  # both connections routable
    return relay, caller, callee


async def _end(relay: Relay, *agents: Agent) -> None:
    for a in agents:
        await a.close()
    await relay.close()


class LateAnswers(unittest.TestCase):
    def test_the_answer_to_a_timed_out_attempt_answers_the_call(self):
        """The tool outlasts the attempt timeout (0.5 s) and every answer but the first attempt's
        is lost: the call ends with that answer at ~1 s. Before, that answer was dropped as
        unsolicited and the call failed ``timeout`` after all its attempts."""
        async def run():
            relay, caller, callee = await _pair()
            runs = []

            async def slow(args):
                runs.append(args)
                await asyncio.sleep(1.0)
                return {"n": args["n"]}
            callee.tool("slow", slow)
            first: list[bytes] = []

            def decide(h: dict) -> str:
                if h["k"] == "req" and not first:
                    first.append(h["id"])
                if h["k"] == "res" and h["re"] != first[0]:
                    return "drop"
                return "forward"
            relay.decide = decide
            try:
                started = time.monotonic()
                result = await caller.call(callee.public_key, "slow", {"n": 7}, timeout=2.5)
                elapsed = time.monotonic() - started
                self.assertEqual(result, {"n": 7})
                self.assertLess(elapsed, 1.8)
                self.assertGreaterEqual(len(relay.requests), 2)  # it did resend, within its budget
                self.assertEqual(len(runs), 1)
                self.assertEqual(caller.late_answers, 1)
                self.assertEqual(caller._late, {})  # forgotten when the call ended
            finally:
                await _end(relay, caller, callee)
        asyncio.run(run())

    def test_many_calls_to_a_slow_tool_resend_within_the_budget(self):
        """20 calls to a tool taking 1.2 s, attempt timeout 0.5 s: at most max(3, 0.2 × 20) = 4
        calls resend (each at most every attempt timeout), the others wait for their first
        attempt's answer. Before, every call resent every 0.5 s (about 60 requests)."""
        n = 20
        async def run():
            relay, caller, callee = await _pair()
            runs: list[int] = []

            async def slow(args):
                runs.append(args["i"])
                await asyncio.sleep(1.2)
                return args["i"]
            callee.tool("slow", slow)
            try:
                results = await asyncio.gather(*[caller.call(callee.public_key, "slow", {"i": i}, timeout=2.0) for i in range(n)])
                self.assertEqual(results, list(range(n)))
                self.assertEqual(sorted(runs), list(range(n)))  # once per call
                resending = max(MIN_RETRYING, int(0.2 * n))
                # n first attempts; each resending call resends at most 3 times within 1.2 s.
                self.assertLessEqual(len(relay.requests), n + resending * 3, f"{len(relay.requests)} requests")
                self.assertGreater(caller.retries_held, 0)
                self.assertGreaterEqual(caller.late_answers, n - resending)
                self.assertEqual(caller._budget.counts(callee.public_key), (0, 0))  # nothing left
            finally:
                await _end(relay, caller, callee)
        asyncio.run(run())

    def test_a_nack_to_a_timed_out_attempt_makes_a_held_call_resend_at_once(self):
        """The first attempts of 10 calls are held at the relay; 3 calls resend, 7 wait. The
        resends reach a tool that waits for a gate, so the 3 resending calls keep their places
        (their ends would wake held calls). The relay then refuses the held attempts
        (``no_route``: they never arrived): the waiting calls resend at once and end well before
        their next turn. Before, such a nack was ignored."""
        async def run():
            relay, caller, callee = await _pair()
            gate = asyncio.Event()
            runs: list[int] = []

            async def gated(args):
                runs.append(args["i"])
                await gate.wait()
                return args["i"]
            callee.tool("echo", gated)
            held: list[bytes] = []  # the first attempts, which never reach the callee
            caller_key = caller.public_key.encode()

            def decide(h: dict) -> str:
                if h["k"] == "req" and len(relay.requests) <= 10:
                    held.append(h["id"])
                    return "drop"
                return "forward"
            relay.decide = decide
            try:
                calls = [asyncio.ensure_future(caller.call(callee.public_key, "echo", {"i": i}, timeout=4.0)) for i in range(10)]
                # Attempt timeout 1 s: after it, 3 calls resend (answered at once), 7 are held.
                deadline = time.monotonic() + 4
                while caller.retries_held < 7 and time.monotonic() < deadline:
                    await asyncio.sleep(0.02)
                self.assertEqual(caller.retries_held, 7)
                while len(runs) < 3 and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0.05)
                self.assertEqual(len(runs), 3)  # the 3 resends, waiting at the gate
                self.assertEqual(sum(c.done() for c in calls), 0)
                refused = time.monotonic()
                self.assertEqual(len(held), 10)
                for attempt_id in held:
                    await relay.nack(caller_key, attempt_id, "no_route")
                gate.set()
                results = await asyncio.wait_for(asyncio.gather(*calls), 1.0)
                self.assertEqual(results, list(range(10)))
                self.assertLess(time.monotonic() - refused, 0.5)  # the next turn was 1 s away
                self.assertEqual(len(relay.requests), 20)  # 10 held, 3 resent after the timeout, 7 after the nack
            finally:
                await _end(relay, caller, callee)
        asyncio.run(run())

    def test_close_ends_a_held_call_at_once(self):
        """Calls held by the budget wait in turns of the attempt timeout: close() wakes them, and
        they fail ``closed`` at once, not at their next turn."""
        async def run():
            relay, caller, callee = await _pair()
            relay.decide = lambda h: "drop" if h["k"] == "req" else "forward"  # nothing is ever answered
            try:
                # Attempt timeout 2 s (turns of 2 s while held).
                calls = [asyncio.ensure_future(caller.call(callee.public_key, "t", {}, timeout=8.0)) for _ in range(10)]
                deadline = time.monotonic() + 4
                while caller.retries_held < 7 and time.monotonic() < deadline:
                    await asyncio.sleep(0.02)
                self.assertEqual(caller.retries_held, 7)
                closing = time.monotonic()
                await caller.close()
                outcomes = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 0.5)
                self.assertLess(time.monotonic() - closing, 0.3)
                self.assertTrue(all(isinstance(o, zmcp.ClosedError) for o in outcomes), outcomes)
            finally:
                await _end(relay, caller, callee)
        asyncio.run(run())

    def test_calls_whose_answers_were_lost_resend_as_places_free(self):
        """12 calls whose first answers are all lost, budget 0 (3 places), attempt timeout 1.5 s:
        at 1.5 s three calls resend and end at once; each that ends wakes the call held longest,
        which takes its place, so all 12 end within the first turn. Before, held calls asked the
        budget again only at the end of each 1.5 s turn: three more per turn, the last three at
        their 6 s deadline (failing ``timeout``)."""
        n = 12
        async def run():
            relay, caller, callee = await _pair(retry_budget=0)
            runs: list[int] = []

            def echo(args):
                runs.append(args["i"])
                return args["i"]
            callee.tool("echo", echo)

            def decide(h: dict) -> str:
                # The first n requests are the calls' first attempts: their answers are lost.
                if h["k"] == "res" and any(r["id"] == h["re"] for r in relay.requests[:n]):
                    return "drop"
                return "forward"
            relay.decide = decide
            try:
                started = time.monotonic()
                # timeout 6 s: attempt timeout min(2, max(0.5, 6 / 4)) = 1.5 s.
                results = await asyncio.gather(*[caller.call(callee.public_key, "echo", {"i": i}, timeout=6.0) for i in range(n)],
                                               return_exceptions=True)
                elapsed = time.monotonic() - started
                self.assertEqual(results, list(range(n)))
                self.assertLess(elapsed, 2.7, "the second turn would end at 3 s")
                self.assertGreaterEqual(caller.retries_held, n - MIN_RETRYING)
                self.assertEqual(sorted(runs), list(range(n)))  # resends answered from the answer cache
                self.assertEqual(len(relay.requests), 2 * n)  # one resend each
                self.assertEqual(caller._budget.counts(callee.public_key), (0, 0))
                self.assertEqual(caller._budget.held(callee.public_key), 0)
            finally:
                await _end(relay, caller, callee)
        asyncio.run(run())


class Binding(unittest.TestCase):
    def test_a_forged_answer_to_a_late_attempt_does_not_mark_the_pending_one(self):
        """§6.5 holds for late answers too; and a forgery naming a timed-out attempt is dropped
        without noting ``bad_seal`` on the attempt pending now (which would fail the call at its
        timeout before the real late answer came)."""
        async def run():
            a = Agent.__new__(Agent)
            a._pending, a._late, a.late_answers = {}, {}, 0
            bob, mallory = "B" * 40, "M" * 40
            loop = asyncio.get_running_loop()
            call = _Call()
            late = _Pending(loop.create_future(), seal_key=bob, peer=bob)
            current = _Pending(loop.create_future(), seal_key=bob, peer=bob)
            a._late[b"1" * 16] = (late, call)
            a._pending[b"2" * 16] = current
            call.late.append(b"1" * 16)
            call.current = b"2" * 16
            with self.assertRaises(_Dropped):
                a._check_responder({"re": b"1" * 16}, mallory, mallory)
            self.assertIsNone(current.refused)
            a._on_response(mallory, mallory, {"re": b"1" * 16}, {"t": "res", "st": "ok", "result": "forged"})
            self.assertFalse(current.future.done())
            a._check_responder({"re": b"1" * 16}, bob, bob)  # the real one passes
            a._on_response(bob, bob, {"re": b"1" * 16}, {"t": "res", "st": "ok", "result": "real"})
            self.assertEqual(current.future.result()["result"], "real")
            self.assertEqual(a.late_answers, 1)
        asyncio.run(run())


class Budget(unittest.TestCase):
    def test_counts(self):
        b = RetryBudget()
        tickets = [b.enter("d") for _ in range(20)]
        allowed = [t.may_resend(0.2) for t in tickets]
        self.assertEqual(allowed.count(True), 4)  # max(3, 0.2 × 20)
        self.assertTrue(tickets[0].may_resend(0.2))  # keeps its place
        self.assertEqual([t.may_resend(0.0) for t in tickets[4:8]], [False] * 4)
        tickets[0].end()
        tickets[0].end()  # once only
        self.assertEqual(b.counts("d"), (19, 3))
        self.assertFalse(tickets[5].may_resend(0.0))  # 3 resending: no room even at MIN_RETRYING
        tickets[1].end()
        self.assertTrue(tickets[5].may_resend(0.0))  # 2 resending: MIN_RETRYING leaves room
        for t in tickets:
            t.end()
        self.assertEqual(b.counts("d"), (0, 0))
        self.assertEqual(b._destinations, {})

    def test_a_held_call_is_woken_when_a_resending_call_ends_oldest_first(self):
        """A held call registers its wake-up (``hold``); the end of a call that resent frees a
        place and wakes the call held longest, once; a call that never resent wakes no one."""
        b = RetryBudget()
        tickets = [b.enter("d") for _ in range(7)]
        self.assertEqual([t.may_resend(0.0) for t in tickets[:3]], [True] * 3)
        woken: list[int] = []
        for i in (3, 4, 5):
            self.assertFalse(tickets[i].may_resend(0.0))
            tickets[i].hold(lambda i=i: woken.append(i))
        self.assertEqual(b.held("d"), 3)
        tickets[6].end()  # never resent: frees no place
        self.assertEqual(woken, [])
        tickets[0].end()
        self.assertEqual(woken, [3])  # the oldest held, once
        self.assertEqual(b.held("d"), 2)
        self.assertTrue(tickets[3].may_resend(0.0))
        tickets[3].hold(None)
        tickets[4].hold(None)  # no longer held (say its late answer came): not woken
        tickets[1].end()
        self.assertEqual(woken, [3, 5])
        tickets[5].hold(None)
        tickets[2].end()  # nobody held
        self.assertEqual(woken, [3, 5])
        tickets[4].hold(lambda: woken.append(4))
        tickets[4].end()  # its own end forgets its wake-up
        self.assertEqual(b.held("d"), 0)
        for t in tickets:
            t.end()
        self.assertEqual(b.counts("d"), (0, 0))
        self.assertEqual(b._destinations, {})

    def test_option_is_a_share(self):
        for bad in (-0.1, 1.5, float("nan"), True, "0.2"):
            with self.assertRaises(zmcp.ConfigError):
                Agent(cert=None, server_key="", endpoints=[], certs=None, timeout=1, max_concurrency=1, replay_window=1,
                      max_message_bytes=1, job_ttl=1, job_poll_interval=1, job_lost_after=1, service_heartbeat=1,
                      retry=True, token=None, verifier=None, require_token=False, retry_budget=bad)


# ---- parity with the TypeScript caller's retry loop (src/agent/caller.ts) -----------------------

#: The TypeScript callee's exact words (src/agent/idempotency.ts DROPPED_ANSWER).
DROPPED_MESSAGE = ("this request already ran once; its answer was dropped from the callee's answer cache (full) "
                   "before this retry came, so it cannot be sent again")


def _bare_agent() -> Agent:
    """An Agent with only the state answer binding reads (no sockets)."""
    a = Agent.__new__(Agent)
    a._pending, a._late, a.late_answers = {}, {}, 0
    return a


def _late_and_current(a: Agent, key: str, pending_now: bool) -> tuple[_Call, _Pending, _Pending | None]:
    """A call whose attempt b"1"*16 timed out and, with ``pending_now``, whose attempt b"2"*16 waits."""
    loop = asyncio.get_running_loop()
    call = _Call()
    late = _Pending(loop.create_future(), seal_key=key, peer=key)
    a._late[b"1" * 16] = (late, call)
    call.late.append(b"1" * 16)
    current = None
    if pending_now:
        current = _Pending(loop.create_future(), seal_key=key, peer=key)
        a._pending[b"2" * 16] = current
        call.current = b"2" * 16
    return call, late, current


def _error_answer(code: str, message: str = "refused") -> dict:
    return {"t": "res", "st": "error", "error": {"code": code, "message": message}}


class LateRefusals(unittest.TestCase):
    """Rule 1: a late busy/no_route from the callee is about its own attempt only."""

    def test_a_late_refusal_never_ends_the_wait_of_the_attempt_pending_now(self):
        """Before, the late ``busy`` resolved the attempt pending now (which may be running the
        tool): on the last attempt or near the deadline the call failed ``busy`` while it ran."""
        async def run():
            a, bob = _bare_agent(), "B" * 40
            call, _, current = _late_and_current(a, bob, pending_now=True)
            for code in ("busy", "no_route"):
                a._check_responder({"re": b"1" * 16}, bob, bob)
                a._on_response(bob, bob, {"re": b"1" * 16}, _error_answer(code))
                self.assertFalse(current.future.done(), code)
            self.assertEqual(a.late_answers, 0)
            a._on_response(bob, bob, {"re": b"1" * 16}, {"t": "res", "st": "ok", "result": "ran"})
            self.assertEqual(current.future.result()["result"], "ran")  # a real late answer still does
        asyncio.run(run())

    def test_a_late_refusal_between_attempts_is_taken_as_a_nack_of_its_attempt(self):
        """Before, it was kept as the call's answer and the call failed ``busy`` (last attempt)."""
        async def run():
            a, bob = _bare_agent(), "B" * 40
            call, _, _ = _late_and_current(a, bob, pending_now=False)
            a._on_response(bob, bob, {"re": b"1" * 16}, _error_answer("busy"))
            self.assertIsNone(call.arrived)  # not the call's outcome
            self.assertTrue(call.lost)  # the call may send again
            self.assertTrue(call.wake.is_set())
            self.assertNotIn(b"1" * 16, a._late)  # that attempt is forgotten
            self.assertEqual(a.late_answers, 0)
        asyncio.run(run())


class LateNacks(unittest.TestCase):
    """Rule 2: only busy/no_route in a late nack mean "send again"."""

    def test_a_late_final_nack_ends_a_call_with_no_attempt_pending(self):
        """Four calls, every request held at the relay, budget 0: at the 1 s attempt timeout three
        calls resend and one is held. The relay then refuses the four first attempts late with
        ``rate_limited`` (README: back off, never retried): the held call ends with it at once and
        sends nothing more; the three others end with it when their pending attempt times out.
        Before, the held call resent at once (any late nack meant "send again") and all four
        ended ``timeout`` at their deadline."""
        async def run():
            relay, caller, callee = await _pair(retry_budget=0)
            relay.decide = lambda h: "drop" if h["k"] == "req" else "forward"
            try:
                calls = [asyncio.ensure_future(caller.call(callee.public_key, "t", {}, timeout=4.0)) for _ in range(4)]
                deadline = time.monotonic() + 3
                while caller.retries_held < 1 and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                self.assertEqual(caller.retries_held, 1)
                await asyncio.sleep(0.05)
                self.assertEqual(len(relay.requests), 7)  # 4 first attempts, 3 resends
                refused = time.monotonic()
                for h in relay.requests[:4]:
                    await relay.nack(caller.public_key.encode(), h["id"], "rate_limited")
                done, _ = await asyncio.wait(calls, timeout=0.3, return_when=asyncio.FIRST_COMPLETED)
                self.assertEqual(len(done), 1, "the held call ends at once")
                self.assertEqual(next(iter(done)).exception().code, "rate_limited")
                outcomes = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 2.5)
                self.assertEqual([getattr(o, "code", o) for o in outcomes], ["rate_limited"] * 4)
                self.assertLess(time.monotonic() - refused, 1.5)  # not at the 4 s deadline
                self.assertEqual(len(relay.requests), 7)  # nothing resent after the refusal
            finally:
                await _end(relay, caller, callee)
        asyncio.run(run())

    def test_a_late_busy_nack_does_not_cut_the_backoff_short(self):
        """The first attempt is held at the relay and refused ``busy`` as soon as it times out,
        during the 50 ms backoff (jitter fixed): the resend still waits out the backoff."""
        from zmcp import agent as agent_module
        async def run():
            relay, caller, callee = await _pair()
            callee.tool("echo", lambda args: args)
            seen: list[float] = []

            def decide(h: dict) -> str:
                if h["k"] == "req":
                    seen.append(time.monotonic())
                    if len(seen) == 1:
                        return "drop"
                return "forward"
            relay.decide = decide

            async def refuse_when_late() -> None:
                while not caller._late:
                    await asyncio.sleep(0.001)
                await relay.nack(caller.public_key.encode(), next(iter(caller._late)), "busy")
            watcher = asyncio.ensure_future(refuse_when_late())
            try:
                # timeout 2 s: attempt timeout 0.5 s, then a backoff of 0.05 s × (0.5 + 1.0 / 2).
                self.assertEqual(await caller.call(callee.public_key, "echo", {"n": 1}, timeout=2.0), {"n": 1})
                self.assertTrue(watcher.done())
                self.assertEqual(len(seen), 2)
                self.assertGreaterEqual(seen[1] - seen[0], 0.53)  # 0.5 + 0.05; cut short: ~0.5
            finally:
                watcher.cancel()
                await _end(relay, caller, callee)
        saved = agent_module.random
        agent_module.random = type("FixedJitter", (), {"random": staticmethod(lambda: 1.0)})
        try:
            asyncio.run(run())
        finally:
            agent_module.random = saved


class ForgedLateAnswers(unittest.TestCase):
    """Rule 3: a forged answer to a timed-out attempt is remembered on the call."""

    def test_a_forged_answer_to_a_timed_out_attempt_is_the_error_of_a_call_that_times_out(self):
        """Bob's answers are all lost; mallory answers the first attempt once it timed out (handed
        to the caller's binding check as the inbound path does). The call ends ``bad_seal``
        (ForgedAnswerError), not ``timeout``. Before, the forgery was dropped and forgotten."""
        async def run():
            relay, caller, callee = await _pair()
            callee.tool("echo", lambda args: args)
            relay.decide = lambda h: "drop" if h["k"] == "res" else "forward"
            mallory = "M" * 40
            forged: list[bytes] = []

            async def forge_when_late() -> None:
                while not caller._late:
                    await asyncio.sleep(0.005)
                forged.append(next(iter(caller._late)))
                with self.assertRaises(_Dropped):
                    caller._check_responder({"re": forged[0]}, mallory, mallory)
            forger = asyncio.ensure_future(forge_when_late())
            try:
                with self.assertRaises(zmcp.ZmcpError) as ctx:
                    await caller.call(callee.public_key, "echo", {}, timeout=1.2)
                self.assertEqual(len(forged), 1)
                self.assertEqual(ctx.exception.code, "bad_seal")
                self.assertGreaterEqual(len(relay.requests), 2)  # the forgery did not stop the resends
            finally:
                forger.cancel()
                await _end(relay, caller, callee)
        asyncio.run(run())


async def _call_with_attempts_answered_by_hand(test: unittest.TestCase, timeout: float,
                                               script: Callable[[Relay, Agent, Agent, list[bytes]], Awaitable[None]]):
    """A call whose requests the relay all drops; ``script(relay, caller, callee, attempt ids)``
    answers them as the callee would (handed to the caller's inbound path after the seal checks),
    once the call has sent them. Returns (the call's result or error, seconds it took, requests)."""
    relay, caller, callee = await _pair()
    relay.decide = lambda h: "drop" if h["k"] == "req" else "forward"
    ids: list[bytes] = []
    started = time.monotonic()
    call = asyncio.ensure_future(caller.call(callee.public_key, "t", {}, timeout=timeout))
    try:
        await script(relay, caller, callee, ids)
        outcome = (await asyncio.gather(call, return_exceptions=True))[0]
        return outcome, time.monotonic() - started, len(relay.requests)
    finally:
        call.cancel()
        await _end(relay, caller, callee)


async def _attempts_sent(relay: Relay, n: int, ids: list[bytes]) -> None:
    deadline = time.monotonic() + 5
    while len(relay.requests) < n and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    ids[:] = [h["id"] for h in relay.requests]
    await asyncio.sleep(0.01)


def _answer(caller: Agent, callee: Agent, attempt_id: bytes, inner: dict) -> bool:
    """False when the caller drops it (it answers nothing pending: say, the call already ended)."""
    try:
        caller._check_responder({"re": attempt_id}, callee.public_key, callee.public_key)
    except _Dropped:
        return False
    caller._on_response(callee.public_key, callee.public_key, {"re": attempt_id}, dict(inner))
    return True


class DroppedAnswers(unittest.TestCase):
    """Rule 4: the "already ran once; its answer was dropped" wait (PROTOCOL §8.3)."""

    def test_only_the_callees_exact_words_are_a_dropped_answer(self):
        """Before, any tool_failed whose message contained "its answer was dropped" (a tool's own
        error quoting them) made the call wait until its deadline."""
        self.assertTrue(_is_dropped_answer(_error_answer("tool_failed", DROPPED_MESSAGE)))
        self.assertFalse(_is_dropped_answer(_error_answer("tool_failed", "upstream: " + DROPPED_MESSAGE)))
        self.assertFalse(_is_dropped_answer(_error_answer("tool_failed", "its answer was dropped")))
        self.assertFalse(_is_dropped_answer(_error_answer("busy", DROPPED_MESSAGE)))
        self.assertFalse(_is_dropped_answer({"t": "res", "st": "ok", "result": DROPPED_MESSAGE}))
        ts = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "src", "agent", "idempotency.ts")
        if os.path.exists(ts):  # the TypeScript callee's words, as it sends them
            with open(ts, encoding="utf-8") as f:
                self.assertIn(f'message: "{DROPPED_MESSAGE}"', f.read())

    def test_the_wait_ends_when_no_timed_out_attempt_may_still_be_answered(self):
        """Attempt 2 is answered "dropped"; the broker then refuses attempt 1 (it never arrived,
        so its answer never comes): the call ends tool_failed at once. Before, it waited until its
        deadline for an answer that could not come."""
        async def script(relay, caller, callee, ids):
            await _attempts_sent(relay, 2, ids)
            _answer(caller, callee, ids[1], _error_answer("tool_failed", DROPPED_MESSAGE))
            await asyncio.sleep(0.1)
            await relay.nack(caller.public_key.encode(), ids[0], "no_route")
        async def run():
            # timeout 3 s: attempt timeout 0.75 s, attempt 2 at ~0.8 s.
            outcome, took, sent = await _call_with_attempts_answered_by_hand(self, 3.0, script)
            self.assertEqual(getattr(outcome, "code", outcome), "tool_failed")
            self.assertEqual(outcome.message, DROPPED_MESSAGE)
            self.assertLess(took, 1.5)
            self.assertEqual(sent, 2)
        asyncio.run(run())

    def test_a_late_refusal_of_another_attempt_does_not_end_the_wait(self):
        """Attempts 1 and 2 time out, attempt 3 is answered "dropped"; the callee's late ``busy``
        to attempt 2 comes, then attempt 1's real answer: the call ends with that answer. Before,
        the late busy was taken as the awaited answer and the call failed tool_failed."""
        async def script(relay, caller, callee, ids):
            await _attempts_sent(relay, 3, ids)
            _answer(caller, callee, ids[2], _error_answer("tool_failed", DROPPED_MESSAGE))
            await asyncio.sleep(0.05)
            _answer(caller, callee, ids[1], _error_answer("busy"))
            await asyncio.sleep(0.05)
            _answer(caller, callee, ids[0], {"t": "res", "st": "ok", "result": "ran once"})
        async def run():
            # timeout 2 s: attempt timeout 0.5 s, attempt 3 at ~1.1 s.
            outcome, took, sent = await _call_with_attempts_answered_by_hand(self, 2.0, script)
            self.assertEqual(outcome, "ran once")
            self.assertLess(took, 1.9)
            self.assertEqual(sent, 3)
        asyncio.run(run())

    def test_the_wait_frees_the_calls_resend_place_at_once(self):
        """A call that waits for the dropped answer sends nothing more: ``release`` frees its
        place now and wakes the call held longest (before: kept until the call ended)."""
        b = RetryBudget()
        tickets = [b.enter("d") for _ in range(5)]
        self.assertEqual([t.may_resend(0.0) for t in tickets[:3]], [True] * 3)
        woken: list[int] = []
        for i in (3, 4):
            self.assertFalse(tickets[i].may_resend(0.0))
            tickets[i].hold(lambda i=i: woken.append(i))
        tickets[0].release()
        self.assertEqual(woken, [3])  # the oldest held, at once
        self.assertEqual(b.counts("d"), (5, 2))
        tickets[0].release()  # once only
        tickets[3].hold(None)
        self.assertTrue(tickets[3].may_resend(0.0))  # the freed place
        self.assertFalse(tickets[0].may_resend(0.0))  # taken anew, if there is room
        tickets[0].end()  # released: its end frees nothing more
        self.assertEqual(woken, [3])
        self.assertEqual(b.counts("d"), (4, 3))
        for t in tickets:
            t.end()
        self.assertEqual(b._destinations, {})

    def test_a_call_waiting_for_its_dropped_answer_gives_its_place_to_a_held_call(self):
        """Budget 0, four calls whose requests are all dropped: three resend, one is held. One of
        the resending calls is answered "dropped": its place frees at once and the held call
        resends then, not at its next turn (1 s away) or when the waiting call ends."""
        async def run():
            relay, caller, callee = await _pair(retry_budget=0)
            relay.decide = lambda h: "drop" if h["k"] == "req" else "forward"
            calls = [asyncio.ensure_future(caller.call(callee.public_key, "t", {}, timeout=4.0)) for _ in range(4)]
            try:
                deadline = time.monotonic() + 3
                while (caller.retries_held < 1 or len(relay.requests) < 7) and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0.05)
                self.assertEqual(len(relay.requests), 7)
                _answer(caller, callee, relay.requests[4]["id"], _error_answer("tool_failed", DROPPED_MESSAGE))
                await asyncio.sleep(0.1)
                self.assertEqual(len(relay.requests), 8)  # the held call resent at once
                self.assertEqual(caller._budget.counts(callee.public_key), (4, 3))
            finally:
                for c in calls:
                    c.cancel()
                await _end(relay, caller, callee)
        asyncio.run(run())


class Deadlines(unittest.TestCase):
    """Rule 5: nothing is resent past the deadline, nor to ``svc:NAME`` after a timeout."""

    def test_a_held_call_whose_last_turn_ends_at_its_deadline_sends_nothing_more(self):
        """The first attempt is lost; the budget holds the call until the very end of its last
        turn, at its deadline, and has a place then (another call ended just then). The call ends
        ``timeout`` with one request. Before, it left the hold loop and sent a second attempt
        already past its deadline."""
        from unittest import mock
        from zmcp.agent import _BudgetTicket
        async def run():
            relay, caller, callee = await _pair()
            callee.tool("echo", lambda args: args)
            relay.decide = lambda h: "drop" if h["k"] == "req" else "forward"
            timeout = 1.0  # attempt timeout 0.5 s: held from ~0.55 s to the deadline
            free_at = time.monotonic() + timeout  # at or just before the call's own deadline
            try:
                with mock.patch.object(_BudgetTicket, "may_resend", lambda self, share: time.monotonic() >= free_at):
                    with self.assertRaises(zmcp.ZmcpError) as ctx:
                        await caller.call(callee.public_key, "echo", {}, timeout=timeout)
                self.assertEqual(ctx.exception.code, "timeout")
                self.assertEqual(caller.retries_held, 1)
                self.assertEqual(len(relay.requests), 1)
            finally:
                await _end(relay, caller, callee)
        asyncio.run(run())

    def test_a_timed_out_attempt_to_a_service_is_never_resent_whatever_the_clock_says(self):
        """A call to ``svc:echo`` (no replica named) times out, and the agent's clock, stepped back
        0.4 s during the call, says there is time left: still one request, ``timeout``. A resend
        could reach another replica, which would run the tool again."""
        from zmcp import agent as agent_module
        real = time.monotonic

        class SteppedBack:
            step = 0.0

            def __getattr__(self, name):
                return getattr(time, name)

            def monotonic(self):
                return real() - self.step
        clock = SteppedBack()
        async def run():
            relay, caller, callee = await _pair()
            caller._directory.services["echo"] = callee.public_key
            seen: list[dict] = []

            def decide(h: dict) -> str:
                if h["k"] == "req":
                    seen.append(h)
                    clock.step = 0.4
                    return "drop"
                return "forward"
            relay.decide = decide
            try:
                with self.assertRaises(zmcp.ZmcpError) as ctx:
                    await caller.call("svc:echo", "echo", {}, timeout=1.0)
                self.assertEqual(ctx.exception.code, "timeout")
                self.assertEqual([h["to"] for h in seen], ["svc:echo"])
            finally:
                await _end(relay, caller, callee)
        saved = agent_module.time
        agent_module.time = clock
        try:
            asyncio.run(run())
        finally:
            agent_module.time = saved


if __name__ == "__main__":
    unittest.main()
