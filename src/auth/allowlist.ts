/**
 * Who may connect to the broker, or to an agent's direct-link listener (agent/listener.ts): a
 * directory of public certificates (names, keys, and the service keys `svc-NAME.key`) or a list
 * of Z85 keys, with the operator's configured service keys.
 */
import { loadCertDirectory } from "./certs.js";
import { ConfigError } from "../errors.js";
import type { Logger } from "../support/log.js";
import { isZ85Key } from "../wire/z85.js";

export interface Allowlist {
  keys: Set<string>;
  /** Certificate names by key (directory allowlists only). */
  names: Map<string, string>;
  /** Trusted service keys by name. */
  services: Map<string, string>;
}

export function readAllowlist(allow: string | Iterable<string>, log: Logger, services: Record<string, string> = {}): Allowlist {
  const serviceKeys = new Map(Object.entries(services));
  for (const [name, key] of serviceKeys) if (!isZ85Key(key)) throw new ConfigError(`service ${name}: key is not Z85`);
  if (typeof allow === "string") {
    const dir = loadCertDirectory(allow, (err) => log.warn("certificate skipped", { error: err.message }));
    for (const [name, key] of dir.services) {
      const configured = serviceKeys.get(name);
      if (configured === undefined) serviceKeys.set(name, key);
      else if (configured !== key) {
        // Two operator sources disagree: trusting either would be picking by accident.
        serviceKeys.delete(name);
        log.error("service refused: two keys claim it", { service: name, configured, file: `svc-${name}.key`, key });
      }
    }
    return { keys: new Set(dir.byKey.keys()), names: dir.byKey, services: serviceKeys };
  }
  const keys = new Set<string>();
  for (const key of allow) {
    if (!isZ85Key(key)) throw new ConfigError(`allowlist entry ${JSON.stringify(key)} is not a Z85 key`);
    keys.add(key);
  }
  return { keys, names: new Map(), services: serviceKeys };
}
