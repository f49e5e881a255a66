#!/usr/bin/env node
/** zmq-keygen: curve certificates in the czmq/pyzmq format, token authorities and tokens. */
import { renameSync, writeFileSync } from "node:fs";
import { generateCertificate, loadCertificate, saveCertificate } from "../src/auth/certs.js";
import { ConfigError } from "../src/errors.js";
import { generateAuthority, saveAuthority } from "../src/auth/jwk.js";
import { DEFAULT_AUDIENCE, DEFAULT_ISSUER, DEFAULT_TOKEN_TTL_S, MAX_TOKEN_TTL_S, TokenIssuer } from "../src/auth/tokens.js";
import { isZ85Key } from "../src/wire/z85.js";
import { Option } from "commander";
import { command, ENV, run } from "./cli.js";
import { fail } from "./options.js";

// Usage errors come out as one {code, message} line with exit 2, like every command's (bin/cli.ts).
const program = command("zmq-keygen").description(
  "Create and inspect CURVE certificates (czmq/pyzmq text format), token authorities (Ed25519 JWK) and tokens (JWT)",
);

program
  .command("cert")
  .description("Write <name>.key (public) and <name>.key_secret (secret, mode 0600)")
  .argument("<name>", "certificate name; agents address each other by it")
  .addOption(new Option("--dir <dir>", "directory to write into").env(ENV.certs).default("certs"))
  .option("--meta <pairs...>", "metadata entries, key=value (name is set to <name> unless given)")
  .option("--force", "overwrite existing files", false)
  .option("--service", "a service key shared by replicas: writes svc-<name>.key(_secret) with metadata service = <name>", false)
  .action((certName: string, opts: { dir: string; meta?: string[]; force: boolean; service: boolean }) => {
    const name = opts.service ? `svc-${certName}` : certName;
    const metadata: Record<string, string> = opts.service ? { name, service: certName } : { name };
    for (const pair of opts.meta ?? []) {
      const eq = pair.indexOf("=");
      if (eq <= 0) fail({ code: "config", message: `--meta ${JSON.stringify(pair)} is not key=value` }, 2);
      metadata[pair.slice(0, eq)] = pair.slice(eq + 1);
    }
    try {
      const cert = generateCertificate(metadata);
      const paths = saveCertificate(cert, opts.dir, name, { force: opts.force });
      process.stdout.write(`${paths.publicPath}\n${paths.secretPath}\npublic key: ${cert.publicKey}\n`);
    } catch (err) {
      fail(err);
    }
  });

program
  .command("show")
  .description("Print the public key and metadata of a certificate (public or secret; zmcp, czmq or pyzmq)")
  .argument("<file>", "certificate file")
  .option("--json", "print JSON", false)
  .action((file: string, opts: { json: boolean }) => {
    try {
      const cert = loadCertificate(file);
      const info = { file, publicKey: cert.publicKey, secret: cert.secretKey !== undefined, metadata: cert.metadata };
      if (opts.json) process.stdout.write(JSON.stringify(info) + "\n");
      else {
        const lines = [`file:       ${file}`, `public key: ${cert.publicKey}`, `secret:     ${info.secret ? "yes" : "no"}`];
        for (const [k, v] of Object.entries(cert.metadata)) lines.push(`${`${k}:`.padEnd(12)}${v}`);
        process.stdout.write(lines.join("\n") + "\n");
      }
    } catch (err) {
      fail(err);
    }
  });

program
  .command("authority")
  .description("Create an Ed25519 token authority: <name>.jwk (private, mode 0600) and <name>.pub.jwk (public, for agents)")
  .addOption(new Option("--dir <dir>", "directory to write into").env(ENV.certs).default("certs"))
  .option("--name <name>", "file name stem", "authority")
  .option("--force", "overwrite existing files", false)
  .action((opts: { dir: string; name: string; force: boolean }) => {
    try {
      const { privateJwk } = generateAuthority();
      const paths = saveAuthority(privateJwk, opts.dir, opts.name, { force: opts.force });
      process.stdout.write(`${paths.privatePath}\n${paths.publicPath}\nkid: ${privateJwk.kid}\n`);
    } catch (err) {
      fail(err);
    }
  });

program
  .command("token")
  .description("Print a capability token (compact JWT, EdDSA) bound to a curve key")
  .requiredOption("--sub <name>", "subject: the holder's name")
  .requiredOption("--key <cert-or-z85>", "the holder's curve public key: a certificate file (.key or .key_secret) or 40 Z85 characters")
  .requiredOption("--scope <scopes>", 'space-separated scopes, e.g. "call:batch_sum call:jobs.*"')
  .option("--ttl <seconds>", "lifetime", String(DEFAULT_TOKEN_TTL_S))
  .option("--max-ttl <seconds>", "raise the lifetime cap on purpose", String(MAX_TOKEN_TTL_S))
  .option("--aud <audience>", "audience (recipients check it)", DEFAULT_AUDIENCE)
  .option("--iss <issuer>", "issuer", DEFAULT_ISSUER)
  .option("--authority <file>", "the authority's private JWK", "certs/authority.jwk")
  .option("--out <file>", "write the token to this file (mode 0600, replaced atomically) instead of stdout; pass it on as --token @FILE")
  .action((opts: { sub: string; key: string; scope: string; ttl: string; maxTtl: string; aud: string; iss: string; authority: string; out?: string }) => {
    try {
      const ttl = seconds(opts.ttl, "--ttl");
      const maxTtl = seconds(opts.maxTtl, "--max-ttl");
      const key = isZ85Key(opts.key) ? opts.key : loadCertificate(opts.key).publicKey;
      const token = new TokenIssuer(opts.authority, { maxTtl }).issue({ sub: opts.sub, key, scope: opts.scope, ttl, aud: opts.aud, iss: opts.iss });
      if (opts.out === undefined) {
        process.stdout.write(token + "\n");
      } else {
        // Written beside the target and renamed, so a process re-reading the file never sees half a token.
        const tmp = `${opts.out}.${process.pid}.tmp`;
        writeFileSync(tmp, token + "\n", { mode: 0o600 });
        renameSync(tmp, opts.out);
      }
    } catch (err) {
      fail(err);
    }
  });

function seconds(value: string, name: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n <= 0) throw new ConfigError(`${name} must be a positive integer of seconds`);
  return n;
}

run(program);
