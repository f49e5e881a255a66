/**
 * Names and service keys come from the operator (file names, the broker's `services` option),
 * never from certificate metadata, which whoever made the key pair writes.
 */
import { afterEach, describe, expect, it } from "vitest";
import { generateCertificate, loadCertDirectory, saveCertificate } from "../../src/auth/certs.js";
import { CertError, RemoteError } from "../../src/errors.js";
import { createLogger } from "../../src/support/log.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent, startBroker } from "../support/mesh.js";
import type { Broker } from "../../src/broker/broker.js";
import type { Agent } from "../../src/agent/agent.js";

let fx: CertFixture | undefined;
const open: Array<Broker | Agent> = [];
afterEach(async () => {
  for (const x of open.splice(0).reverse()) await x.close();
  fx?.cleanup();
  fx = undefined;
});

describe("names and service keys from the operator", () => {
  it("a certificate whose metadata claims a service or another's name, and sorts first, binds neither (reported)", () => {
    fx = tempCerts("bob");
    const pay = fx.addService("pay");
    // "aaa" sorts before both bob.key and svc-pay.key.
    const intruder = generateCertificate({ name: "bob", service: "pay" });
    saveCertificate(intruder, fx.dir, "aaa");
    const errors: CertError[] = [];
    const dir = loadCertDirectory(fx.dir, (err) => errors.push(err));
    expect(dir.services.get("pay")).toBe(pay.publicKey);
    expect(dir.byName.get("bob")).toBe(fx.key("bob"));
    expect(dir.byName.get("aaa")).toBe(intruder.publicKey);
    expect(errors.every((e) => e instanceof CertError && e.code === "cert")).toBe(true);
    expect(errors.map((e) => e.message).join("\n")).toMatch(/aaa\.key: metadata name = "bob" ignored/);
    expect(errors.map((e) => e.message).join("\n")).toMatch(/aaa\.key: metadata service = "pay" ignored/);
  });

  it("one key filed under two names is refused under both", () => {
    fx = tempCerts("alice");
    saveCertificate(fx.certs["alice"]!, fx.dir, "mallory");
    const errors: CertError[] = [];
    const dir = loadCertDirectory(fx.dir, (err) => errors.push(err));
    expect(dir.byName.has("alice")).toBe(false);
    expect(dir.byName.has("mallory")).toBe(false);
    expect(dir.byKey.has(fx.key("alice"))).toBe(false);
    expect(errors.some((e) => /also filed as alice/.test(e.message))).toBe(true);
  });

  it("the broker refuses an announcement of a service by a key whose metadata claims it", async () => {
    fx = tempCerts("alice", "mallory");
    fx.addService("pay");
    const fake = generateCertificate({ name: "aaa", service: "pay" });
    saveCertificate(fake, fx.dir, "aaa");
    const broker = await startBroker(fx);
    open.push(broker);
    const mallory = await connectAgent(fx, "mallory", broker.endpoint);
    open.push(mallory);
    const err = await mallory.serve("pay", { cert: fake, timeout: 3000 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(RemoteError);
    expect((err as RemoteError).code).toBe("forbidden");
    // The operator's svc-pay.key still serves.
    const honest = await connectAgent(fx, "alice", broker.endpoint);
    open.push(honest);
    await honest.serve("pay");
    expect(broker.services()["pay"]).toEqual([fx.key("alice")]);
  });

  it("a service bound to two keys by the operator's two sources is refused and logged", async () => {
    fx = tempCerts("alice");
    fx.addService("pay");
    const other = generateCertificate();
    const lines: string[] = [];
    const broker = await startBroker(fx, { services: { pay: other.publicKey }, log: createLogger("info", (l) => lines.push(l)) });
    open.push(broker);
    expect(lines.some((l) => /service refused: two keys claim it/.test(l) && l.includes('"service":"pay"'))).toBe(true);
    const alice = await connectAgent(fx, "alice", broker.endpoint);
    open.push(alice);
    for (const cert of [fx.certs["svc-pay"]!, other]) {
      const err = await alice.serve("pay", { cert, timeout: 3000 }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(RemoteError);
      expect((err as RemoteError).code).toBe("forbidden");
    }
  });
});
