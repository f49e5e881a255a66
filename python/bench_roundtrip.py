"""Python side of the round-trip benchmark (bench/python-roundtrip.ts drives it):
connects, then for each line "N" on stdin makes N sequential batch_sum calls to TARGET and
prints one JSON line with their round-trip times in microseconds.

    /usr/bin/python3 python/bench_roundtrip.py BROKER CERT CERTS TARGET
Run the whole comparison with:  npm run roundtrip:python -- [--calls 2000] [--blocks 10]
"""
import asyncio
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import zmcp  # noqa: E402


async def main(broker: str, cert: str, certs: str, target: str) -> None:
    args = {"numbers": [1, 2, 3, 4, 5, 6, 7, 8]}
    loop = asyncio.get_running_loop()
    async with await zmcp.Agent.connect(broker=broker, cert=cert, certs=certs) as agent:
        print(json.dumps({"msg": "ready"}), flush=True)
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line.strip():
                return
            samples = []
            for _ in range(int(line)):
                t0 = time.perf_counter_ns()
                await agent.call(target, "batch_sum", args)
                samples.append((time.perf_counter_ns() - t0) / 1000)
            print(json.dumps({"samples": samples}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
