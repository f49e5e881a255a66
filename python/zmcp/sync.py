"""A small blocking wrapper for scripts: the asyncio agent runs on a loop in a background thread.

    with SyncAgent.connect(broker="tcp://127.0.0.1:5555", cert="certs/me.key_secret", certs="certs") as a:
        print(a.call("bob", "batch_sum", {"numbers": [1, 2]}))
"""
from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable

from .agent import Agent


class SyncAgent:
    def __init__(self, loop: asyncio.AbstractEventLoop, thread: threading.Thread, agent: Agent):
        self._loop, self._thread, self.agent = loop, thread, agent
        self.public_key = agent.public_key

    @classmethod
    def connect(cls, **options: Any) -> "SyncAgent":
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="zmcp-agent", daemon=True)
        thread.start()
        try:
            agent = asyncio.run_coroutine_threadsafe(Agent.connect(**options), loop).result()
        except BaseException:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            raise
        return cls(loop, thread, agent)

    def _run(self, coro) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def call(self, to: str, tool: str, args: Any = None, *, timeout: float | None = None) -> Any:
        return self._run(self.agent.call(to, tool, args, timeout=timeout))

    def list_tools(self, to: str, *, timeout: float | None = None) -> list:
        return self._run(self.agent.list_tools(to, timeout=timeout))

    # The resource and prompt built-ins' caller side (catalog.py), blocking.
    def list_resources(self, to: str, *, timeout: float | None = None) -> list:
        return self._run(self.agent.list_resources(to, timeout=timeout))

    def list_resource_templates(self, to: str, *, timeout: float | None = None) -> list:
        return self._run(self.agent.list_resource_templates(to, timeout=timeout))

    def read_resource(self, to: str, uri: str, *, timeout: float | None = None) -> dict:
        return self._run(self.agent.read_resource(to, uri, timeout=timeout))

    def list_prompts(self, to: str, *, timeout: float | None = None) -> list:
        return self._run(self.agent.list_prompts(to, timeout=timeout))

    def get_prompt(self, to: str, name: str, arguments: dict | None = None, *, timeout: float | None = None) -> dict:
        return self._run(self.agent.get_prompt(to, name, arguments, timeout=timeout))

    def complete(self, to: str, ref: dict, argument: dict, context: dict | None = None, *, timeout: float | None = None) -> dict:
        return self._run(self.agent.complete(to, ref, argument, context, timeout=timeout))

    def tool(self, name: str, handler: Callable | None = None, **options: Any):
        """Handlers run on the agent's loop thread."""
        return self.agent.tool(name, handler, **options)

    def serve(self, name: str, cert: str | None = None, *, timeout: float = 5.0) -> None:
        self._run(self.agent.serve(name, cert, timeout=timeout))

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._run(self.agent.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> "SyncAgent":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
