// kv2.mjs URL CREDS [TLS-FIRST-CA]: a device's records through nats.js v2
// (the `nats` package) with default options, as its README shows; with a
// CA file, over TLS with the handshake first (tls.handshakeFirst). Prints
// what it read as JSON; exits 1 with the error on any failure.
import { readFileSync } from "node:fs";
import { connect, credsAuthenticator } from "nats";
import { drive } from "./drive.mjs";

const [url, credsFile, tlsFirstCA] = process.argv.slice(2);
const opts = { servers: url, authenticator: credsAuthenticator(readFileSync(credsFile)) };
if (tlsFirstCA) {
  opts.tls = { handshakeFirst: true, caFile: tlsFirstCA };
}
const nc = await connect(opts);
try {
  const kv = await nc.jetstream().views.kv("records");
  console.log(JSON.stringify(await drive(kv)));
} catch (err) {
  console.error(`nats.js v2: ${err.message}`);
  process.exitCode = 1;
} finally {
  await nc.close();
}
