#!/usr/bin/env node
/** zmq-keygen: curve certificates in the czmq/pyzmq format. */
import { Command } from "commander";
import { generateCertificate, loadCertificate, saveCertificate } from "../src/certs.js";
import { fail } from "./options.js";

const program = new Command("zmq-keygen")
  .description("Create and inspect CURVE certificates (czmq/pyzmq text format) for zmcp agents and brokers")
  .showHelpAfterError();

program
  .command("cert")
  .description("Write <name>.key (public) and <name>.key_secret (secret, mode 0600)")
  .argument("<name>", "certificate name; agents address each other by it")
  .option("--dir <dir>", "directory to write into", "certs")
  .option("--meta <pairs...>", "metadata entries, key=value (name is set to <name> unless given)")
  .option("--force", "overwrite existing files", false)
  .action((name: string, opts: { dir: string; meta?: string[]; force: boolean }) => {
    const metadata: Record<string, string> = { name };
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

program.parse();
