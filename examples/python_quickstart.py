"""The README's Python quick start (test/integration/python-interop.test.ts runs it against a live mesh).

    /usr/bin/python3 examples/python_quickstart.py --broker tcp://127.0.0.1:5555 \
        --cert certs/alice.key_secret --certs certs --to bob
"""
import argparse
import asyncio
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))

import zmcp  # noqa: E402


async def main(broker: str, cert: str, certs: str, to: str) -> None:
    async with await zmcp.Agent.connect(broker=broker, cert=cert, certs=certs) as agent:
        # Serve a tool of our own (arguments checked against a JSON Schema) ...
        agent.tool("greet", lambda args: {"hello": args["name"]},
                   schema={"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]})
        # ... and call the TypeScript agent's tools.
        print("tools:", [t["name"] for t in await agent.list_tools(to)])
        result = await agent.call(to, "batch_sum", {"numbers": [1, 2, 3.5]}, timeout=5)
        print("batch_sum →", json.dumps(result))
        try:
            await agent.call(to, "batch_sum", {"numbers": []})
        except zmcp.InvalidArgsError as err:
            print("refused:", err.code, "-", err)
        job = await agent.start(to, "start_long_task", {"seconds": 1, "payload": {"from": "python"}})
        job.on_progress(lambda p: print("progress", p))
        print("job result →", json.dumps(await job.result()))


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--broker", default="tcp://127.0.0.1:5555")
    p.add_argument("--cert", default="certs/alice.key_secret")
    p.add_argument("--certs", default="certs")
    p.add_argument("--to", default="bob")
    a = p.parse_args()
    asyncio.run(main(a.broker, a.cert, a.certs, a.to))
