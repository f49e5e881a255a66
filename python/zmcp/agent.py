"""The asyncio agent: one DEALER socket with CURVE to the broker(s), one curve key, every
payload sealed end to end. It calls tools (with retries, tokens, jobs, services), serves
tools (JSON Schema arguments, tokens, idempotency, jobs, services), as docs/PROTOCOL.md says.
"""
from __future__ import annotations

import asyncio
import heapq
import inspect
import logging
import math
import os
import random
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from . import wire
from .catalog import CATALOG_BUILTINS, CatalogCaller, CatalogRegistry
from .certs import Certificate, CertDirectory, load_cert_directory, load_certificate, load_secret_certificate
from .errors import ERROR_CLASSES, RETRYABLE, WIRE_CODES, ZmcpError, error_for, remote_error
from .schema import validate
from .tokens import TokenVerifier, VerifiedToken, check_scope_token, default_tool_scope, scope_covers

_timeout = getattr(asyncio, "timeout", None)
BUILTIN_LIST, BUILTIN_POLL, BUILTIN_CANCEL = "tools/list", "jobs/poll", "jobs/cancel"
BUILTINS = (BUILTIN_LIST, BUILTIN_POLL, BUILTIN_CANCEL)
ConfigError = ERROR_CLASSES["config"]
ClosedError = ERROR_CLASSES["closed"]
TimeoutError_ = ERROR_CLASSES["timeout"]


def now_ms() -> int:
    return int(time.time() * 1000)


class ReplayGuard:
    """Each (peer, message id) once, and only while |now - ts| <= window (§7 T4, T5). Seen ids
    live in memory, so messages stamped more than ``start_grace`` ms before the guard was
    created are refused ``busy`` (T14; default 2,000 ms, peers' clocks agreeing within that):
    this process cannot know whether its predecessor ran them; the caller's retry, with a fresh
    ``ts``, goes through."""

    def __init__(self, window_ms: int = 60_000, max_seen: int = 1_000_000, start_grace: int | None = None,
                 not_before: int | None = None):
        self.window_ms = window_ms
        self.max_seen = max_seen
        self.not_before = not_before if not_before is not None else now_ms() - (2_000 if start_grace is None else start_grace)
        # An OrderedDict, not a dict: pruning takes the oldest, which a dict reaches only by
        # scanning the slots of every id popped before it (8 µs a message at 100,000 ids
        # against 0.4; the same as the reference's Map, support/linked-map.ts).
        self._seen: OrderedDict[str, int] = OrderedDict()
        # The latest forget time of an id pruned: a message whose id would be forgotten by then
        # cannot be checked (this clock stepped back since), so it is refused busy (§7 T13).
        self._pruned_up_to = float("-inf")

    def check(self, key: str, ts: float, now: int, durable: bool = False) -> None:
        # A durable message may have waited in a broker's store (docs/DURABLE.md): too old to be
        # checked against the seen ids, it is refused busy (nothing runs; the caller resends fresh).
        if durable and now - ts > self.window_ms:
            raise error_for("busy", f"durable message stamped {now - ts} ms ago, older than the {self.window_ms} ms replay window; send it again")
        if abs(now - ts) > self.window_ms:
            raise error_for("replay", f"timestamp {ts} is outside the {self.window_ms} ms replay window (clock {now})")
        if ts < self.not_before:
            raise error_for("busy", f"message stamped {self.not_before - ts} ms before this agent started (possibly a replay it cannot check); send it again")
        seen = self._seen
        while seen:  # oldest first (insertion order): the front of an OrderedDict is one link away
            k = next(iter(seen))
            if seen[k] > now:
                break
            self._pruned_up_to = max(self._pruned_up_to, seen.popitem(last=False)[1])
        if key in seen:
            raise error_for("replay", "message id seen before (replayed)")
        if ts + self.window_ms + 1 <= self._pruned_up_to:
            raise error_for("busy", "message stamped before ids this agent has already forgotten (its clock stepped back); send it again")
        if len(seen) >= self.max_seen:
            raise error_for("busy", "replay cache full")
        # A copy is accepted while |now - ts| <= window: until ts + window, inclusive.
        seen[key] = ts + self.window_ms + 1


CLOCK_STEP_MS = 1000


class ClockOffsets:
    """Per peer: min over the current and previous 60 s of (arrival - sealed ts) (§7 T6).
    Restarts when a clock steps: the peer's ``ts`` going back by more than 1 s, or this
    process's wall clock moving against its monotonic clock by more than that."""

    def __init__(self, period_ms: int = 60_000, max_peers: int = 10_000):
        self.period_ms = period_ms
        self.max_peers = max_peers
        self._peers: OrderedDict[str, list] = OrderedDict()  # evicted from the front: see ReplayGuard
        self._wall_minus_mono: int | None = None

    def observe(self, peer: str, ts: float, now: int, mono: float | None = None) -> int:
        ts, now = math.floor(ts), math.floor(now)
        if mono is not None:
            drift = now - int(mono * 1000)
            if self._wall_minus_mono is not None and abs(drift - self._wall_minus_mono) > CLOCK_STEP_MS:
                self._peers.clear()
            self._wall_minus_mono = drift
        sample = now - ts
        c = self._peers.pop(peer, None)  # [min, previous min, since, last ts]
        if c is None or ts < c[3] - CLOCK_STEP_MS:
            c = [sample, sample, now, ts]
            if len(self._peers) >= self.max_peers:
                self._peers.popitem(last=False)
        elif now - c[2] >= self.period_ms:
            c = [sample, c[0], now, max(c[3], ts)]
        else:
            c[0] = min(c[0], sample)
            c[3] = max(c[3], ts)
        self._peers[peer] = c
        return min(c[0], c[1])


#: Defaults of the reference (src/jobs.ts, src/idempotency.ts): entries and bytes, in total and per caller.
DEFAULT_JOB_LIMITS = {"max_entries": 1_000, "max_bytes": 128 << 20, "max_entries_per_owner": 200, "max_bytes_per_owner": 32 << 20}
DEFAULT_ANSWER_LIMITS = {"max_entries": 100_000, "max_bytes": 64 << 20, "max_entries_per_owner": 25_000, "max_bytes_per_owner": 16 << 20}
ANSWER_OVERHEAD_BYTES = 256
#: Answers kept longer than this (s) are forgotten from a heap by their own time, not in finish
#: order (see Agent._finish_answer): the 120 s window past a deadline of up to 2 minutes.
ANSWER_USUAL_KEEP_S = 240


class ByteBudget:
    """Memory in entries and bytes, per owner (a caller's key) and in total (§8.3). A request
    that does not fit is answered ``busy``; nothing held is evicted (an evicted answer would
    let a retry run a tool twice). Bytes are known when a run ends, so the total can pass
    ``max_bytes`` by at most the runs in progress."""

    def __init__(self, limits: dict, what: str):
        for k, v in limits.items():
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"{what}: {k} must be a positive integer")
        self.limits = limits
        self.what = what
        self._owners: dict[str, list[int]] = {}
        self.entries = 0
        self.bytes = 0

    def refusal(self, owner: str) -> str | None:
        lim = self.limits
        own = self._owners.get(owner, [0, 0])
        if own[0] >= lim["max_entries_per_owner"]:
            return f"{self.what}: this caller holds {own[0]} entries (limit {lim['max_entries_per_owner']})"
        if own[1] >= lim["max_bytes_per_owner"]:
            return f"{self.what}: this caller holds {own[1]} bytes (limit {lim['max_bytes_per_owner']})"
        if self.entries >= lim["max_entries"]:
            return f"{self.what}: {self.entries} entries held (limit {lim['max_entries']})"
        if self.bytes >= lim["max_bytes"]:
            return f"{self.what}: {self.bytes} bytes held (limit {lim['max_bytes']})"
        return None

    def add(self, owner: str, entries: int, nbytes: int) -> None:
        own = self._owners.setdefault(owner, [0, 0])
        own[0] += entries
        own[1] += nbytes
        self.entries += entries
        self.bytes += nbytes
        if own[0] <= 0 and own[1] <= 0:
            del self._owners[owner]


def _encoded_size(value: Any) -> int:
    try:
        return len(wire.pack(value))
    except Exception:  # noqa: BLE001 - an unsendable value is answered tool_failed elsewhere
        return 0


def _check_progress(p: dict) -> None:
    """The receiver's progress schema, applied by the sender (§10.2): a TypeError at once."""
    if not wire._is_number(p["progress"]):
        raise TypeError(f"progress must be a finite number, not {p['progress']!r}")
    if "total" in p and not wire._is_number(p["total"]):
        raise TypeError(f"progress total must be a finite number, not {p['total']!r}")
    if "message" in p and not wire._str(p["message"], 4096):
        raise TypeError("progress message must be a string of at most 4096 characters")


def _depth_problem(value: Any, max_depth: int) -> str | None:
    """Containers nested deeper than ``max_depth`` (or a cycle), walked without recursion."""
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list, tuple)):
            if d > max_depth:
                return f"result is nested deeper than the {max_depth} levels a peer accepts"
            stack.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
    return None


class _Dropped(Exception):
    """An answer that is silently dropped (unsolicited, or forged and noted on its call)."""


