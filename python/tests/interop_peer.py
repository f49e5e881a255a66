"""Interop peer for test/integration/python-interop.test.ts (not a unittest module).

    interop_peer.py serve  BROKER CERT CERTS [--service NAME] [--authority JWK] [--heartbeat S]
                           [--answer-bytes-per-caller N] [--max-concurrency N] [--extra-tools]
        offers py_add, py_job, py_whoami, py_fail (and svc_echo on svc:NAME), prints a
        JSON line {"msg": "ready", "key": ...} and runs until stdin closes, or until a broker
        notice closes the agent: then it prints {"msg": "closed", "code", "class", "after"}
        ("after": the class a call raises once closed) and exits.
    interop_peer.py client BROKER CERT CERTS TARGET [--service NAME] [--token TOKEN]
        exercises TARGET (a TS agent with the reference tools) and prints one JSON summary.
"""
from __future__ import annotations

import asyncio
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import zmcp  # noqa: E402


def option(name: str) -> str | None:
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else None


async def serve(broker: str, cert: str, certs: str) -> None:
    heartbeat = option("--heartbeat")
    extra: dict = {} if heartbeat is None else {"heartbeat_interval": float(heartbeat)}
    if option("--max-concurrency"):
        extra["max_concurrency"] = int(option("--max-concurrency"))
    if option("--answer-bytes-per-caller"):
        extra["answer_limits"] = {"max_bytes_per_owner": int(option("--answer-bytes-per-caller"))}
    agent = await zmcp.Agent.connect(broker=broker, cert=cert, certs=certs, timeout=5, authority=option("--authority"), **extra)

    @agent.tool("py_add", schema={"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                                  "required": ["a", "b"], "additionalProperties": False}, description="a + b, in Python")
    def py_add(args):
        return {"sum": args["a"] + args["b"], "by": "python"}

    @agent.tool("py_job", schema={"type": "object", "properties": {"steps": {"type": "integer", "minimum": 1}}, "required": ["steps"]}, job=True)
    async def py_job(args, ctx: zmcp.ToolContext):
        for i in range(1, args["steps"] + 1):
            await asyncio.sleep(0.2)
            ctx.progress(i, args["steps"], f"step {i}")
        return {"steps": args["steps"], "job_id": ctx.job_id}

    agent.tool("py_whoami", lambda args, ctx: {"key": agent.public_key, "caller": ctx.sender, "caller_name": ctx.sender_name,
                                                "token_sub": ctx.token.sub if ctx.token else None})

    runs = {"count": 0}

    async def py_slow_count(args):
        runs["count"] += 1
        seen = runs["count"]
        await asyncio.sleep(0.3)
        return {"runs": seen}
    agent.tool("py_slow_count", py_slow_count)

    def py_fail(args):
        raise ValueError("python handler failed on purpose")
    agent.tool("py_fail", py_fail)
    agent.tool("svc_job", py_job, schema={"type": "object", "required": ["steps"]}, job=True)
    agent.tool("svc_echo", lambda args: {"replica": "python", "key": agent.public_key, "echo": args})
    if "--extra-tools" in sys.argv:  # for python-trust.test.ts
        agent.tool("py_blob", lambda args: {"blob": "x" * int(args.get("size", 0))})

        def py_unsendable(args):
            deep: object = 1
            for _ in range(40):
                deep = [deep]
            return {"deep": deep}
        agent.tool("py_unsendable", py_unsendable)

        async def py_hang(args):
            await asyncio.sleep(3600)
        agent.tool("py_hang", py_hang)

        @agent.tool("py_bad_progress", job=True)
        async def py_bad_progress(args, ctx: zmcp.ToolContext):
            try:
                ctx.progress(float("nan"))
            except TypeError as err:
                return {"refused": type(err).__name__, "message": str(err)}
            return {"refused": None}
    service = option("--service")
    if service:
        await agent.serve(service)
    print(json.dumps({"msg": "ready", "key": agent.public_key}), flush=True)
    stdin = asyncio.ensure_future(asyncio.get_running_loop().run_in_executor(None, sys.stdin.read))
    await asyncio.wait([stdin, agent.closed], return_when=asyncio.FIRST_COMPLETED)
    if agent.closed.done() and agent.closed.result() is not None:
        err = agent.closed.result()
        try:
            await agent.call("py_add", "py_add", {"a": 1, "b": 1})
            after = None
        except zmcp.ZmcpError as e:
            after = type(e).__name__
        print(json.dumps({"msg": "closed", "code": err.code, "class": type(err).__name__, "origin": err.origin, "after": after}), flush=True)
        os._exit(0)  # stdin's reader thread would keep the process
    await agent.close()


async def outcome(coro):
    try:
        return {"ok": await coro}
    except zmcp.ZmcpError as err:
        return {"error": err.code, "class": type(err).__name__, "origin": err.origin}


async def client(broker: str, cert: str, certs: str, target: str) -> dict:
    token = option("--token")
    out: dict = {}
    async with await zmcp.Agent.connect(broker=broker, cert=cert, certs=certs, timeout=5, token=token, job_poll_interval=0.3) as agent:
        out["sum"] = await outcome(agent.call(target, "batch_sum", {"numbers": [1, 2, 3.5]}))
        out["invalid"] = await outcome(agent.call(target, "batch_sum", {"numbers": []}))
        out["unknown"] = await outcome(agent.call(target, "nope"))
        out["tools"] = [t["name"] for t in await agent.list_tools(target)]
        job = await agent.start(target, "start_long_task", {"seconds": 2, "payload": {"from": "python"}})
        progress: list = []
        job.on_progress(lambda p: progress.append(p["progress"]))
        out["job"] = {"result": await job.result(10), "progress": progress, "runner_is_target": job.runner == agent.resolve(target)}
        out["job_via_call"] = await outcome(agent.call(target, "start_long_task", {"seconds": 1, "payload": {"k": 1}}, timeout=10))
        doomed = await agent.start(target, "start_long_task", {"seconds": 10})
        await asyncio.sleep(0.3)
        state = await doomed.cancel()
        out["cancel"] = {"state": state["status"], "result": await outcome(doomed.result(5))}
        polled = await agent.start(target, "start_long_task", {"seconds": 1})
        await asyncio.sleep(1.5)
        out["poll"] = (await agent.poll(target, polled.id))["status"]
        service = option("--service")
        if service:
            replicas = set()
            for _ in range(40):
                r = await agent.call(f"svc:{service}", "svc_echo", {"n": 1})
                replicas.add(r["replica"])
                if len(replicas) == 2:
                    break
            out["service_replicas"] = sorted(replicas)
            sjob = await agent.start(f"svc:{service}", "svc_job", {"steps": 2})
            out["service_job"] = {"result": await sjob.result(10), "runner_known": sjob.runner is not None}
    return out


def main() -> None:
    mode, broker, cert, certs = sys.argv[1:5]
    if mode == "serve":
        asyncio.run(serve(broker, cert, certs))
    else:
        print(json.dumps(asyncio.run(client(broker, cert, certs, sys.argv[5]))), flush=True)


if __name__ == "__main__":
    main()
