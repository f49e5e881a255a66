/**
 * A service's circuit is judged by the broker's verdicts (no_route, busy), not by timeouts: a
 * timeout to `svc:NAME` is one replica lost with the request, and the broker routes the next
 * calls to the live replicas (test/integration/mcp-transport.test.ts kills a replica with
 * several calls in flight; the service must stay callable).
 */
import { describe, expect, it } from "vitest";
import { CircuitBreakers, CircuitOpenError, resolveCircuitOptions } from "../../src/agent/circuit.js";
import { remoteError, TimeoutError } from "../../src/errors.js";

const fail = (breakers: CircuitBreakers, destination: string, err: unknown, times: number) => {
  for (let i = 0; i < times; i++) breakers.admit(destination, 1000).settle(err);
};

describe("circuit breakers and services", () => {
  it("timeouts to svc:NAME neither open nor close its circuit; no_route and busy do open it", () => {
    const breakers = new CircuitBreakers(resolveCircuitOptions({ failures: 2, openFor: 60_000 }));
    fail(breakers, "svc:calc", new TimeoutError("lost with its replica"), 8);
    expect(breakers.state("svc:calc")).toBe("closed");
    expect(() => breakers.admit("svc:calc", 1000).settle()).not.toThrow();

    fail(breakers, "svc:calc", remoteError({ code: "no_route", message: "no live replica" }, "broker"), 1);
    fail(breakers, "svc:calc", new TimeoutError("neutral in between"), 1);
    fail(breakers, "svc:calc", remoteError({ code: "busy", message: "every replica busy" }, "broker"), 1);
    expect(breakers.state("svc:calc")).toBe("open");
    const err = (() => {
      try {
        breakers.admit("svc:calc", 1000);
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(CircuitOpenError);
    expect((err as CircuitOpenError).code).toBe("circuit_open");
  });

  it("timeouts to an agent's key still open its circuit", () => {
    const key = "rq:[X]7>c-2Gn0+dKsFq9UhM1vBwR3tZ0pLe8yA5";
    const breakers = new CircuitBreakers(resolveCircuitOptions({ failures: 2, openFor: 60_000 }));
    fail(breakers, key, new TimeoutError("no answer"), 2);
    expect(breakers.state(key)).toBe("open");
  });
});