@dataclass
class ToolContext:
    """What a handler learns about the call."""
    sender: str
    sender_name: str | None
    request_id: str
    deadline_ms: int
    token: VerifiedToken | None
    job_id: str | None = None
    _progress: Callable[[dict], None] | None = None

    def progress(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        """Reports a job's progress to its caller (pushed, and kept for polls); no-op for other tools."""
        if self._progress:
            p: dict = {"progress": progress}
            if total is not None:
                p["total"] = total
            if message is not None:
                p["message"] = message
            _check_progress(p)
            self._progress(p)


@dataclass
class _Tool:
    info: dict
    schema: dict | None
    scope: str
    handler: Callable
    wants_ctx: bool


@dataclass
class _Pending:
    future: asyncio.Future
    seal_key: str
    peer: str | None  # the exact sender required (a replica for svc:NAME@KEY), None for any replica
    refused: ZmcpError | None = None  # a forged or unreadable answer: the call's error if nothing better comes


class _Call:
    """One call's attempts (§8.2 rule 4). A timed-out attempt is usually late, not lost: its id
    stays matched (``Agent._late``) until the call ends, and its answer answers the call."""

    __slots__ = ("late", "current", "arrived", "lost", "refused", "forged", "place", "wake")

    def __init__(self) -> None:
        self.late: list[bytes] = []  # ids of its attempts that timed out
        self.current: bytes | None = None  # id of its attempt pending now, if any
        # A late answer that came while no attempt was pending: the call's answer, taken at once.
        self.arrived: dict | None = None
        # The broker refused a timed-out attempt after all (it never arrived, nothing ran): a
        # call the budget holds may send again at once.
        self.lost = False
        # The broker refused a timed-out attempt after all with a final code (``rate_limited``:
        # back off; anything but busy/no_route): the call's outcome once no attempt is pending.
        self.refused: ZmcpError | None = None
        # An answer to a timed-out attempt refused as forged (bad_seal): the call's error if it
        # ends without an answer, instead of a plain timeout that would hide the forgery.
        self.forged: ZmcpError | None = None
        # A resending call to its destination ended while the budget held this one: a place may be
        # free, so it asks the budget again at once (RetryBudget, _BudgetTicket.hold).
        self.place = False
        # Set on a late answer, on such a refusal, on a freed place and on close(): wakes a call
        # between attempts.
        self.wake = asyncio.Event()


def _place_freed(call: _Call) -> None:
    """The retry budget's wake-up of a held call: a place may be free, ask again now."""
    call.place = True
    call.wake.set()


def _error_code(answer: dict) -> str | None:
    error = answer.get("error") if answer.get("st") == "error" else None
    return error.get("code") if isinstance(error, dict) else None


def _is_refusal(answer: dict) -> bool:
    """An error answer that proves its request ran nothing (``busy``, ``no_route``)."""
    return _error_code(answer) in ("busy", "no_route")


#: A callee's "already ran once; its answer was dropped" (§8.3), word for word as the TypeScript
#: callee sends it (src/agent/idempotency.ts DROPPED_ANSWER).
DROPPED_ANSWER_MESSAGE = ("this request already ran once; its answer was dropped from the callee's answer cache (full) "
                          "before this retry came, so it cannot be sent again")


def _is_dropped_answer(answer: dict) -> bool:
    """A callee's "already ran once; its answer was dropped" (§8.3): the answer went out before.
    The callee's exact words only: a tool's own error that merely mentions them (one relaying
    another call's failure, or quoting its input) is its answer, not a reason to wait until the
    deadline."""
    return _error_code(answer) == "tool_failed" and answer["error"].get("message") == DROPPED_ANSWER_MESSAGE


#: Calls to one destination that may always resend after a timeout, whatever the budget's share
#: (Envoy's ``min_retry_concurrency``; the TypeScript SDK's MIN_RETRYING).
MIN_RETRYING = 3
DEFAULT_RETRY_BUDGET = 0.2


class _BudgetEntry:
    """The calls waiting on one destination: how many, how many of them resend, and the wake-ups
    of those the budget holds (a dict as an ordered set: oldest first)."""

    __slots__ = ("waiting", "resending", "held")

    def __init__(self) -> None:
        self.waiting = 0
        self.resending = 0
        self.held: dict["_BudgetTicket", Callable[[], None]] = {}


class _BudgetTicket:
    """One call's place in its destination's retry budget: ``may_resend`` after a timed-out
    attempt, ``hold`` while the budget holds it, ``end`` once when the call ends."""

    __slots__ = ("_budget", "_destination", "_entry", "_resending", "_ended")

    def __init__(self, budget: "RetryBudget", destination: str, entry: _BudgetEntry):
        self._budget, self._destination, self._entry = budget, destination, entry
        self._resending = False
        self._ended = False

    def may_resend(self, share: float) -> bool:
        # Once a call resent it keeps its place until it ends: its later resends need no new room
        # (else a call could be cut off between two resends by calls that arrived meanwhile).
        if self._resending:
            return True
        entry = self._entry
        if entry.resending >= max(MIN_RETRYING, share * entry.waiting):
            return False
        self._resending = True
        entry.resending += 1
        return True

    def hold(self, on_place: Callable[[], None] | None) -> None:
        """While the budget holds this call: ``on_place`` runs (once) when a resending call to the
        same destination ends and frees a place, the call held longest first. ``None``: no longer
        held (the wake-up is forgotten). Holding again after a wake-up queues it last."""
        self._entry.held.pop(self, None)
        if on_place is not None and not self._ended:
            self._entry.held[self] = on_place

    def release(self) -> None:
        """The call sends nothing more (it waits only for answers already on their way): its
        place, if it has one, frees now rather than when it ends, waking the call held longest.
        Asking ``may_resend`` again takes a place anew."""
        if not self._resending or self._ended:
            return
        self._resending = False
        self._free()

    def end(self) -> None:
        if self._ended:
            return
        self._ended = True
        entry = self._entry
        entry.held.pop(self, None)
        entry.waiting -= 1
        if self._resending:
            self._free()
        if entry.waiting == 0:
            self._budget._destinations.pop(self._destination, None)

    def _free(self) -> None:
        entry = self._entry
        entry.resending -= 1
        # A place is free: the call held longest asks again now, not at the end of its turn.
        # In turns of the attempt timeout a crowd of held calls drained a budget's share at a
        # time, an attempt timeout apart: when a load dropped and only calls whose answers
        # were lost were left, the last of them waited out their deadline (the TypeScript
        # SDK's reference run of issue 12 caught it; 847b7a9). A call that never resent frees
        # no place, so it wakes no one.
        if entry.held:
            wake = entry.held.pop(next(iter(entry.held)))  # unregistered first: woken once
            wake()


class RetryBudget:
    """Resends after a timed-out attempt, bounded per destination (§8.2 rule 4, as Envoy's retry
    budgets bound them): a call may start resending while the calls resending to its destination
    are fewer than max(3, share × the calls waiting on it). Under overload every call timing out
    and resending each attempt timeout multiplies the load by the overload; held back, a call
    waits for the answers of the attempts it sent, which are usually only late, and asks again
    when a resending call to its destination ends (the oldest held first, one per freed place)
    or at the end of its turn. Entries live only while calls wait."""

    def __init__(self) -> None:
        self._destinations: dict[str, _BudgetEntry] = {}

    def enter(self, destination: str) -> _BudgetTicket:
        entry = self._destinations.get(destination)
        if entry is None:
            entry = self._destinations[destination] = _BudgetEntry()
        entry.waiting += 1
        return _BudgetTicket(self, destination, entry)

    def counts(self, destination: str) -> tuple[int, int]:
        """(calls waiting on ``destination``, those of them resending), for tests and metrics."""
        entry = self._destinations.get(destination)
        return (entry.waiting, entry.resending) if entry else (0, 0)

    def held(self, destination: str) -> int:
        """Calls to ``destination`` held for a place now (for tests and metrics)."""
        entry = self._destinations.get(destination)
        return len(entry.held) if entry else 0


@dataclass
class _JobRecord:
    state: dict
    owner: str
    task: asyncio.Task | None = None
    forget_at: float = float("inf")
    nbytes: int = 0


class Job:
    """A job started on another agent: ``await job.result()``, ``job.progress`` (last),
    ``job.on_progress(cb)``, ``await job.cancel()``, ``await job.poll()``."""

    def __init__(self, agent: "Agent", job_id: str, to: str, runner: str, seal_key: str):
        self.id, self.to, self.runner, self.seal_key = job_id, to, runner, seal_key
        self._agent = agent
        self._future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._future.add_done_callback(lambda f: f.exception() if not f.cancelled() else None)
        self.progress: dict | None = None
        self._callbacks: list[Callable[[dict], Any]] = []
        self.last_heard = time.monotonic()

    def on_progress(self, callback: Callable[[dict], Any]) -> None:
        self._callbacks.append(callback)

    @property
    def done(self) -> bool:
        return self._future.done()

    async def result(self, timeout: float | None = None) -> Any:
        return await asyncio.wait_for(asyncio.shield(self._future), timeout)

    async def cancel(self) -> dict:
        state = await self._agent._request(self._agent._job_address(self.to, self.id), BUILTIN_CANCEL, {"job_id": self.id}, None)
        self.update(state.get("result") or {})
        return state.get("result")

    async def poll(self) -> dict:
        return await self._agent.poll(self.to, self.id)

    def update(self, state: dict) -> None:
        self.last_heard = time.monotonic()
        if self._future.done() or not isinstance(state, dict):
            return
        p = state.get("progress")
        if p and p != self.progress:
            self.progress = p
            if state.get("status") == "running":
                for cb in self._callbacks:
                    cb(p)
        status = state.get("status")
        if status == "done":
            self._future.set_result(state.get("result"))
        elif status in ("error", "cancelled"):
            err = state.get("error") or {}
            code = "cancelled" if status == "cancelled" else err.get("code", "tool_failed")
            self._future.set_exception(error_for(code, err.get("message", f"job {status}"), "peer"))

    def fail(self, err: Exception) -> None:
        if not self._future.done():
            self._future.set_exception(err)


class Agent(CatalogCaller):
    """Use ``await Agent.connect(broker=..., cert=..., certs=...)``."""

    def __init__(self, *, cert: Certificate, server_key: str, endpoints: list[str], certs: str | None, timeout: float,
                 max_concurrency: int, replay_window: int, max_message_bytes: int, job_ttl: float,
                 job_poll_interval: float, job_lost_after: float, service_heartbeat: float, retry: bool,
                 token: str | Callable[[], Any] | None, verifier: TokenVerifier | None, require_token: bool,
                 heartbeat_interval: float = 2.0, start_grace: int | None = None,
                 job_limits: dict | None = None, answer_limits: dict | None = None,
                 retry_budget: float = DEFAULT_RETRY_BUDGET):
        if isinstance(retry_budget, bool) or not isinstance(retry_budget, (int, float)) or not 0 <= retry_budget <= 1:
            raise ConfigError(f"retry_budget must be a share between 0 and 1, got {retry_budget!r}")
        self.public_key = cert.public_key
        self._cert = cert
        self._server_key = server_key
        self._endpoints = endpoints
        self._certs_dir = certs
        self._directory = CertDirectory()
        self._directory_mtime = -1.0
        self.timeout = timeout
        self.max_concurrency = max_concurrency
        self.max_message_bytes = max_message_bytes
        self.job_ttl = job_ttl
        self.job_poll_interval = job_poll_interval
        self.job_lost_after = job_lost_after
        self.service_heartbeat = service_heartbeat
        self.heartbeat_interval = heartbeat_interval
        self.retry = retry
        self.retry_budget = float(retry_budget)
        self.redials = 0
        #: Resends the retry budget held back, and answers to timed-out attempts taken (metrics).
        self.retries_held = 0
        self.late_answers = 0
        self._last_heard = time.monotonic()
        #: The error that closed the agent (``displaced``, ``revoked``), None for close().
        self.closed_error: ZmcpError | None = None
        self._closed_future: asyncio.Future | None = None
        self._token = token
        self._verifier = verifier
        self._require_token = require_token
        self._sealer = wire.Sealer(cert.secret_key)
        self._replay = ReplayGuard(replay_window, start_grace=start_grace)
        self._clocks = ClockOffsets()
        self._pending: dict[bytes, _Pending] = {}
        # Attempts that timed out while their call still waits: id → the attempt (who may answer
        # it, §6.5) and its call. Their answers answer the call (§8.2 rule 4).
        self._late: dict[bytes, tuple[_Pending, _Call]] = {}
        self._budget = RetryBudget()
        # Calls between attempts (backoff, or held by the budget): woken when the agent closes.
        self._holding: set[_Call] = set()
        self._acks: dict[bytes, asyncio.Future] = {}
        self._tools: dict[str, _Tool] = {}
        self._catalog = CatalogRegistry()  # resources and prompts offered (catalog.py)
        self._answers: dict[str, Any] = {}  # peer:rid → dict answer | Future
        # Finished answers, in finish order → forget at; pruned from the front (an OrderedDict: see ReplayGuard).
        self._answer_times: OrderedDict[str, float] = OrderedDict()
        # Answers kept longer than the usual span, (forget at, key) in a heap: see _finish_answer.
        self._answer_far: list[tuple[float, str]] = []
        self._answer_owner: dict[str, tuple[str, int]] = {}  # key → (caller, bytes counted)
        self._answer_budget = ByteBudget({**DEFAULT_ANSWER_LIMITS, **(answer_limits or {})}, "answer cache")
        self._job_budget = ByteBudget({**DEFAULT_JOB_LIMITS, **(job_limits or {})}, "job table")
        self._jobs: dict[str, _JobRecord] = {}
        self._started: dict[str, Job] = {}
        self._served: dict[str, tuple[wire.Sealer, str]] = {}
        self._durable: set[str] = set()  # served services declared durable (heartbeat ``dur``)
        self._active = 0
        self._tasks: set[asyncio.Task] = set()
        self._closed = False
        self._handshake: asyncio.Future | None = None
        self._ctx = zmq.asyncio.Context()
        s = self._ctx.socket(zmq.DEALER)
        s.curve_serverkey = server_key.encode()
        s.curve_publickey = cert.public_key.encode()
        s.curve_secretkey = cert.secret_key.encode()
        s.setsockopt(zmq.ROUTING_ID, cert.public_key.encode())
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.IMMEDIATE, 1)
        # No ZMTP heartbeats (libzmq #4364/#4767 abort): liveness is the `hb` messages (§2.4).
        s.setsockopt(zmq.MAXMSGSIZE, 4 * max_message_bytes)
        self._socket = s
        self._reload_directory()

    # ---- lifecycle ----------------------------------------------------------------------------

    @classmethod
    async def connect(cls, broker: str | list[str], cert: str | Certificate, certs: str | None = None, *,
                      server_key: str | None = None, connect_timeout: float = 10.0, timeout: float = 30.0,
                      max_concurrency: int = 64, replay_window: int = 60_000,
                      max_message_bytes: int = wire.DEFAULT_MAX_MESSAGE_BYTES, job_ttl: float = 600.0,
                      job_poll_interval: float = 2.0, job_lost_after: float = 30.0, service_heartbeat: float = 1.0,
                      retry: bool = True, token: str | Callable[[], Any] | None = None, authority: Any = None,
                      require_token: bool | None = None, audience: str = "mesh", clock_skew: int = 30_000,
                      deny_list: str | None = None, heartbeat_interval: float = 2.0, start_grace: int | None = None,
                      max_token_lifetime: int = 300, job_limits: dict | None = None,
                      answer_limits: dict | None = None, retry_budget: float = DEFAULT_RETRY_BUDGET) -> "Agent":
        """Connects to the broker(s) and waits for the CURVE handshake (unless connect_timeout is 0).

        ``cert``: this agent's ``.key_secret`` path; ``certs``: the public certificate directory
        (names, service keys, ``broker.key``). Times are in seconds, except the protocol's
        millisecond windows (replay_window, clock_skew, start_grace).

        ``retry_budget``: the share (0 to 1) of the calls waiting on one destination that may
        resend to it after a timed-out attempt at the same time (always at least 3); a call over
        it sends nothing more and waits for its attempts' answers (§8.2 rule 4).

        ``heartbeat_interval``: a liveness ``hb`` this often, and a redial when the broker was
        silent 3 × as long (0 turns liveness off). ``start_grace``: requests stamped more than
        this many ms before the agent started are refused ``busy`` (default 2,000; the
        peers' clocks agree within it). Await ``agent.closed`` to learn when a broker notice (``displaced``,
        ``revoked``) closed the agent."""
        c = load_secret_certificate(cert) if isinstance(cert, str) else cert
        if server_key is None:
            if not certs:
                raise ConfigError("server_key or certs (holding broker.key) is required")
            server_key = load_certificate(os.path.join(certs, "broker.key")).public_key
        if not wire.is_z85_key(server_key):
            raise ConfigError("server_key must be a 40-character Z85 key")
        endpoints = [broker] if isinstance(broker, str) else list(broker)
        if not endpoints:
            raise ConfigError("at least one broker endpoint is required")
        require = authority is not None if require_token is None else require_token
        if authority is None and (require or deny_list):
            raise ConfigError("require_token and deny_list need an authority (trusted public JWK)")
        verifier = TokenVerifier(authority, audience, clock_skew, deny_list, max_token_lifetime) if authority is not None else None
        agent = cls(cert=c, server_key=server_key, endpoints=endpoints, certs=certs, timeout=timeout,
                    max_concurrency=max_concurrency, replay_window=replay_window, max_message_bytes=max_message_bytes,
                    job_ttl=job_ttl, job_poll_interval=job_poll_interval, job_lost_after=job_lost_after,
                    service_heartbeat=service_heartbeat, retry=retry, token=token, verifier=verifier, require_token=require,
                    heartbeat_interval=heartbeat_interval, start_grace=start_grace,
                    job_limits=job_limits, answer_limits=answer_limits, retry_budget=retry_budget)
        loop = asyncio.get_running_loop()
        agent._closed_future = loop.create_future()
        agent._handshake = loop.create_future()
        monitor = agent._socket.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
        agent._spawn(agent._watch(monitor))
        for e in endpoints:
            agent._socket.connect(e)
        agent._spawn(agent._receive_loop())
        if heartbeat_interval > 0:
            agent._spawn(agent._keep_alive())
        if connect_timeout > 0:
            try:
                await asyncio.wait_for(asyncio.shield(agent._handshake), connect_timeout)
            except asyncio.TimeoutError:
                await agent.close()
                raise TimeoutError_(f"no CURVE handshake with {', '.join(endpoints)} within {connect_timeout} s") from None
            except BaseException:
                await agent.close()
                raise
        return agent

    @property
    def closed(self) -> asyncio.Future:
        """Resolves when the agent closes: with None after close(), with the error that closed
        it after a broker notice (``DisplacedError``, ``RevokedError``). Never raises."""
        assert self._closed_future is not None
        return self._closed_future

    async def close(self, error: ZmcpError | None = None) -> None:
        if self._closed:
            return
        self._closed = True
        self.closed_error = error
        if self._closed_future is not None and not self._closed_future.done():
            self._closed_future.set_result(error)
        closed = error or ClosedError("agent closed")
        for p in self._pending.values():
            if not p.future.done():
                p.future.set_exception(closed)
        for call in self._holding:
            call.wake.set()  # a call between attempts sees the agent closed and raises at once
        for f in self._acks.values():
            if not f.done():
                f.set_exception(closed)
        for job in list(self._started.values()):
            job.fail(closed)
        for record in self._jobs.values():
            if record.task and not record.task.done():
                record.task.cancel()
        current = asyncio.current_task()
        for t in list(self._tasks):
            if t is not current:
                t.cancel()
        await asyncio.gather(*[t for t in self._tasks if t is not current], return_exceptions=True)
        self._socket.disable_monitor()
        self._socket.close(0)
        self._ctx.term()

    async def __aenter__(self) -> "Agent":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def _spawn(self, coro: Awaitable) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _watch(self, monitor) -> None:
        try:
            while True:
                event = parse_monitor_message(await monitor.recv_multipart())
                if event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                    self._last_heard = time.monotonic()
                    if self._handshake and not self._handshake.done():
                        self._handshake.set_result(None)
                    # A restarted broker learns our services at once, and that we keep liveness.
                    if self._served or self.heartbeat_interval > 0:
                        self._spawn(self._heartbeat(even_without_services=self.heartbeat_interval > 0))
                elif self._handshake and not self._handshake.done():
                    self._handshake.set_exception(ERROR_CLASSES["handshake_failed"](
                        f"broker refused the handshake ({event['event']}); is this key in its allowlist?"))
        except (asyncio.CancelledError, zmq.ZMQError):
            pass
        finally:
            monitor.close(0)

    # ---- names ------------------------------------------------------------------------------

    def _reload_directory(self) -> bool:
        if not self._certs_dir:
            return False
        try:
            mtime = os.stat(self._certs_dir).st_mtime
        except OSError:
            return False
        if mtime == self._directory_mtime:
            return False
        self._directory_mtime = mtime
        self._directory = load_cert_directory(self._certs_dir)
        return True

    def resolve(self, to: str) -> str:
        """A certificate name or Z85 key → Z85 key. Raises UnknownPeerError."""
        if wire.is_z85_key(to):
            return to
        key = self._directory.by_name.get(to)
        if key is None and self._reload_directory():
            key = self._directory.by_name.get(to)
        if key is None:
            raise error_for("unknown_peer", f"no certificate named {to!r}")
        return key

    def name_of(self, key: str) -> str | None:
        return self._directory.by_key.get(key)

    def _service_key(self, name: str) -> str:
        key = self._directory.services.get(name)
        if key is None and self._reload_directory():
            key = self._directory.services.get(name)
        if key is None:
            raise error_for("unknown_peer", f"no certificate for service {name!r} (svc-{name}.key in the certificate directory)")
        return key

    def _route(self, to: str) -> tuple[str, str, str | None]:
        """(header to, key to seal to, exact sender required of the answer or None)."""
        svc = wire.parse_service_address(to)
        if svc:
            return to, self._service_key(svc[0]), svc[1]
        key = self.resolve(to)
        return key, key, key

    @staticmethod
    def _job_address(to: str, job_id: str) -> str:
        svc = wire.parse_service_address(to)
        runner = wire.job_runner(job_id)
        return wire.service_address(svc[0], runner) if svc and runner else to

    # ---- calling ------------------------------------------------------------------------------

    async def call(self, to: str, tool: str, args: Any = None, *, timeout: float | None = None) -> Any:
        """Calls ``tool`` on ``to`` (certificate name, Z85 key, ``svc:NAME``) and returns its
        result; for a job tool, the job's result. Raises the ZmcpError subclass of the code."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        answer = await self._request(to, tool, {} if args is None else args, timeout)
        if answer["st"] != "accepted":
            return answer.get("result")
        job = self._adopt(to, answer)
        try:
            return await job.result(max(0.001, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            raise TimeoutError_(f"job {job.id} did not end within the call's deadline") from None

    async def start(self, to: str, tool: str, args: Any = None, *, timeout: float | None = None) -> Job:
        """Starts a job tool and returns its :class:`Job` at once."""
        answer = await self._request(to, tool, {} if args is None else args, timeout)
        if answer["st"] == "accepted":
            return self._adopt(to, answer)
        job = Job(self, "", to, answer["_from"], "")
        job.update({"status": "done", "result": answer.get("result")})
        return job

    async def poll(self, to: str, job_id: str, *, timeout: float | None = None) -> dict:
        answer = await self._request(self._job_address(to, job_id), BUILTIN_POLL, {"job_id": job_id}, timeout)
        return answer.get("result")

    async def list_tools(self, to: str, *, timeout: float | None = None) -> list[dict]:
        answer = await self._request(to, BUILTIN_LIST, {}, timeout)
        result = answer.get("result")
        if not isinstance(result, dict) or not isinstance(result.get("tools"), list):
            raise error_for("bad_frame", "invalid tools/list answer")
        return result["tools"]

    async def _token_value(self) -> str | None:
        t = self._token
        if t is None or isinstance(t, str):
            return t
        value = t()
        return await value if inspect.isawaitable(value) else value

    async def _request(self, to: str, tool: str, args: Any, timeout: float | None) -> dict:
        """One request, retried on busy/no_route/lost answers within the deadline: the same
        ``rid`` every attempt, a fresh message ``id`` each (§7).

        A timed-out attempt is usually late, not lost (its destination is busy), so its id stays
        matched until the call ends and its answer answers the call (``_late``, §8.2 rule 4).
        Resends after a timeout are bounded per destination by the retry budget: a call over it
        sends nothing more and waits for those answers, in turns of the attempt timeout, until
        its deadline; it asks the budget again at the end of each turn and also as soon as a
        resending call to its destination ends (the oldest held call first). Unbounded, every call to an overloaded destination resends each attempt
        timeout, and the load grows with the overload."""
        if self._closed:
            raise self.closed_error or ClosedError("agent is closed")
        header_to, seal_key, peer = self._route(to)
        timeout = self.timeout if timeout is None else timeout
        if not timeout > 0:
            raise ConfigError("timeout must be a positive number of seconds")
        deadline = time.monotonic() + timeout
        deadline_ms = now_ms() + int(timeout * 1000)
        attempts = 8 if self.retry else 1
        attempt_timeout = min(2.0, max(0.5, timeout / 4)) if self.retry else timeout
        # §8.2: replicas do not share answer caches, so an attempt to svc:NAME waits for the whole
        # deadline (a resend could run the tool on a second replica); only explicit refusals
        # (busy, no_route) are retried there.
        whole_deadline = header_to.startswith(wire.SERVICE_PREFIX) and peer is None
        tok = await self._token_value()
        rid = os.urandom(16)
        call = _Call()
        ticket = self._budget.enter(header_to)

        def timed_out(attempt: int) -> ZmcpError:
            # A forged answer to a timed-out attempt is the call's error (bad_seal) rather than a
            # plain timeout; the circuit, were there one, would still count a timeout.
            if call.forged is not None:
                return call.forged
            return TimeoutError_(f"call {tool} on {to} got no answer within {timeout} s ({attempt} attempts)")
        try:
            attempt = 1
            while True:
                remaining = deadline - time.monotonic()
                last = attempt >= attempts
                try:
                    # A late answer that came between attempts is the call's answer: nothing is sent.
                    answer, call.arrived = call.arrived, None
                    if answer is None:
                        draft = {"t": "req", "ts": now_ms(), "rid": rid, "tool": tool, "args": args}
                        if tok is not None:
                            draft["tok"] = tok
                        answer = await self._attempt(header_to, seal_key, peer, draft, deadline_ms,
                                                     remaining if last or whole_deadline else min(attempt_timeout, remaining), call)
                    # "Already ran once; its answer was dropped" (§8.3) answers a resend: the first
                    # answer went out before and may still come on a timed-out attempt. Waited for
                    # until the deadline, while some timed-out attempt may still be answered (none
                    # refused by the broker since); only if it never comes is this the outcome.
                    if _is_dropped_answer(answer) and self._may_still_answer(call) and time.monotonic() < deadline:
                        # It sends nothing more: its resend place frees now for a held call (kept
                        # until the deadline, held calls whose answers were lost waited out theirs).
                        ticket.release()
                        # Until the answer that went out comes: a refusal of another attempt (a late
                        # busy, the broker's nack: _on_response and _on_broker take it as lost) is
                        # not it, and does not end the wait while an attempt may still be answered.
                        while not self._closed and time.monotonic() < deadline:
                            await self._between_attempts(call, deadline - time.monotonic(),
                                                         lambda: not self._may_still_answer(call))
                            late, call.arrived = call.arrived, None
                            if late is not None and not _is_dropped_answer(late):
                                answer = late
                                break
                            if not self._may_still_answer(call):
                                break
                        if self._closed:
                            raise self.closed_error or ClosedError("agent is closed") from None
                    if answer["st"] == "error":
                        raise remote_error(answer.get("error"), "peer")
                    return answer
                except ZmcpError as err:
                    delay = min(1.0, 0.05 * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
                    if last or err.code not in RETRYABLE or time.monotonic() + delay >= deadline or (whole_deadline and err.code == "timeout"):
                        if err.code == "timeout" and isinstance(err, TimeoutError_):
                            raise timed_out(attempt) from None
                        raise
                    # Timed out: the attempt is most likely late. Resend only within the budget;
                    # else wait for its answer (or an earlier attempt's), a turn of the attempt
                    # timeout at a time, re-checking the budget, until the deadline. While held it
                    # is registered with the budget, which wakes it when a resending call to its
                    # destination ends (oldest first, one per freed place): re-checking only at
                    # the end of each turn drained a crowd of held calls one budget's share per
                    # attempt timeout, and when only calls whose answers were lost were left, the
                    # last of them waited out their deadline.
                    held = False
                    timed_out_now = isinstance(err, TimeoutError_)
                    while (timed_out_now and call.arrived is None and not call.lost and call.refused is None
                           and not ticket.may_resend(self.retry_budget)):
                        if time.monotonic() >= deadline:
                            raise timed_out(attempt) from None
                        if not held:
                            self.retries_held += 1
                        held = True
                        call.place = False
                        ticket.hold(lambda: _place_freed(call))
                        try:
                            await self._between_attempts(call, min(attempt_timeout, deadline - time.monotonic()),
                                                         lambda: call.lost or call.place or call.refused is not None)
                        finally:
                            ticket.hold(None)  # no longer held (answered, woken, turn over, closed)
                        if self._closed:
                            raise self.closed_error or ClosedError("agent is closed") from None
                    # Held until its deadline, then let go by the budget (a place freed just as its
                    # last turn ended): nothing more to send. The loop checks the deadline only
                    # before each turn, and one more attempt, already past its exp, went out (a
                    # message the broker or callee can only refuse; the TypeScript caller's 37283e1).
                    if held and call.arrived is None and time.monotonic() >= deadline:
                        raise timed_out(attempt) from None
                    if call.arrived is not None:
                        continue  # nothing more is sent: the next turn takes the answer that came
                    # The broker refused an earlier attempt with a final code (rate_limited: back
                    # off): the call fails with it, as it would had that attempt been the one
                    # pending (before: a held call resent at once; the TypeScript caller's c7312f2).
                    if timed_out_now and call.refused is not None:
                        raise call.refused
                    if not held:  # held already waited; resending after a refusal (lost) goes at once
                        # The backoff, cut short by a late answer (taken at once), close, or a final
                        # late refusal (the call ends with it). A late busy/no_route nack does not
                        # cut it short: it changes nothing, a resend is coming anyway.
                        await self._between_attempts(call, delay, lambda: timed_out_now and call.refused is not None)
                        if self._closed:
                            raise self.closed_error or ClosedError("agent is closed") from None
                        if call.arrived is not None:
                            continue
                        if timed_out_now and call.refused is not None:
                            raise call.refused
                    call.lost = False
                    attempt += 1
        finally:
            ticket.end()
            for key in call.late:
                self._late.pop(key, None)

    def _may_still_answer(self, call: _Call) -> bool:
        """Whether an attempt of ``call`` that timed out may still be answered (none was refused since)."""
        return any(key in self._late for key in call.late)

    async def _between_attempts(self, call: _Call, seconds: float, until: Callable[[], bool]) -> None:
        """Waits up to ``seconds`` for a late answer to ``call``, until ``until()`` holds (checked
        at each wake-up: a refusal of a timed-out attempt, a place freed in the retry budget), or
        until the agent closes."""
        end = time.monotonic() + seconds
        self._holding.add(call)
        try:
            while call.arrived is None and not until() and not self._closed:
                left = end - time.monotonic()
                if left <= 0:
                    return
                call.wake.clear()
                try:
                    await asyncio.wait_for(call.wake.wait(), left)
                except asyncio.TimeoutError:
                    return
        finally:
            self._holding.discard(call)

    async def _attempt(self, to: str, seal_key: str, peer: str | None, draft: dict, exp: int, timeout: float,
                       call: _Call | None = None) -> dict:
        if self._closed:
            raise ClosedError("agent is closed")
        header = {"v": wire.PROTOCOL_VERSION, "k": "req", "id": os.urandom(16), "to": to, "exp": exp}
        frames = self._seal(self._sealer, seal_key, header, draft)
        future = asyncio.get_running_loop().create_future()
        pending = self._pending[header["id"]] = _Pending(future, seal_key, peer)
        if call is not None:
            call.current = header["id"]
        try:
            if _timeout is not None:  # Python >= 3.11: no task per call
                async with _timeout(max(0.001, timeout)):
                    await self._socket.send_multipart(frames)
                    return await future
            return await asyncio.wait_for(self._send(frames, future), max(0.001, timeout))
        except asyncio.TimeoutError:
            # Timed out, so most likely late: its answer still answers the call until it ends.
            if call is not None:
                self._late[header["id"]] = (pending, call)
                call.late.append(header["id"])
            if pending.refused is not None:
                raise pending.refused from None  # e.g. bad_seal: only forged answers came
            raise TimeoutError_("no answer") from None
        finally:
            self._pending.pop(header["id"], None)
            if call is not None:
                call.current = None

    async def _send(self, frames: list[bytes], future: asyncio.Future | None = None) -> Any:
        await self._socket.send_multipart(frames)
        return await future if future is not None else None

    def _seal(self, sealer: wire.Sealer, to: str, header: dict, draft: dict) -> list[bytes]:
        header_bytes = wire.encode_header(header)
        try:
            plaintext = wire.encode_inner(draft, header_bytes)
        except (TypeError, ValueError, OverflowError) as err:
            raise error_for("invalid_args", f"cannot encode message: {err}") from err
        # The receiver's own structural limits (depth, values per message): what it would drop
        # is refused here, with the reason, instead of lost on the way (§5.2).
        try:
            wire.check_msgpack(plaintext, wire.MAX_DEPTH)
        except ZmcpError as err:
            raise error_for("invalid_args", f"message not readable by its receiver: {err.message}") from None
        body = sealer.seal(to, plaintext)
        if len(header_bytes) + len(body) > self.max_message_bytes:
            raise error_for("too_large", f"message of {len(header_bytes) + len(body)} bytes exceeds {self.max_message_bytes}")
        return [header_bytes, body]

    def _adopt(self, to: str, answer: dict) -> Job:
        result = answer.get("result")
        job_id = result.get("job_id") if isinstance(result, dict) else None
        runner = wire.job_runner(job_id)
        # §9: the job id names its runner; it must be the agent that answered (or, for a
        # service, a replica answering as that service).
        if runner is None or (answer["_peer"] is not None and runner != answer["_peer"]) or runner != answer["_from"]:
            raise error_for("bad_frame", f"accepted answer with a job id that does not name its runner: {job_id!r}")
        job = Job(self, job_id, to, runner, answer["_seal_key"])
        self._started[job_id] = job
        if self.job_poll_interval > 0:
            self._spawn(self._poll_loop(job))
        job._future.add_done_callback(lambda _f: self._started.pop(job_id, None))
        return job

    async def _poll_loop(self, job: Job) -> None:
        while not job.done and not self._closed:
            await asyncio.sleep(self.job_poll_interval)
            if job.done:
                return
            try:
                job.update(await self.poll(job.to, job.id, timeout=max(1.0, self.job_poll_interval)))
            except ZmcpError as err:
                if err.code in ("unknown_job", "forbidden"):
                    job.fail(err)
                elif time.monotonic() - job.last_heard > self.job_lost_after:
                    job.fail(TimeoutError_(f"job {job.id}: its runner has not answered a poll for {self.job_lost_after} s (last: {err.code})"))

    # ---- serving --------------------------------------------------------------------------------

    def tool(self, name: str, handler: Callable | None = None, *, schema: dict | None = None, description: str = "",
             job: bool = False, scope: str | None = None, output_schema: dict | None = None):
        """Offers a tool. ``handler(args)`` or ``handler(args, ctx)``, sync or async; its
        arguments are checked against ``schema`` (JSON Schema) first. Usable as a decorator."""
        def register(fn: Callable) -> Callable:
            if not isinstance(name, str) or not 1 <= len(name) <= 256:
                raise ConfigError("tool name must be 1 to 256 characters")
            if name in BUILTINS or name in CATALOG_BUILTINS:
                raise ConfigError(f"tool name {name!r} is reserved")
            if name in self._tools:
                raise ConfigError(f"tool {name!r} is already registered")
            tool_scope = scope or default_tool_scope(name)
            check_scope_token(tool_scope)
            info = {"name": name, "description": description, "inputSchema": schema or {"type": "object"}, "job": job}
            if output_schema:
                info["outputSchema"] = output_schema
            params = [p for p in inspect.signature(fn).parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            self._tools[name] = _Tool(info, schema, tool_scope, fn, len(params) >= 2)
            return fn
        return register(handler) if handler is not None else register

    def remove_tool(self, name: str) -> bool:
        return self._tools.pop(name, None) is not None

    def resource(self, uri: str, reader: Callable | None = None, **spec: Any):
        """Offers a resource at a fixed URI: ``reader(uri)`` or ``reader(uri, ctx)``, sync or async,
        returns a string (one text content) or ``{"contents": [...]}``. ``spec``: ``name``, ``title``,
        ``description``, ``mime_type``, ``size``, ``annotations``, ``scope`` (default ``read:<uri>``).
        Usable as a decorator. Served by the §9.1 built-ins (catalog.py)."""
        def register(fn: Callable) -> Callable:
            self._catalog.add_resource(uri, fn, **spec)
            return fn
        return register(reader) if reader is not None else register

    def remove_resource(self, uri: str) -> bool:
        return self._catalog.remove_resource(uri)

    def prompt(self, name: str, getter: Callable | None = None, **spec: Any):
        """Offers a prompt: ``getter(arguments)`` or ``getter(arguments, ctx)`` returns a string (one
        user message) or ``{"messages": [...]}``. ``spec``: ``title``, ``description``, ``arguments``
        (``[{"name", "description"?, "required"?}]``), ``scope`` (default ``prompt:<name>``),
        ``complete(argument, chosen_arguments)`` → a list of values. Usable as a decorator."""
        def register(fn: Callable) -> Callable:
            self._catalog.add_prompt(name, fn, **spec)
            return fn
        return register(getter) if getter is not None else register

    def remove_prompt(self, name: str) -> bool:
        return self._catalog.remove_prompt(name)

    async def serve(self, name: str, cert: str | Certificate | None = None, *, timeout: float = 5.0, durable: bool = False) -> None:
        """Serves as a replica of ``svc:NAME``; ``cert`` is the service's secret certificate
        (default ``<certs>/svc-NAME.key_secret``). Returns once the broker acked the proof.
        ``durable=True`` declares the service durable (heartbeat ``dur``, docs/DURABLE.md): a
        broker with a store queues every request to it."""
        if not wire.is_service_name(name):
            raise ConfigError(f"invalid service name {name!r}")
        source = cert or (os.path.join(self._certs_dir, f"svc-{name}.key_secret") if self._certs_dir else None)
        if source is None:
            raise ConfigError("serve() needs the service's secret certificate or a certs directory")
        c = load_secret_certificate(source) if isinstance(source, str) else source
        first = not self._served
        self._served[name] = (wire.Sealer(c.secret_key), c.public_key)
        if durable:
            self._durable.add(name)
        else:
            self._durable.discard(name)
        try:
            await self._heartbeat(timeout)
        except BaseException:
            self._served.pop(name, None)
            self._durable.discard(name)
            raise
        if first:
            self._spawn(self._heartbeat_loop())

    async def _heartbeat_loop(self) -> None:
        while not self._closed and self._served:
            await asyncio.sleep(self.service_heartbeat)
            try:
                await self._heartbeat()
            except (ZmcpError, zmq.ZMQError):
                pass

    async def _keep_alive(self) -> None:
        """§2.4 liveness: a ``hb`` every ``heartbeat_interval`` (the service heartbeats count when
        there are services), and a redial of every endpoint when nothing at all came from a broker
        for 3 × the interval (a frozen broker, a half-open TCP connection)."""
        interval = self.heartbeat_interval
        while not self._closed:
            await asyncio.sleep(interval)
            if self._closed:
                return
            if not self._served:
                try:
                    await self._heartbeat(even_without_services=True)
                except (ZmcpError, zmq.ZMQError):
                    pass
            if time.monotonic() - self._last_heard <= 3 * interval:
                continue
            self._last_heard = time.monotonic()  # one redial per timeout
            self.redials += 1
            logging.getLogger("zmcp").warning("broker silent for %.1f s; redialling %s", 3 * interval, self._endpoints)
            for e in self._endpoints:
                try:
                    self._socket.disconnect(e)
                except zmq.ZMQError:
                    pass
                try:
                    self._socket.connect(e)
                except zmq.ZMQError as err:
                    logging.getLogger("zmcp").error("redial of %s failed: %s", e, err)

    async def _heartbeat(self, wait: float | None = None, even_without_services: bool = False) -> None:
        """§11.3: a ``hb`` to the broker (to = "") with every served service and its proof, or
        none (liveness only, §2.4); one per broker endpoint (DEALER spreads sends over
        connections). Waits for the first ack if asked."""
        if self._closed or (not self._served and not even_without_services):
            return
        ts = now_ms()
        svc = [{"name": n, "key": pub, "ts": ts,
                "proof": wire.make_service_proof(sealer.shared(self._server_key), self.public_key, ts),
                "free": max(0, self.max_concurrency - self._active),
                **({"dur": True} if n in self._durable else {})} for n, (sealer, pub) in self._served.items()]
        body = wire.pack({"svc": svc})
        acks = []
        for _ in self._endpoints:
            header = {"v": wire.PROTOCOL_VERSION, "k": "hb", "id": os.urandom(16), "to": "", "exp": ts + int(2000 * self.service_heartbeat)}
            if wait is not None:
                f = asyncio.get_running_loop().create_future()
                self._acks[header["id"]] = f
                acks.append((header["id"], f))
            await self._socket.send_multipart([wire.encode_header(header), body])
        if wait is None:
            return
        try:
            done, _ = await asyncio.wait([f for _, f in acks], timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            if not done:
                raise TimeoutError_("service announcement: no ack from the broker")
            first = done.pop()
            first.result()
        finally:
            for i, _ in acks:
                self._acks.pop(i, None)

    def job_state(self, job_id: str, caller: str) -> dict:
        return dict(self._job_get(job_id, caller).state)

    # ---- receiving ------------------------------------------------------------------------------

    async def _receive_loop(self) -> None:
        while not self._closed:
            try:
                frames = await self._socket.recv_multipart()
                self._last_heard = time.monotonic()  # anything from a broker shows the connection is alive
            except asyncio.CancelledError:
                return
            except zmq.ZMQError:
                if self._closed:
                    return
                continue
            try:
                self._dispatch(frames)
            except Exception:  # noqa: BLE001 - no peer input may end the loop
                pass

    def _dispatch(self, frames: list[bytes]) -> None:
        if len(frames) != 3:
            return
        sender, header_bytes, body = frames
        if not sender:
            return self._on_broker(header_bytes)
        try:
            peer = sender.decode("latin1")
        except Exception:
            return
        if not wire.is_z85_key(peer):
            return
        try:
            header = wire.decode_header(header_bytes)
        except ZmcpError:
            return  # only a faulty broker forwards a header it could not read itself
        if header["k"] == "pub":
            return  # a publication: this agent subscribes to nothing (docs/EVENTS.md), so none is for it
        svc = wire.parse_service_address(header["to"])
        served = self._served.get(svc[0]) if svc else None
        sealer = served[0] if served else self._sealer
        reply_as = wire.service_address(svc[0]) if served else None
        opened = False
        try:
            if svc and not served:
                raise error_for("no_route", f"this agent does not serve {svc[0]}")
            now = now_ms()
            if header["exp"] + self._replay.window_ms < now:
                raise error_for("expired", "message is past its deadline")
            size = len(header_bytes) + len(body)
            if size > self.max_message_bytes:
                raise error_for("too_large", f"message of {size} bytes exceeds {self.max_message_bytes}")
            sealed_by = peer if "as" not in header else self._service_key_of(header["as"])
            if header["k"] == "res":
                self._check_responder(header, peer, sealed_by)
            plaintext = sealer.open(sealed_by, body)
            opened = True
            # A request's args stay undecoded until its token is checked (§5.2, §12.3).
            inner = wire.decode_inner(plaintext, header_bytes, defer_args=True)
            if inner["t"] != header["k"]:
                raise error_for("bad_frame", f"header kind {header['k']} does not match message kind {inner['t']}")
            ts = math.floor(inner["ts"])  # §7 T0: a fractional ts is read floored
            # A request to a service declared durable here may have waited in its queue without
            # ``dur`` from the caller (docs/DURABLE.md): judged like a ``dur`` message.
            declared = header["k"] == "req" and svc is not None and svc[1] is None and svc[0] in self._durable
            self._replay.check(f"{peer}:{header['id'].hex()}", ts, now, header.get("dur") is True or declared)
            deadline = header["exp"] + self._clocks.observe(peer, ts, now, time.monotonic())
            if deadline < now:
                raise error_for("expired", f"message is past its deadline (by {now - deadline} ms on this clock)")
            if inner["t"] == "req":
                reply = {"peer": peer, "id": header["id"], "exp": int(deadline), "sealer": sealer, "as": reply_as, "dur": header.get("dur") is True}
                self._spawn(self._on_request(reply, inner))
            elif inner["t"] == "res":
                self._on_response(peer, sealed_by, header, inner)
            else:
                self._on_event(peer, sealed_by, inner)
        except _Dropped:
            return
        except ZmcpError as err:
            if header["k"] == "req":
                # §6.4: sealed as what was asked (the service, when served here), so that a
                # binding caller can read the refusal; exp per §7 T8.
                reply = {"peer": peer, "id": header["id"], "exp": max(header["exp"], now_ms() + 30_000), "sealer": sealer, "as": reply_as, "dur": header.get("dur") is True}
                self._respond(reply, {"st": "error", "error": {"code": err.code if err.code in WIRE_CODES else "bad_frame", "message": err.message}})
            elif header["k"] == "res" and "re" in header:
                pending = self._pending.get(header["re"])
                if pending is None or pending.future.done():
                    return
                if opened:  # the asked party's own word (e.g. its clock outside the window)
                    pending.future.set_exception(error_for(err.code, err.message, "peer"))
                elif pending.refused is None:
                    pending.refused = error_for(err.code, f"refused an answer: {err.message}", "peer")

    def _service_key_of(self, as_: str) -> str:
        svc = wire.parse_service_address(as_)
        if not svc or svc[1] is not None:
            raise error_for("bad_seal", f"sealed as {as_!r}, which is no service")
        try:
            return self._service_key(svc[0])
        except ZmcpError:
            raise error_for("bad_seal", f"sealed as service {svc[0]}, whose key is unknown here") from None

    def _answered_attempt(self, re_: bytes) -> tuple[_Pending | None, _Call | None]:
        """The attempt a response's ``re`` names: pending now (with no call), or timed out while
        its call still waits (with that call); (None, None) for anything else."""
        pending = self._pending.get(re_)
        if pending is not None and not pending.future.done():
            return pending, None
        late = self._late.get(re_)
        return (late[0], late[1]) if late is not None else (None, None)

    @staticmethod
    def _binds(pending: _Pending, peer: str, sealed_by: str) -> bool:
        return sealed_by == pending.seal_key and (pending.peer is None or peer == pending.peer)

    def _check_responder(self, header: dict, peer: str, sealed_by: str) -> None:
        """§6.5 binding, before opening: an answer counts only if sealed by the key that was
        addressed (and, for a named replica or a plain agent, sent by it). A forgery is noted on
        the call (its error if the real answer never comes: bad_seal) and dropped; it cannot
        end the call, so a peer that learnt an id cannot cut calls off."""
        pending, call = self._answered_attempt(header.get("re", b""))
        if pending is None:
            raise _Dropped()
        if not self._binds(pending, peer, sealed_by):
            # Noted on the attempt it claims to answer while that one is pending. For a timed-out
            # attempt, noted on its call, not on the attempt pending now (which would then fail
            # bad_seal at its timeout, not retried, before the real late answer came): if the call
            # ends timed out, it fails bad_seal instead (before: dropped and forgotten, so the call
            # failed a plain timeout, hiding the forgery; the TypeScript caller's fbbf5ff).
            forged = error_for("bad_seal", f"refused an answer not sealed by the party asked (from {peer}, sealed by {sealed_by})", "peer")
            if call is None:
                pending.refused = forged
            elif call.forged is None:
                call.forged = forged
            raise _Dropped()

    def _on_response(self, peer: str, sealed_by: str, header: dict, inner: dict) -> None:
        pending, call = self._answered_attempt(header.get("re", b""))
        if pending is None or not self._binds(pending, peer, sealed_by):
            return
        inner["_from"] = peer
        inner["_peer"] = pending.peer
        inner["_seal_key"] = pending.seal_key
        if call is None:
            pending.future.set_result(inner)
            return
        # A late answer to an earlier attempt of a call still waiting: it answers the call, through
        # the attempt pending now, or, between attempts, kept and taken at once (call.wake).
        refusal = _is_refusal(inner)
        current = self._pending.get(call.current) if call.current is not None else None
        if current is not None and not current.future.done():
            # A late refusal that proves nothing ran (busy, no_route) is about its own attempt only:
            # the one pending now may be running the tool, and ending its wait with ``busy`` would
            # fail the call as if nothing ran (on its last attempt, or near its deadline) while the
            # tool ran, inviting a second run under a new rid. Dropped (the TypeScript caller's d07607c).
            if refusal:
                return
            self.late_answers += 1
            current.future.set_result(inner)
        elif refusal:
            # Between attempts, a refusal says only that its own attempt ran nothing, as the
            # broker's nack of it would (see _on_broker): that attempt is forgotten and the call
            # may send again. It is not the call's outcome: kept as its answer, it failed the call
            # ``busy`` while a later attempt ran the tool (the TypeScript caller's a020cb8).
            if self._late.pop(header.get("re", b""), None) is not None:
                call.lost = True
                call.wake.set()
        elif call.arrived is None:
            self.late_answers += 1
            call.arrived = inner
            call.wake.set()
        # else: a second late answer to the call, dropped

    def _on_event(self, peer: str, sealed_by: str, event: dict) -> None:
        job = self._started.get(event["job"])
        # Only the runner named in the job id, sealing with the key the job was started on.
        if job is None or peer != job.runner or sealed_by != job.seal_key:
            return
        state = {"status": event["st"]}
        for k in ("progress", "result", "error"):
            if k in event:
                state[k] = event[k]
        job.update(state)

    def _on_broker(self, header_bytes: bytes) -> None:
        try:
            header = wire.decode_header(header_bytes)
        except ZmcpError:
            return
        re_ = header.get("re")
        if header["k"] == "ack":
            f = self._acks.get(re_)
            if f and not f.done():
                f.set_result(None)
            return
        if header["k"] != "nack":
            return
        err = remote_error({"code": header.get("code", "bad_frame"), "message": header.get("msg", "refused by broker")}, "broker")
        if re_ is None and err.code in ("displaced", "revoked"):
            # §3.4 broker notice: this connection will receive nothing more. Staying up would look
            # alive while every call to this key fails, so the agent closes, loudly.
            logging.getLogger("zmcp").error(
                "%s: %s (key %s)", err.code,
                "another process connected with this agent's key" if err.code == "displaced" else "the broker no longer admits this agent's key",
                self.public_key)
            self._spawn(self.close(err))
            return
        pending = self._pending.get(re_)
        if pending and not pending.future.done():
            pending.future.set_exception(err)
            return
        late = self._late.pop(re_, None) if re_ is not None else None
        if late is not None:
            # A timed-out attempt refused after all: it never reached the callee, so nothing ran.
            # busy/no_route: its call, if the budget holds it waiting for that answer, sends again
            # at once (no duplicate work, so outside the budget). Any other code is final, as for
            # the attempt pending: a late rate_limited means back off, never resend at once; the
            # call ends with it once no attempt of it is pending (the TypeScript caller's c7312f2).
            call = late[1]
            if err.code in ("busy", "no_route"):
                call.lost = True
            elif call.refused is None:
                call.refused = err
            call.wake.set()
            return
        f = self._acks.get(re_)
        if f and not f.done():
            f.set_exception(err)

    # ---- answering ----------------------------------------------------------------------------

    async def _on_request(self, reply: dict, req: dict) -> None:
        tool_name = req["tool"]
        builtin = tool_name in BUILTINS or tool_name in CATALOG_BUILTINS
        tool = None if builtin else self._tools.get(tool_name)
        grant = None
        if self._verifier and (self._require_token or "tok" in req):
            try:
                scope = None if builtin else (tool.scope if tool else default_tool_scope(tool_name))
                grant = self._verifier.authorize(req.get("tok"), reply["peer"], scope)
            except ZmcpError as err:
                return self._respond(reply, _failure(err.code, err.message))
        try:
            req["args"] = wire.decode_args(req["args"])
        except ZmcpError as err:
            return self._respond(reply, _failure(err.code, err.message))
        if builtin and tool_name in CATALOG_BUILTINS:
            # resources/*, prompts/*, completion/complete (catalog.py): a listing or refusal answers
            # here; a read, get or completion goes on as a tool run (idempotency, concurrency, deadline).
            resolved = self._catalog.resolve(tool_name, req["args"], lambda s: grant is None or scope_covers(grant.scopes, s))
            if isinstance(resolved, dict):
                return self._respond(reply, resolved)
            scope, run = resolved
            tool = _Tool({"name": tool_name, "description": "", "inputSchema": {}, "job": False}, None, scope, run, True)
        elif builtin:
            return self._respond(reply, self._builtin(reply, req, grant))
        if tool is None:
            return self._respond(reply, _failure("unknown_tool", f"no tool named {tool_name!r}"))
        if tool.schema:
            problems = validate(req["args"], tool.schema)
            if problems:
                return self._respond(reply, _failure("invalid_args", f"{tool_name}: " + "; ".join(problems)))
        key = f"{reply['peer']}:{req['rid'].hex()}"
        self._prune_answers()
        earlier = self._answers.get(key)
        if earlier is not None:
            # §7: a duplicate while the first run goes on waits for it; after, gets the same answer.
            answer = await asyncio.shield(earlier) if isinstance(earlier, asyncio.Future) else earlier
            return self._respond(reply, answer)
        if self._active >= self.max_concurrency:
            return self._respond(reply, _failure("busy", f"{self._active} tool runs in progress (max_concurrency {self.max_concurrency})"))
        if tool.info["job"]:
            self._prune_jobs()
        full = self._answer_budget.refusal(reply["peer"]) or (self._job_budget.refusal(reply["peer"]) if tool.info["job"] else None)
        if full:
            return self._respond(reply, _failure("busy", full))
        running = asyncio.get_running_loop().create_future()
        self._answers[key] = running
        self._answer_owner[key] = (reply["peer"], 0)
        self._answer_budget.add(reply["peer"], 1, 0)
        ctx = ToolContext(reply["peer"], self.name_of(reply["peer"]), req["rid"].hex(), reply["exp"], grant)
        if tool.info["job"]:
            job_id = wire.new_job_id(self.public_key)
            record = _JobRecord({"job_id": job_id, "status": "running"}, reply["peer"])
            self._jobs[job_id] = record
            self._job_budget.add(reply["peer"], 1, 0)
            accepted = {"st": "accepted", "result": {"job_id": job_id}}
            self._finish_answer(key, accepted, reply["exp"])
            self._respond(reply, accepted)
            ctx.job_id = job_id

            def progress(p: dict) -> None:
                if record.state["status"] == "running":
                    record.state["progress"] = p
                    self._push(reply, record.state)
            ctx._progress = progress
            record.task = asyncio.current_task()
            try:
                answer = await self._run(tool, req["args"], ctx)
            except asyncio.CancelledError:
                return  # cancelled by jobs/cancel (already pushed) or by close()
            end = {"status": "done", "result": answer.get("result")} if answer["st"] == "ok" else {"status": "error", "error": answer["error"]}
            # A poll answer carries the result two levels down: check it against that depth (§5.2).
            problem = _depth_problem(end.get("result"), wire.MAX_JOB_RESULT_DEPTH) if end["status"] == "done" else None
            if problem:
                end = {"status": "error", "error": {"code": "tool_failed", "message": f"result not sendable: {problem}"}}
            if self._end_job(record, end):
                self._push(reply, record.state)
            return
        # A plain call ends at its caller's deadline (§7 T7): the handler is cancelled then (its
        # CancelledError is the deadline signal), its slot is released, and nothing is sent (the
        # caller's own timer has ended the call); a retry of this rid finds the answer.
        try:
            answer = await asyncio.wait_for(self._run(tool, req["args"], ctx), max(0.001, (reply["exp"] - now_ms()) / 1000))
        except asyncio.TimeoutError:
            self._finish_answer(key, _failure("expired", f"{tool_name} was still running at the caller's deadline"), reply["exp"])
            return
        self._finish_answer(key, answer, reply["exp"])
        self._respond(reply, answer)

    def _finish_answer(self, key: str, answer: dict, deadline_ms: float) -> None:
        earlier = self._answers.get(key)
        if isinstance(earlier, asyncio.Future) and not earlier.done():
            earlier.set_result(answer)
        self._answers[key] = answer
        # Kept while a copy of the request can still be accepted (PROTOCOL §8.3, T13): its exp +
        # the 60 s window. `deadline_ms` is exp read on this clock (offset within ±60 s), so 120 s
        # past the later of now and the deadline covers it.
        keep = 120 + max(0.0, (deadline_ms - now_ms()) / 1000)
        # In finish order, pruned from the front: an answer kept much longer than the usual span
        # there held back everyone's behind it (one request with exp = 2^53 - 1 from any admitted
        # caller: for the life of the process). Those are forgotten by their own time, from a heap.
        if keep > ANSWER_USUAL_KEEP_S:
            heapq.heappush(self._answer_far, (time.monotonic() + keep, key))
        else:
            self._answer_times[key] = time.monotonic() + keep
        owner, counted = self._answer_owner.get(key, (None, 0))
        if owner is not None and counted == 0:
            nbytes = _encoded_size(answer) + ANSWER_OVERHEAD_BYTES
            self._answer_owner[key] = (owner, nbytes)
            self._answer_budget.add(owner, 0, nbytes)

    def _prune_answers(self) -> None:
        now = time.monotonic()
        times = self._answer_times
        while times:
            k = next(iter(times))
            if times[k] > now:
                break
            times.popitem(last=False)
            self._forget_answer(k)
        far = self._answer_far
        while far and far[0][0] <= now:
            self._forget_answer(heapq.heappop(far)[1])

    def _forget_answer(self, k: str) -> None:
        self._answers.pop(k, None)
        owner, nbytes = self._answer_owner.pop(k, (None, 0))
        if owner is not None:
            self._answer_budget.add(owner, -1, -nbytes)

    async def _run(self, tool: _Tool, args: Any, ctx: ToolContext) -> dict:
        self._active += 1
        try:
            result = tool.handler(args, ctx) if tool.wants_ctx else tool.handler(args)
            if inspect.isawaitable(result):
                result = await result
            return {"st": "ok", "result": result}
        except asyncio.CancelledError:
            raise
        except ZmcpError as err:
            return _failure(err.code if err.code in WIRE_CODES else "tool_failed", err.message)
        except Exception as err:  # noqa: BLE001 - a handler's failure is the caller's answer
            return _failure("tool_failed", str(err) or type(err).__name__)
        finally:
            self._active -= 1

    def _prune_jobs(self) -> None:
        now = time.monotonic()
        for k in [k for k, r in self._jobs.items() if r.forget_at <= now]:
            record = self._jobs.pop(k)
            self._job_budget.add(record.owner, -1, -record.nbytes)

    def _job_get(self, job_id: str, caller: str) -> _JobRecord:
        record = self._jobs.get(job_id)
        if record is None or record.forget_at <= time.monotonic():
            raise error_for("unknown_job", f"no job {job_id} (unknown, or forgotten after its TTL)")
        if record.owner != caller:
            raise error_for("forbidden", "only the caller that started a job may poll or cancel it")
        return record

    def _end_job(self, record: _JobRecord, end: dict) -> bool:
        if record.state["status"] != "running":
            return False
        record.state.update(end)
        record.forget_at = time.monotonic() + self.job_ttl
        record.nbytes = _encoded_size(end)
        self._job_budget.add(record.owner, 0, record.nbytes)
        return True

    def _builtin(self, reply: dict, req: dict, grant: VerifiedToken | None) -> dict:
        if req["tool"] == BUILTIN_LIST:
            tools = [t.info for t in self._tools.values() if grant is None or scope_covers(grant.scopes, t.scope)]
            return {"st": "ok", "result": {"tools": tools}}
        args = req["args"]
        if not isinstance(args, dict) or set(args) != {"job_id"} or not isinstance(args["job_id"], str) or len(args["job_id"]) > 128:
            return _failure("invalid_args", f"{req['tool']}: arguments must be {{job_id: string}}")
        self._prune_jobs()
        try:
            record = self._job_get(args["job_id"], reply["peer"])
        except ZmcpError as err:
            return _failure(err.code, err.message)
        if req["tool"] == BUILTIN_CANCEL and record.state["status"] == "running":
            self._end_job(record, {"status": "cancelled", "error": {"code": "cancelled", "message": "cancelled by its caller"}})
            self._push(reply, record.state)
            if record.task and not record.task.done():
                record.task.cancel()
        return {"st": "ok", "result": dict(record.state)}

    def _respond(self, reply: dict, answer: dict) -> None:
        if self._closed:
            return
        header = {"v": wire.PROTOCOL_VERSION, "k": "res", "id": os.urandom(16), "to": reply["peer"],
                  "exp": max(reply["exp"], now_ms() + 1000), "re": reply["id"]}
        if reply["as"]:
            header["as"] = reply["as"]
        if reply.get("dur"):
            header["dur"] = True  # the answer to a durable request waits for an offline caller too
        draft = {"t": "res", "ts": now_ms(), "st": answer["st"]}
        if "result" in answer:
            draft["result"] = answer["result"]
        if "error" in answer:
            draft["error"] = answer["error"]
        try:
            frames = self._seal(reply["sealer"], reply["peer"], header, draft)
        except ZmcpError as err:
            code = "too_large" if err.code == "too_large" else "tool_failed"
            frames = self._seal(reply["sealer"], reply["peer"], header,
                                {"t": "res", "ts": now_ms(), "st": "error", "error": {"code": code, "message": f"result not sendable: {err.message}"}})
        self._spawn(self._send(frames))

    def _push(self, reply: dict, state: dict) -> None:
        if self._closed:
            return
        header = {"v": wire.PROTOCOL_VERSION, "k": "evt", "id": os.urandom(16), "to": reply["peer"], "exp": now_ms() + 60_000}
        if reply["as"]:
            header["as"] = reply["as"]
        if reply.get("dur"):
            header["dur"] = True
        draft = {"t": "evt", "ts": now_ms(), "job": state["job_id"], "st": state["status"]}
        for k in ("progress", "result", "error"):
            if k in state:
                draft[k] = state[k]
        try:
            frames = self._seal(reply["sealer"], reply["peer"], header, draft)
        except ZmcpError as err:
            frames = self._seal(reply["sealer"], reply["peer"], header, {"t": "evt", "ts": draft["ts"], "job": draft["job"], "st": "error",
                                                                          "error": {"code": "tool_failed", "message": f"result not sendable: {err.message}"}})
        self._spawn(self._send(frames))


def _failure(code: str, message: str) -> dict:
    return {"st": "error", "error": {"code": code, "message": message[:4096]}}
