"""The caller's side of the resource and prompt built-ins (docs/PROTOCOL.md §9.1):
``resources/list``, ``resources/templates/list``, ``resources/read``, ``prompts/list``,
``prompts/get`` and ``completion/complete``, as plain methods of :class:`zmcp.Agent`.

They are ordinary calls of those built-in tools (retries, tokens, deadlines as for any call);
this module only follows listing pages and checks the answers' shapes, as the TypeScript
caller does (src/agent/resources.ts), so that a malformed answer is a ``BadFrameError`` here
rather than a ``KeyError`` in the caller's code. A Python agent does not offer these
built-ins itself (an agent without them answers ``unknown_tool``, which expose treats as
"offers none").
"""
from __future__ import annotations

from typing import Any

from .errors import error_for

RESOURCES, TEMPLATES, READ = "resources/list", "resources/templates/list", "resources/read"
PROMPTS, GET_PROMPT, COMPLETE = "prompts/list", "prompts/get", "completion/complete"
CATALOG_BUILTINS = (RESOURCES, TEMPLATES, READ, PROMPTS, GET_PROMPT, COMPLETE)

# Pages followed before giving up on a listing (a peer that hands out cursors forever).
MAX_PAGES = 100


def _bad(tool: str, why: str) -> Exception:
    return error_for("bad_frame", f"invalid {tool} answer: {why}")


def _dicts(tool: str, value: Any, key: str) -> list[dict]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise _bad(tool, f"{key} is not a list of objects")
    return value


class CatalogCaller:
    """Mixed into :class:`zmcp.Agent`; needs its ``_request(to, tool, args, timeout)``."""

    async def _catalog(self, to: str, tool: str, args: dict, timeout: float | None) -> Any:
        answer = await self._request(to, tool, args, timeout)  # type: ignore[attr-defined]
        result = answer.get("result")
        if not isinstance(result, dict):
            raise _bad(tool, "not an object")
        return result

    async def _list_all(self, to: str, tool: str, key: str, timeout: float | None) -> list[dict]:
        out: list[dict] = []
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            result = await self._catalog(to, tool, {} if cursor is None else {"cursor": cursor}, timeout)
            out.extend(_dicts(tool, result.get(key), key))
            cursor = result.get("nextCursor")
            if cursor is None:
                return out
            if not isinstance(cursor, str):
                raise _bad(tool, "nextCursor is not a string")
        raise error_for("bad_frame", f"{tool}: more than {MAX_PAGES} pages")

    async def list_resources(self, to: str, *, timeout: float | None = None) -> list[dict]:
        """Every resource ``to`` lists to this caller (``{"uri", "name", ...}``), all pages."""
        return await self._list_all(to, RESOURCES, "resources", timeout)

    async def list_resource_templates(self, to: str, *, timeout: float | None = None) -> list[dict]:
        """Every resource template (``{"uriTemplate", "name", ...}``), all pages."""
        return await self._list_all(to, TEMPLATES, "resourceTemplates", timeout)

    async def read_resource(self, to: str, uri: str, *, timeout: float | None = None) -> dict:
        """``{"contents": [{"uri", "mimeType"?, "text" | "blob"}]}``; needs the token scope ``read:<uri>``."""
        result = await self._catalog(to, READ, {"uri": uri}, timeout)
        for c in _dicts(READ, result.get("contents"), "contents"):
            if not isinstance(c.get("uri"), str) or not (isinstance(c.get("text"), str) or isinstance(c.get("blob"), str)):
                raise _bad(READ, "a content without uri and text or blob")
        return result

    async def list_prompts(self, to: str, *, timeout: float | None = None) -> list[dict]:
        """Every prompt (``{"name", "description"?, "arguments"?}``), all pages."""
        return await self._list_all(to, PROMPTS, "prompts", timeout)

    async def get_prompt(self, to: str, name: str, arguments: dict[str, str] | None = None, *, timeout: float | None = None) -> dict:
        """``{"description"?, "messages": [{"role", "content"}]}``; needs ``prompt:<name>``."""
        result = await self._catalog(to, GET_PROMPT, {"name": name, "arguments": dict(arguments or {})}, timeout)
        for m in _dicts(GET_PROMPT, result.get("messages"), "messages"):
            if m.get("role") not in ("user", "assistant") or not isinstance(m.get("content"), dict):
                raise _bad(GET_PROMPT, "a message without role and content")
        return result

    async def complete(self, to: str, ref: dict, argument: dict, context: dict[str, str] | None = None, *,
                       timeout: float | None = None) -> dict:
        """Completion of one argument of a prompt (``ref={"type": "ref/prompt", "name": ...}``) or of a
        resource template's variable (``{"type": "ref/resource", "uri": TEMPLATE}``); ``argument`` is
        ``{"name", "value"}``. Returns ``{"values": [...], "total"?, "hasMore"?}``."""
        args: dict = {"ref": ref, "argument": argument}
        if context:
            args["context"] = {"arguments": dict(context)}
        result = await self._catalog(to, COMPLETE, args, timeout)
        completion = result.get("completion")
        if not isinstance(completion, dict) or not isinstance(completion.get("values"), list) \
                or not all(isinstance(v, str) for v in completion["values"]):
            raise _bad(COMPLETE, "completion.values is not a list of strings")
        return completion
