/**
 * Circuit breakers (issue 16): a destination that keeps failing is opened after a run of
 * failures; calls to it then fail at once with `circuit_open` (nothing sent); a probe closes it
 * when the peer is back; the state is in the agent's metrics; `circuit: false` per call and per
 * agent. The peer is a real process, SIGKILLed and started again with the same key.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Agent } from "../../src/agent/agent.js";
import { CircuitOpenError } from "../../src/agent/circuit.js";
import { RemoteError, ZmcpError } from "../../src/errors.js";
import { metricSum, parsePrometheusText } from "../../src/support/metrics.js";
import { tempCerts, type CertFixture } from "../support/certs.js";
import { connectAgent } from "../support/mesh.js";
import { startBrokerProcess, startWorker, type BrokerProcess, type WorkerProcess } from "../support/process.js";
import { sleep, waitFor } from "../support/wait.js";

const OPEN_FOR = 800;

async function outcome(p: Promise<unknown>): Promise<unknown> {
  return p.then((v) => ({ ok: v }), (err: unknown) => err);
}

describe("circuit breakers with a peer that dies and comes back", () => {
  let fx: CertFixture;
  let broker: BrokerProcess;
  let bob: WorkerProcess | undefined;
  let alice: Agent;
  let plain: Agent;
  const noRoutes = async () => metricSum(await broker.scrape(), "zmcp_broker_messages_refused_total{code=\"no_route\"}");
  const aliceMetrics = async () => parsePrometheusText(await alice.metrics.metrics());
  beforeAll(async () => {
    fx = tempCerts("alice", "bob", "carol", "dave"); // dave never connects
    broker = await startBrokerProcess(fx);
    bob = await startWorker(fx, "bob", [broker.endpoint]);
    alice = await connectAgent(fx, "alice", broker.endpoint, { circuit: { failures: 3, openFor: OPEN_FOR }, retry: false, timeout: 2000 });
    plain = await connectAgent(fx, "carol", broker.endpoint, { circuit: false, retry: false, timeout: 2000 });
  });
  afterAll(async () => {
    await alice?.close();
    await plain?.close();
    await bob?.stop();
    await broker?.stop();
    fx?.cleanup();
  });

  it("opens after 3 failures, refuses at once without sending, probes, and closes when the peer is back", async () => {
    expect(await alice.call("bob", "work", { n: 1 })).toBeTruthy();
    await bob!.stop("SIGKILL");
    bob = undefined;
    // Until the broker sees the connection gone, a call may also time out: both count.
    for (let i = 0; i < 3; i++) {
      const err = await outcome(alice.call("bob", "work", { n: 2 }));
      expect(err).toBeInstanceOf(ZmcpError);
      expect(["no_route", "timeout"]).toContain((err as ZmcpError).code);
    }
    const refusedBefore = await noRoutes();
    const open = await outcome(alice.call("bob", "work", { n: 3 }));
    expect(open).toBeInstanceOf(CircuitOpenError);
    expect(open).toMatchObject({ code: "circuit_open", destination: fx.key("bob") });
    expect(await noRoutes()).toBe(refusedBefore); // it never reached the broker
    let m = await aliceMetrics();
    expect(m.get(`zmcp_agent_circuit_state{destination="${fx.key("bob")}",name="bob",state="open"}`)).toBe(1);
    expect(m.get("zmcp_agent_circuits_open")).toBe(1);
    expect(m.get("zmcp_agent_calls_short_circuited_total")).toBe(1);
    expect(m.get(`zmcp_agent_call_failures_total{code="circuit_open"}`)).toBe(1);

    // circuit: false on one call: sent anyway (the broker answers no_route), not counted.
    const forced = await outcome(alice.call("bob", "work", { n: 4 }, { circuit: false }));
    expect(forced).toBeInstanceOf(RemoteError);
    expect(forced).toMatchObject({ code: "no_route", origin: "broker" });

    // After openFor, one probe goes through; with bob still down it fails and reopens.
    await sleep(OPEN_FOR + 100);
    expect((await aliceMetrics()).get(`zmcp_agent_circuit_state{destination="${fx.key("bob")}",name="bob",state="half_open"}`)).toBe(1);
    const probe = await outcome(alice.call("bob", "work", { n: 5 }));
    expect(probe).toMatchObject({ code: "no_route" });
    expect(await outcome(alice.call("bob", "work", { n: 6 }))).toBeInstanceOf(CircuitOpenError);

    // bob comes back (same key); the next probe succeeds and closes the circuit.
    bob = await startWorker(fx, "bob", [broker.endpoint]);
    await sleep(OPEN_FOR + 100);
    const back = await waitFor(
      async () => {
        const r = await outcome(alice.call("bob", "work", { n: 7 }));
        if (r instanceof CircuitOpenError) return undefined; // a failed probe reopened it; wait for the next
        if (r instanceof ZmcpError) return undefined;
        return r;
      },
      15_000,
      "a probe that succeeds",
    );
    expect(back).toMatchObject({ ok: expect.anything() });
    m = await aliceMetrics();
    expect(m.get("zmcp_agent_circuits_open")).toBe(0);
    expect(m.get("zmcp_agent_circuit_opened_total")).toBeGreaterThanOrEqual(2);
    expect(await alice.call("bob", "work", { n: 8 })).toBeTruthy();
  });

  it("an answer that is an error (invalid_args) proves the peer is there: no circuit opens", async () => {
    for (let i = 0; i < 5; i++) {
      const err = await outcome(alice.call("bob", "work", { n: "not a number" }));
      expect(err).toMatchObject({ code: "invalid_args" });
    }
    expect((await aliceMetrics()).get("zmcp_agent_circuits_open")).toBe(0);
  });

  it("circuit: false on the agent: failures never open anything", async () => {
    for (let i = 0; i < 5; i++) {
      const err = await outcome(plain.call("dave", "x", {}));
      expect(err).toMatchObject({ code: "no_route" });
    }
    expect(parsePrometheusText(await plain.metrics.metrics()).get("zmcp_agent_circuits_open")).toBe(0);
  });
});
