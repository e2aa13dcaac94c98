// drive runs the KV operations a device uses on an open bucket, with the
// API that nats.js v2 and v3 share, and returns what it saw.
const text = (e) => (e && e.value ? new TextDecoder().decode(e.value) : null);

export async function drive(kv) {
  const out = {};
  const rev1 = await kv.put("note", "one");
  out.get = text(await kv.get("note"));
  const rev2 = await kv.update("note", "two", rev1);
  out.updated = rev2 > rev1;
  try {
    await kv.update("note", "stale", rev1);
    out.staleUpdate = "accepted";
  } catch {
    out.staleUpdate = "refused";
  }
  await kv.create("scratch", "x");
  await kv.delete("scratch");
  const gone = await kv.get("scratch");
  out.deleted = gone === null || gone.operation === "DEL";

  out.keys = [];
  for await (const k of await kv.keys()) out.keys.push(k);
  out.keys.sort();

  out.history = [];
  for await (const e of await kv.history({ key: "note" })) out.history.push(text(e));

  // A watch sees a change made after it started.
  const w = await kv.watch({ key: "note", include: "updates_only" });
  const seen = (async () => {
    for await (const e of w) {
      if (text(e) === "three") return true;
    }
    return false;
  })();
  await kv.put("note", "three");
  let timer;
  const timeout = new Promise((resolve) => {
    timer = setTimeout(() => resolve(false), 10000);
  });
  out.watched = await Promise.race([seen, timeout]);
  clearTimeout(timer);
  w.stop();
  return out;
}
