// kv2.mjs URL CREDS: a device's records through nats.js v2 (the `nats`
// package) with default options, as its README shows. Prints what it read
// as JSON; exits 1 with the error on any failure.
import { readFileSync } from "node:fs";
import { connect, credsAuthenticator } from "nats";
import { drive } from "./drive.mjs";

const [url, credsFile] = process.argv.slice(2);
const nc = await connect({ servers: url, authenticator: credsAuthenticator(readFileSync(credsFile)) });
try {
  const kv = await nc.jetstream().views.kv("records");
  console.log(JSON.stringify(await drive(kv)));
} catch (err) {
  console.error(`nats.js v2: ${err.message}`);
  process.exitCode = 1;
} finally {
  await nc.close();
}
