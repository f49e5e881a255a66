"""Runs the Python unit tests and prints one JSON object {test id: {"status", "detail"}}, so
that test/integration/python-interop.test.ts can report each Python test as a test of its own.

    /usr/bin/python3 python/tests/run_json.py            (from anywhere)
    /usr/bin/python3 python/tests/run_json.py --list     (ids only)
"""
import io
import json
import os
import sys
import unittest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def tests(suite):
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from tests(item)
        else:
            yield item


def main() -> None:
    sys.path.insert(0, ROOT)
    suite = unittest.defaultTestLoader.discover(os.path.join(ROOT, "tests"), top_level_dir=ROOT)
    cases = list(tests(suite))
    if "--list" in sys.argv:
        print(json.dumps([c.id() for c in cases]))
        return
    out = {}
    for case in cases:
        result = unittest.TestResult()
        case.run(result)
        problems = result.failures + result.errors
        if problems:
            out[case.id()] = {"status": "fail", "detail": "\n".join(text for _, text in problems)}
        elif result.skipped:
            out[case.id()] = {"status": "skip", "detail": result.skipped[0][1]}
        else:
            out[case.id()] = {"status": "ok", "detail": ""}
    sys.stdout = io.TextIOWrapper(sys.__stdout__.buffer, encoding="utf-8")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
