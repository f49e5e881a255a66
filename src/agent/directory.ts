/**
 * Names ↔ keys: the agent's certificate directory (`certs`), re-read when it changes so a
 * certificate added after the start is found, at the cost of one stat per lookup miss.
 */
import { statSync } from "node:fs";
import { loadCertDirectory, type CertDirectory } from "../auth/certs.js";
import { ProtocolError, ZmcpError, describeThrown } from "../errors.js";
import type { Logger } from "../support/log.js";
import { parseServiceAddress } from "../wire/services.js";
import { isZ85Key } from "../wire/z85.js";

export class Directory {
  #directory: CertDirectory = { byName: new Map(), byKey: new Map(), services: new Map() };
  #mtime = -1;

  constructor(
    readonly dir: string | undefined,
    private readonly log: Logger,
  ) {
    this.#reload();
  }

  /** The certificate name of a key, if known. */
  nameOf(key: string): string | undefined {
    let name = this.#directory.byKey.get(key);
    if (name === undefined && this.#reload()) name = this.#directory.byKey.get(key);
    return name;
  }

  /** A name (from `certs`) or a Z85 key → Z85 key. Throws ZmcpError(unknown_peer). */
  resolve(to: string): string {
    if (isZ85Key(to)) return to;
    let key = this.#directory.byName.get(to);
    if (!key && this.#reload()) key = this.#directory.byName.get(to);
    if (!key) throw new ZmcpError("unknown_peer", `no certificate named ${JSON.stringify(to)}${this.dir ? ` in ${this.dir}` : ""}`);
    return key;
  }

  /** The public key of service `name`: the certificate `svc-NAME.key` in `certs` (auth/certs.ts). Throws ZmcpError(unknown_peer). */
  serviceKey(name: string): string {
    let key = this.#directory.services.get(name);
    if (!key && this.#reload()) key = this.#directory.services.get(name);
    if (!key) throw new ZmcpError("unknown_peer", `no certificate for service ${JSON.stringify(name)} (svc-${name}.key) in ${this.dir ?? "certs"}`);
    return key;
  }

  /** The key that sealed a message marked `as` (a service address). Throws ProtocolError(bad_seal). */
  sealedAs(as: string): string {
    const service = parseServiceAddress(as);
    if (!service) throw new ProtocolError("bad_seal", `sealed as ${JSON.stringify(as)}, which is no service`);
    try {
      return this.serviceKey(service.name);
    } catch {
      throw new ProtocolError("bad_seal", `sealed as service ${service.name}, whose key is unknown here`);
    }
  }

  /** Re-reads `certs` if the directory changed since it was read; true if it was re-read. */
  #reload(): boolean {
    if (!this.dir) return false;
    let mtime: number;
    try {
      mtime = statSync(this.dir).mtimeMs;
    } catch (err) {
      this.log.warn("certificate directory unreadable", { error: describeThrown(err) });
      return false;
    }
    if (mtime === this.#mtime) return false;
    this.#mtime = mtime;
    try {
      this.#directory = loadCertDirectory(this.dir, (err) => this.log.warn("certificate skipped", { error: err.message }));
    } catch (err) {
      this.log.warn("certificate directory unreadable", { error: describeThrown(err) });
    }
    return true;
  }
}
