"""The protocol v1 conformance vectors (test/vectors/*.json) against the Python package."""
import json
import os
import unittest

import msgpack

from zmcp import wire
from zmcp.errors import ZmcpError
from zmcp.tokens import TokenVerifier

VECTORS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "test", "vectors")


def load(name):
    with open(os.path.join(VECTORS, f"{name}.json"), encoding="utf-8") as f:
        return json.load(f)


def from_json(v):
    if isinstance(v, list):
        return [from_json(x) for x in v]
    if isinstance(v, dict):
        if list(v) == ["$bin"]:
            return bytes.fromhex(v["$bin"])
        return {k: from_json(x) for k, x in v.items()}
    return v


def code_of(fn):
    try:
        fn()
        return "ok"
    except ZmcpError as err:
        return err.code


class Vectors(unittest.TestCase):
    def test_keys_z85_shared(self):
        k = load("keys")
        import nacl.bindings as nb
        for pair in k["pairs"].values():
            self.assertEqual(wire.z85_encode(bytes.fromhex(pair["secretHex"])), pair["secret"])
            self.assertEqual(wire.z85_encode(nb.crypto_scalarmult_base(wire.z85_decode(pair["secret"]))), pair["public"])
        for v in k["z85"]:
            self.assertEqual(wire.z85_encode(bytes.fromhex(v["bytes"])), v["text"])
            self.assertEqual(wire.z85_decode(v["text"]).hex(), v["bytes"])
        alice, bob = k["pairs"]["alice"], k["pairs"]["bob"]
        self.assertEqual(wire.Sealer(alice["secret"]).shared(bob["public"]).hex(), k["shared_alice_bob"])
        self.assertEqual(wire.Sealer(bob["secret"]).shared(alice["public"]).hex(), k["shared_alice_bob"])

    def test_messages_exact_bytes(self):
        pairs = load("keys")["pairs"]
        for m in load("messages")["messages"]:
            with self.subTest(m["name"]):
                header = from_json(m["header"])
                self.assertEqual(wire.encode_header(header).hex(), m["header_bytes"])
                self.assertEqual(wire.decode_header(bytes.fromhex(m["header_bytes"])), header)
                if "body" not in m:
                    continue
                hb = bytes.fromhex(m["header_bytes"])
                self.assertEqual(wire.encode_inner(from_json(m["inner"]), hb).hex(), m["plaintext"])
                to_alice = header["to"] == pairs["alice"]["public"]
                recipient = pairs["alice"] if to_alice else pairs["bob"]
                sender = pairs["service_calc"] if "as" in header else (pairs["bob"] if to_alice else pairs["alice"])
                sealer = wire.Sealer(sender["secret"])
                # Our seal with the recorded nonce gives the recorded bytes exactly.
                sealed = wire.seal_with(sealer.shared(recipient["public"]), bytes.fromhex(m["plaintext"]), bytes.fromhex(m["nonce"]))
                self.assertEqual(sealed.hex(), m["body"])
                opened = wire.Sealer(recipient["secret"]).open(sender["public"], bytes.fromhex(m["body"]))
                self.assertEqual(wire.decode_inner(opened, hb)["t"], header["k"])

    def test_services(self):
        pairs = load("keys")["pairs"]
        s = load("services")
        p = s["proof"]
        key = wire.Sealer(pairs["service_calc"]["secret"]).shared(pairs["broker"]["public"])
        self.assertEqual(key.hex(), p["shared_key"])
        self.assertEqual(wire.proof_plaintext(p["replica"], p["ts"]).decode(), p["plaintext"])
        self.assertEqual(wire.make_service_proof(key, p["replica"], p["ts"], bytes.fromhex(p["nonce"])).hex(), p["proof"])
        self.assertTrue(wire.verify_service_proof(key, bytes.fromhex(p["proof"]), p["replica"], p["ts"], p["ts"]))
        self.assertFalse(wire.verify_service_proof(key, bytes.fromhex(p["proof"]), pairs["alice"]["public"], p["ts"], p["ts"]))
        self.assertFalse(wire.verify_service_proof(key, bytes.fromhex(p["proof"]), p["replica"], p["ts"], p["ts"] + 30_001))
        hb = s["heartbeat"]
        self.assertEqual(wire.encode_header(from_json(hb["header"])).hex(), hb["header_bytes"])
        body = msgpack.unpackb(bytes.fromhex(hb["body"]), raw=False)
        svc = body["svc"][0]
        self.assertEqual(wire.pack({"svc": [{"name": svc["name"], "key": svc["key"], "ts": svc["ts"], "proof": bytes.fromhex(p["proof"]), "free": svc["free"]}]}).hex(), hb["body"])
        self.assertNotIn("dur", svc)
        durable = msgpack.unpackb(bytes.fromhex(s["heartbeat_durable"]["body"]), raw=False)["svc"][0]
        self.assertIs(durable["dur"], True)
        self.assertEqual(wire.pack({"svc": [{"name": svc["name"], "key": svc["key"], "ts": svc["ts"], "proof": bytes.fromhex(p["proof"]), "free": svc["free"], "dur": True}]}).hex(), s["heartbeat_durable"]["body"])
        for a in s["addresses"]:
            parsed = wire.parse_service_address(a["to"])
            self.assertEqual(parsed or (None, None), (a["name"], a["replica"]), a["to"])

    def test_job_ids(self):
        for c in load("jobs")["cases"]:
            self.assertEqual(wire.job_runner(c["job_id"]), c["runner"], c["job_id"])

    def test_tokens(self):
        t = load("tokens")
        shared = TokenVerifier(t["authority"], t["audience"], t["clock_skew_ms"])
        for c in t["cases"]:
            for verifier in (shared, TokenVerifier(t["authority"], t["audience"], t["clock_skew_ms"])):
                with self.subTest(c["name"]):
                    self.assertEqual(code_of(lambda: verifier.authorize(c["token"], c["from"], c["scope"], c["now"])), c["expect"])

    def test_refusals(self):
        r = load("refusals")
        hb = bytes.fromhex(r["header_bytes"])
        for c in r["header"]:
            with self.subTest(c["name"]):
                self.assertEqual(code_of(lambda: wire.decode_header(bytes.fromhex(c["bytes"]))), c["expect"])
        for c in r["inner"]:
            with self.subTest(c["name"]):
                self.assertEqual(code_of(lambda: wire.decode_inner(bytes.fromhex(c["plaintext"]), hb)), c["expect"])
        for c in r["sealed"]:
            with self.subTest(c["name"]):
                self.assertEqual(code_of(lambda: wire.open_with(bytes.fromhex(r["shared_key"]), bytes.fromhex(c["body"]))), c["expect"])


if __name__ == "__main__":
    unittest.main()
