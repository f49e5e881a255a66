"""The caller side of the resource and prompt built-ins (zmcp/catalog.py) against scripted
answers: pages are followed within a bound, and an answer of the wrong shape is a
BadFrameError (the interop test test/integration/python-catalog.test.ts runs them against
a TypeScript agent)."""
import asyncio
import unittest

import zmcp
from zmcp.catalog import MAX_PAGES, CatalogCaller


class Scripted(CatalogCaller):
    """Answers each built-in call with the next scripted result and records the calls."""

    def __init__(self, results):
        self.results, self.calls = list(results), []

    async def _request(self, to, tool, args, timeout):
        self.calls.append((to, tool, args))
        result = self.results.pop(0) if self.results else self.results_forever
        return {"st": "ok", "result": result}


def run(coro):
    return asyncio.run(coro)


class CatalogCallerTests(unittest.TestCase):
    def test_listing_follows_cursors(self):
        peer = Scripted([{"resources": [{"uri": "a://1", "name": "1"}], "nextCursor": "1"},
                         {"resources": [{"uri": "a://2", "name": "2"}]}])
        self.assertEqual([r["uri"] for r in run(peer.list_resources("bob"))], ["a://1", "a://2"])
        self.assertEqual(peer.calls, [("bob", "resources/list", {}), ("bob", "resources/list", {"cursor": "1"})])

    def test_endless_cursors_are_cut(self):
        peer = Scripted([])
        peer.results_forever = {"prompts": [], "nextCursor": "again"}
        with self.assertRaises(zmcp.BadFrameError) as caught:
            run(peer.list_prompts("bob"))
        self.assertEqual(caught.exception.code, "bad_frame")
        self.assertEqual(len(peer.calls), MAX_PAGES)

    def test_wrong_shapes_are_bad_frames(self):
        cases = [
            ("list_resources", ("bob",), {"resources": "nope"}),
            ("list_resource_templates", ("bob",), {"resourceTemplates": [1]}),
            ("read_resource", ("bob", "a://1"), {"contents": [{"uri": "a://1"}]}),
            ("read_resource", ("bob", "a://1"), ["not", "an", "object"]),
            ("get_prompt", ("bob", "p"), {"messages": [{"role": "system", "content": {"type": "text", "text": "x"}}]}),
            ("complete", ("bob", {"type": "ref/prompt", "name": "p"}, {"name": "a", "value": ""}), {"completion": {"values": [1]}}),
            ("list_prompts", ("bob",), {"prompts": [], "nextCursor": 5}),
        ]
        for method, args, result in cases:
            with self.subTest(method=method, result=result):
                with self.assertRaises(zmcp.BadFrameError):
                    run(getattr(Scripted([result]), method)(*args))

    def test_requests_carry_the_mcp_shapes(self):
        peer = Scripted([{"messages": []}, {"completion": {"values": ["42"], "hasMore": False}}])
        run(peer.get_prompt("bob", "summarize", {"id": "7"}))
        self.assertEqual(run(peer.complete("bob", {"type": "ref/prompt", "name": "summarize"}, {"name": "id", "value": "4"}, {"x": "y"})),
                         {"values": ["42"], "hasMore": False})
        self.assertEqual(peer.calls[0], ("bob", "prompts/get", {"name": "summarize", "arguments": {"id": "7"}}))
        self.assertEqual(peer.calls[1][2], {"ref": {"type": "ref/prompt", "name": "summarize"}, "argument": {"name": "id", "value": "4"},
                                            "context": {"arguments": {"x": "y"}}})


if __name__ == "__main__":
    unittest.main()
