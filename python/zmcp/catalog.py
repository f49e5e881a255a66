"""The resource and prompt built-ins (docs/PROTOCOL.md §9.1): ``resources/list``,
``resources/templates/list``, ``resources/read``, ``prompts/list``, ``prompts/get`` and
``completion/complete``.

The caller's side (:class:`CatalogCaller`, mixed into :class:`zmcp.Agent`) makes ordinary
calls of those built-ins (retries, tokens, deadlines as for any call), follows listing pages
and checks the answers' shapes as the TypeScript caller does (src/agent/resources.ts), so that
a malformed answer is a ``BadFrameError`` here rather than a ``KeyError`` in the caller's code.
The callee's side is :class:`CatalogRegistry` (fixed URIs and prompts, no templates).
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

from .errors import error_for
from .tokens import check_scope_token

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

    async def _catalog_call(self, to: str, tool: str, args: dict, timeout: float | None) -> Any:
        answer = await self._request(to, tool, args, timeout)  # type: ignore[attr-defined]
        result = answer.get("result")
        if not isinstance(result, dict):
            raise _bad(tool, "not an object")
        return result

    async def _list_all(self, to: str, tool: str, key: str, timeout: float | None) -> list[dict]:
        out: list[dict] = []
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            result = await self._catalog_call(to, tool, {} if cursor is None else {"cursor": cursor}, timeout)
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
        result = await self._catalog_call(to, READ, {"uri": uri}, timeout)
        for c in _dicts(READ, result.get("contents"), "contents"):
            if not isinstance(c.get("uri"), str) or not (isinstance(c.get("text"), str) or isinstance(c.get("blob"), str)):
                raise _bad(READ, "a content without uri and text or blob")
        return result

    async def list_prompts(self, to: str, *, timeout: float | None = None) -> list[dict]:
        """Every prompt (``{"name", "description"?, "arguments"?}``), all pages."""
        return await self._list_all(to, PROMPTS, "prompts", timeout)

    async def get_prompt(self, to: str, name: str, arguments: dict[str, str] | None = None, *, timeout: float | None = None) -> dict:
        """``{"description"?, "messages": [{"role", "content"}]}``; needs ``prompt:<name>``."""
        result = await self._catalog_call(to, GET_PROMPT, {"name": name, "arguments": dict(arguments or {})}, timeout)
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
        result = await self._catalog_call(to, COMPLETE, args, timeout)
        completion = result.get("completion")
        if not isinstance(completion, dict) or not isinstance(completion.get("values"), list) \
                or not all(isinstance(v, str) for v in completion["values"]):
            raise _bad(COMPLETE, "completion.values is not a list of strings")
        return completion


# ---- the callee's side: resources and prompts this agent offers ---------------------------

PAGE_SIZE = 100
MAX_URI_CHARS, MAX_NAME_CHARS = 4096, 256


def read_scope(uri: str) -> str:
    return f"read:{uri}"


def prompt_scope(name: str) -> str:
    return f"prompt:{name}"


def _config(message: str) -> Exception:
    return error_for("config", message)


def _refused(code: str, message: str) -> dict:
    return {"st": "error", "error": {"code": code, "message": message}}


def _wants_ctx(fn: Callable) -> bool:
    params = [p for p in inspect.signature(fn).parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(params) >= 2


def _is_str_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


async def _call(fn: Callable, first: Any, ctx: Any, wants_ctx: bool) -> Any:
    result = fn(first, ctx) if wants_ctx else fn(first)
    return await result if inspect.isawaitable(result) else result


class CatalogRegistry:
    """Resources (by URI) and prompts a Python agent offers, served by the built-ins of §9.1 as
    the TypeScript agent serves them (src/agent/resources.ts): the same shapes, pages of 100,
    per-item scopes (``read:<uri>``, ``prompt:<name>``) checked before the item is looked up,
    listings filtered by the token. A read, get or completion is returned to the agent as a run
    (scope, handler) that goes through the ordinary tool path (idempotency, concurrency,
    deadline). Resource templates (``{var}`` URIs) are not offered by the Python agent."""

    def __init__(self) -> None:
        self._resources: dict[str, dict] = {}
        self._prompts: dict[str, dict] = {}

    def add_resource(self, uri: str, reader: Callable, *, name: str | None = None, title: str | None = None,
                     description: str | None = None, mime_type: str | None = None, size: int | None = None,
                     annotations: dict | None = None, scope: str | None = None) -> None:
        if not isinstance(uri, str) or not 1 <= len(uri) <= MAX_URI_CHARS:
            raise _config(f"resource URI must be 1 to {MAX_URI_CHARS} characters")
        if "{" in uri:
            raise _config("resource templates are not offered by the Python agent (only fixed URIs)")
        if not callable(reader):
            raise _config("a resource needs a reader function")
        if uri in self._resources:
            raise _config(f"resource {uri!r} is already registered")
        if scope is not None:
            check_scope_token(scope)
        info: dict = {"uri": uri, "name": (name or uri)[:MAX_NAME_CHARS]}
        for key, value in (("title", title), ("description", description), ("mimeType", mime_type), ("size", size), ("annotations", annotations)):
            if value is not None:
                info[key] = value
        self._resources[uri] = {"info": info, "scope": scope or read_scope(uri), "reader": reader, "ctx": _wants_ctx(reader)}

    def remove_resource(self, uri: str) -> bool:
        return self._resources.pop(uri, None) is not None

    def add_prompt(self, name: str, getter: Callable, *, title: str | None = None, description: str | None = None,
                   arguments: list[dict] | None = None, scope: str | None = None, complete: Callable | None = None) -> None:
        if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME_CHARS:
            raise _config(f"prompt name must be 1 to {MAX_NAME_CHARS} characters")
        if not callable(getter):
            raise _config("a prompt needs a getter function")
        if name in self._prompts:
            raise _config(f"prompt {name!r} is already registered")
        scope = scope or prompt_scope(name)
        check_scope_token(scope)
        info: dict = {"name": name}
        for key, value in (("title", title), ("description", description)):
            if value is not None:
                info[key] = value
        if arguments is not None:
            if not isinstance(arguments, list) or not all(isinstance(a, dict) and isinstance(a.get("name"), str) for a in arguments):
                raise _config("prompt arguments must be a list of {name, description?, required?}")
            info["arguments"] = [dict(a) for a in arguments]
        self._prompts[name] = {"info": info, "scope": scope, "getter": getter, "ctx": _wants_ctx(getter), "complete": complete}

    def remove_prompt(self, name: str) -> bool:
        return self._prompts.pop(name, None) is not None

    def resolve(self, tool: str, args: Any, covers: Callable[[str], bool]) -> dict | tuple[str, Callable]:
        """An answer (a listing, or a refusal), or ``(scope, handler(args, ctx))`` to run as a tool."""
        if tool in (RESOURCES, TEMPLATES, PROMPTS):
            if not isinstance(args, dict) or set(args) - {"cursor"} or not isinstance(args.get("cursor", ""), str) or len(args.get("cursor", "")) > 64:
                return _refused("invalid_args", f"{tool}: arguments must be {{cursor?: string}}")
            if tool == RESOURCES:
                key, items = "resources", [r["info"] for r in self._resources.values() if covers(r["scope"])]
            elif tool == TEMPLATES:
                key, items = "resourceTemplates", []
            else:
                key, items = "prompts", [p["info"] for p in self._prompts.values() if covers(p["scope"])]
            cursor = args.get("cursor")
            start = 0 if cursor is None else (int(cursor) if cursor.isdigit() else -1)
            if not 0 <= start <= len(items):
                return _refused("invalid_args", f"{tool}: invalid cursor (list again from the start)")
            end = min(len(items), start + PAGE_SIZE)
            result: dict = {key: items[start:end]}
            if end < len(items):
                result["nextCursor"] = str(end)
            return {"st": "ok", "result": result}
        if tool == READ:
            if not isinstance(args, dict) or set(args) != {"uri"} or not isinstance(args["uri"], str) or not 1 <= len(args["uri"]) <= MAX_URI_CHARS:
                return _refused("invalid_args", f"{READ}: arguments must be exactly {{uri: string}}")
            uri = args["uri"]
            found = self._resources.get(uri)
            scope = found["scope"] if found else read_scope(uri)
            # The scope first: a caller learns nothing of what it may not read.
            if not covers(scope):
                return _refused("token_scope", f"token scope does not cover {scope!r}")
            if not found:
                return _refused("unknown_tool", f"no resource {uri!r}")
            return scope, self._reader_run(uri, found)
        if tool == GET_PROMPT:
            if not isinstance(args, dict) or set(args) - {"name", "arguments"} or not isinstance(args.get("name"), str) \
                    or not 1 <= len(args["name"]) <= MAX_NAME_CHARS or not _is_str_map(args.get("arguments", {})):
                return _refused("invalid_args", f"{GET_PROMPT}: arguments must be {{name: string, arguments?: {{string: string}}}}")
            name, given = args["name"], dict(args.get("arguments") or {})
            prompt = self._prompts.get(name)
            scope = prompt["scope"] if prompt else prompt_scope(name)
            if not covers(scope):
                return _refused("token_scope", f"token scope does not cover {scope!r}")
            if not prompt:
                return _refused("unknown_tool", f"no prompt {name!r}")
            missing = [a["name"] for a in prompt["info"].get("arguments", []) if a.get("required") and a["name"] not in given]
            if missing:
                return _refused("invalid_args", f"{name}: missing required argument(s) {', '.join(missing)}")
            return scope, self._getter_run(prompt, given)
        if tool == COMPLETE:
            return self._complete(args, covers)
        raise ValueError(f"not a catalog built-in: {tool}")

    def _complete(self, args: Any, covers: Callable[[str], bool]) -> dict | tuple[str, Callable]:
        ref = args.get("ref") if isinstance(args, dict) else None
        argument = args.get("argument") if isinstance(args, dict) else None
        context = args.get("context", {}) if isinstance(args, dict) else None
        ok = isinstance(args, dict) and not set(args) - {"ref", "argument", "context"} and isinstance(ref, dict) \
            and ((ref.get("type") == "ref/prompt" and isinstance(ref.get("name"), str) and 1 <= len(ref["name"]) <= MAX_NAME_CHARS)
                 or (ref.get("type") == "ref/resource" and isinstance(ref.get("uri"), str) and 1 <= len(ref["uri"]) <= MAX_URI_CHARS)) \
            and isinstance(argument, dict) and isinstance(argument.get("name"), str) and isinstance(argument.get("value"), str) \
            and isinstance(context, dict) and not set(context) - {"arguments"} and _is_str_map(context.get("arguments", {}))
        if not ok:
            return _refused("invalid_args", f"{COMPLETE}: arguments must be {{ref, argument: {{name, value}}, context?: {{arguments?}}}}")
        if ref["type"] == "ref/resource":
            scope = read_scope(ref["uri"])
            if not covers(scope):
                return _refused("token_scope", f"token scope does not cover {scope!r}")
            return _refused("unknown_tool", f"no resource template {ref['uri']!r}")
        prompt = self._prompts.get(ref["name"])
        scope = prompt["scope"] if prompt else prompt_scope(ref["name"])
        if not covers(scope):
            return _refused("token_scope", f"token scope does not cover {scope!r}")
        if not prompt:
            return _refused("unknown_tool", f"no prompt {ref['name']!r}")
        if prompt["complete"] is None:
            return {"st": "ok", "result": {"completion": {"values": []}}}
        complete, chosen = prompt["complete"], dict(context.get("arguments") or {})

        async def run(_args: Any, ctx: Any) -> dict:
            out = complete({"name": argument["name"], "value": argument["value"]}, chosen)
            out = await out if inspect.isawaitable(out) else out
            listed = {"values": out} if isinstance(out, list) else out
            if not isinstance(listed, dict) or not isinstance(listed.get("values"), list) or not all(isinstance(v, str) for v in listed["values"]):
                raise error_for("tool_failed", f"completion of {ref['name']!r} is not a list of strings")
            if len(listed["values"]) > 100:
                listed = {**listed, "values": listed["values"][:100], "hasMore": True, "total": listed.get("total", len(listed["values"]))}
            return {"completion": listed}
        return scope, run

    @staticmethod
    def _reader_run(uri: str, found: dict) -> Callable:
        async def run(_args: Any, ctx: Any) -> dict:
            out = await _call(found["reader"], uri, ctx, found["ctx"])
            if isinstance(out, str):
                content: dict = {"uri": uri, "text": out}
                if "mimeType" in found["info"]:
                    content["mimeType"] = found["info"]["mimeType"]
                return {"contents": [content]}
            contents = out.get("contents") if isinstance(out, dict) else None
            if not isinstance(contents, list) or not all(isinstance(c, dict) and isinstance(c.get("uri"), str)
                                                        and (isinstance(c.get("text"), str) or isinstance(c.get("blob"), str)) for c in contents):
                raise error_for("tool_failed", f"reader of {uri!r} returned neither a string nor {{contents: [{{uri, text | blob}}]}}")
            return {"contents": contents}
        return run

    @staticmethod
    def _getter_run(prompt: dict, given: dict) -> Callable:
        async def run(_args: Any, ctx: Any) -> dict:
            out = await _call(prompt["getter"], given, ctx, prompt["ctx"])
            if isinstance(out, str):
                return {"messages": [{"role": "user", "content": {"type": "text", "text": out}}]}
            messages = out.get("messages") if isinstance(out, dict) else None
            if not isinstance(messages, list) or not all(isinstance(m, dict) and m.get("role") in ("user", "assistant")
                                                        and isinstance(m.get("content"), dict) and isinstance(m["content"].get("type"), str) for m in messages):
                raise error_for("tool_failed", f"prompt {prompt['info']['name']!r} returned neither a string nor {{messages: [{{role, content}}]}}")
            return out
        return run
