// Unit tests of the SDK's pure logic: stream ids, backoff, pacing, the room
// tracker (resume points, dedupe), the request book (refs, offline queue) and
// the resume store. Plain function calls; run with `node --test`.
import { test } from "node:test";
import assert from "node:assert/strict";

import {
  Backoff,
  ClientCode,
  Pacer,
  QueueFullError,
  Request,
  RequestBook,
  ResumeStore,
  RoomTracker,
  RoomcastError,
  backoffCeiling,
  compareStreamIds,
  fullJitter,
  newKey,
  KEY_PATTERN,
  parseStreamId,
  refreshDelay,
  tokenExpiry,
  websocketUrl,
} from "../roomcast.js";

// A repeatable source of randomness: a list of draws, cycled.
const draws = (...values) => {
  let i = 0;
  return () => values[i++ % values.length];
};

test("stream ids compare as numbers, not strings", () => {
  assert.deepEqual(parseStreamId("10-0"), [10n, 0n]);
  assert.deepEqual(parseStreamId("7"), [7n, 0n]);
  assert.equal(compareStreamIds(parseStreamId("9-0"), parseStreamId("10-0")), -1);
  assert.equal(compareStreamIds(parseStreamId("10-2"), parseStreamId("10-10")), -1);
  assert.equal(compareStreamIds(parseStreamId("18446744073709551615-1"), parseStreamId("18446744073709551615-0")), 1);
  for (const bad of ["", "-1", "1-", "a-1", "1-2-3", " 1-2", null, 5]) assert.equal(parseStreamId(bad), null, String(bad));
});

test("backoff ceilings double up to the cap", () => {
  assert.deepEqual([0, 1, 2, 3, 10, 1000].map((a) => backoffCeiling(a, 200, 10000)), [200, 400, 800, 1600, 10000, 10000]);
  assert.throws(() => backoffCeiling(-1, 200, 10000), RangeError);
});

test("full jitter draws anywhere between 0 and the ceiling", () => {
  assert.equal(fullJitter(3, () => 0, 200, 10000), 0);
  assert.equal(fullJitter(3, () => 0.5, 200, 10000), 800);
  assert.ok(fullJitter(3, () => 0.999999, 200, 10000) < 1600);
});

test("Backoff counts failures, resets, and comes back fast after a restart", () => {
  const b = new Backoff({ base: 100, cap: 1000, restartJitter: 50, random: () => 1 });
  assert.deepEqual([b.next(), b.next(), b.next(), b.next(), b.next()], [100, 200, 400, 800, 1000]);
  assert.equal(b.restart(), 50); // and the run of failures is forgotten
  assert.equal(b.next(), 100);
  b.reset();
  assert.equal(b.attempt, 0);
  assert.throws(() => new Backoff({ base: 0 }), /backoff/);
  assert.throws(() => new Backoff({ base: 500, cap: 100 }), /backoff/);
});

test("after 4429 the backoff waits longer: between cap/2 and cap, and stays high", () => {
  const low = new Backoff({ base: 200, cap: 10000, random: () => 0 });
  const high = new Backoff({ base: 200, cap: 10000, random: () => 0.999 });
  assert.equal(low.tooMany(), 5000);
  assert.ok(high.tooMany() < 10000 && high.tooMany() >= 5000);
  // a plain failure after a 4429 draws from the full window, not from 200 ms
  const after = new Backoff({ base: 200, cap: 10000, random: () => 1 });
  after.tooMany();
  assert.equal(after.next(), 10000);
});

test("the pacer lets a burst through, then spaces frames at the rate", () => {
  let now = 0;
  const pacer = new Pacer(10, 3, () => now);
  assert.deepEqual([pacer.reserve(), pacer.reserve(), pacer.reserve()], [0, 0, 0]);
  assert.equal(Math.round(pacer.reserve()), 100); // the 4th waits one slot
  assert.equal(Math.round(pacer.reserve()), 200); // the 5th queues behind it
  now = 1000; // a second later the bucket is full again
  assert.equal(pacer.reserve(), 0);
});

test("tracker: the resume point is the last id seen, else the join's last_id", () => {
  const t = new RoomTracker();
  t.want("project:1");
  assert.equal(t.resumePoint("project:1"), null); // first join: no since
  t.joined("project:1", "5-0", null);
  assert.equal(t.resumePoint("project:1"), "5-0"); // idle room resumes gap-free from the head
  assert.ok(t.accept("project:1", "6-0"));
  assert.equal(t.resumePoint("project:1"), "6-0");
  assert.equal(t.resumePoint("task:9"), null);
});

test("tracker: duplicates and older ids are dropped, by numeric order", () => {
  const t = new RoomTracker();
  t.want("project:1");
  assert.ok(t.accept("project:1", "9-0"));
  assert.ok(t.accept("project:1", "10-0"));
  assert.equal(t.accept("project:1", "10-0"), false);
  assert.equal(t.accept("project:1", "9-5"), false);
  assert.ok(t.accept("project:1", "10-1"));
  // rooms we do not track and ids we cannot read pass: never lose data to dedupe
  assert.ok(t.accept("channel:2", "1-0"));
  assert.ok(t.accept("project:1", "not-an-id"));
});

test("tracker: an explicit since replays, and is used for one join only", () => {
  const t = new RoomTracker();
  t.want("project:1");
  t.accept("project:1", "20-0");
  t.want("project:1", "10-0");
  assert.equal(t.resumePoint("project:1"), "10-0");
  assert.ok(t.accept("project:1", "15-0")); // replayed again on request
  t.joined("project:1", "20-0", true);
  assert.equal(t.resumePoint("project:1"), "15-0");
});

test("tracker: not recovered moves the baseline to the room's head", () => {
  const t = new RoomTracker();
  t.want("project:1");
  t.accept("project:1", "3-0");
  t.joined("project:1", "50-0", false);
  assert.equal(t.resumePoint("project:1"), "50-0");
  assert.equal(t.accept("project:1", "40-0"), false);
});

test("tracker: forget, refused joins, auto-joined rooms, connection loss", () => {
  const t = new RoomTracker();
  t.want("project:1");
  t.joinFailed("project:1");
  assert.equal(t.has("project:1"), false); // refused before it was ever joined
  t.want("project:2");
  t.joined("project:2", "0-0", null);
  t.joinFailed("project:2");
  assert.ok(t.has("project:2")); // a refused rejoin of a joined room is the caller's call
  assert.ok(t.autoJoined("user:7"));
  assert.equal(t.autoJoined("user:7"), false);
  t.connectionLost();
  t.forget("project:2");
  assert.deepEqual(t.rooms, ["user:7"]);
  assert.deepEqual(t.snapshot(), {});
  t.joined("user:7", "4-0", null);
  assert.deepEqual(t.snapshot(), { "user:7": "4-0" });
});

const request = (seq, kind = "send_message", room = "project:1") =>
  new Request(seq, kind, room, kind === "send_message" ? { content: "hi", key: `k${seq}` } : null, (f) => f.data);

test("request: frame carries the ref, room and a copy of data", () => {
  const r = request(3);
  const frame = r.frame();
  assert.deepEqual(frame, { type: "send_message", ref: "3", room: "project:1", data: { content: "hi", key: "k3" } });
  frame.data.since = "x";
  assert.equal(r.data.since, undefined);
  assert.deepEqual(new Request(4, "ping", null, null, () => 1).frame(), { type: "ping", ref: "4" });
});

test("request: settled once, by a reply or by a typed error with the code", async () => {
  const ok = request(1);
  ok.settle({ type: "ack", data: { key: "k1" } });
  ok.settle({ type: "error", data: { code: 4403, error: "Forbidden" } }); // ignored: already settled
  assert.deepEqual(await ok.promise, { key: "k1" });

  const refused = request(2);
  refused.settle({ type: "error", ref: "2", data: { code: 4403, error: "Forbidden" } });
  await assert.rejects(refused.promise, (e) => e instanceof RoomcastError && e.code === 4403 && e.reason === "Forbidden");
});

test("book: replies are matched by ref, and a reply without ref by kind and room", () => {
  const book = new RequestBook();
  const [a, b, c] = [request(1), request(2, "join_room", "project:2"), request(3, "join_room", "project:3")];
  for (const r of [a, b, c]) book.submit(r);
  for (let r = book.next(); r; r = book.next()) book.markSent(r);
  assert.equal(book.inFlight, 3);
  assert.equal(book.popReply("1"), a);
  assert.equal(book.popReply(1), undefined); // answered already
  assert.equal(book.popReply({}), undefined);
  assert.equal(book.popOldest("join_room", "project:3"), c);
  assert.equal(book.popOldest("join_room", null), b);
  assert.equal(book.inFlight, 0);
});

test("book: the offline queue is bounded and says so", () => {
  const book = new RequestBook(2);
  book.submit(request(1));
  book.submit(request(2));
  assert.throws(() => book.submit(request(3)), (e) => e instanceof QueueFullError && e.code === ClientCode.QUEUE_FULL);
  assert.equal(book.queued, 2);
  assert.throws(() => new RequestBook(0), /maxQueued/);
});

test("book: a lost connection resends unanswered requests first, in order, before newer ones", () => {
  const book = new RequestBook(3);
  const sent = [request(1), request(2), request(3)];
  for (const r of sent) book.submit(r);
  for (let r = book.next(); r; r = book.next()) book.markSent(r);
  book.popReply("2"); // answered
  book.submit(request(4)); // made while offline
  book.requeueInFlight();
  const order = [];
  for (let r = book.next(); r; r = book.next()) order.push(r.seq);
  assert.deepEqual(order, [1, 3, 4]);
  // the resend keeps the idempotency key: the server publishes once
  assert.equal(sent[0].frame().data.key, "k1");
});

test("book: withdrawn and settled requests are never sent; failAll settles everything", async () => {
  const book = new RequestBook();
  const [a, b, c] = [request(1), request(2), request(3)];
  for (const r of [a, b, c]) book.submit(r);
  assert.ok(book.withdraw(b));
  assert.equal(book.withdraw(b), false);
  a.fail(new Error("gone"));
  assert.equal(book.next(), c);
  book.markSent(c);
  const d = request(4);
  book.submit(d);
  book.failAll(new RoomcastError(1000, "client closed"));
  await assert.rejects(c.promise, /client closed/);
  await assert.rejects(d.promise, /client closed/);
  assert.equal(book.queued + book.inFlight, 0);
});

test("book: rooms a queued or in-flight join will join by itself", () => {
  const book = new RequestBook();
  book.submit(request(1, "join_room", "project:1"));
  book.submit(request(2, "leave_room", "project:2"));
  const sent = request(3, "join_room", "task:3");
  book.submit(sent);
  book.next();
  book.next();
  book.markSent(book.next());
  assert.deepEqual([...book.pendingJoinRooms()], ["task:3"]);
});

class MemoryStorage {
  constructor(initial = {}) {
    this.items = new Map(Object.entries(initial));
    this.writes = 0;
  }
  getItem(k) {
    return this.items.has(k) ? this.items.get(k) : null;
  }
  setItem(k, v) {
    this.writes += 1;
    this.items.set(k, v);
  }
  removeItem(k) {
    this.items.delete(k);
  }
}

test("resume store: coalesces writes, loads only valid ids, survives corrupt data", async () => {
  const storage = new MemoryStorage({ k: JSON.stringify({ "project:1": "5-0", "project:2": "nope" }) });
  const store = new ResumeStore(storage, "k");
  assert.deepEqual(store.load(), { "project:1": "5-0" });
  store.save(() => ({ "project:1": "6-0" }));
  store.save(() => ({ "project:1": "7-0" }));
  await Promise.resolve();
  assert.equal(storage.writes, 1);
  assert.deepEqual(store.load(), { "project:1": "7-0" });
  storage.setItem("k", "{not json");
  assert.deepEqual(store.load(), {});
  store.clear();
  assert.equal(storage.getItem("k"), null);
});

test("idempotency keys are fresh and of the server's format", () => {
  const keys = new Set(Array.from({ length: 100 }, newKey));
  assert.equal(keys.size, 100);
  for (const k of keys) assert.match(k, KEY_PATTERN);
});

test("URLs: http maps to ws, the default path is added, a token in the URL is removed", () => {
  assert.equal(websocketUrl("http://localhost:8000"), "ws://localhost:8000/api/v1/ws/connect");
  assert.equal(websocketUrl("https://rt.example/"), "wss://rt.example/api/v1/ws/connect");
  assert.equal(websocketUrl("ws://h:1/custom?token=abc&x=1"), "ws://h:1/custom?x=1");
  for (const bad of ["localhost:8000", "ftp://h/", "not a url"]) {
    assert.throws(() => websocketUrl(bad), /URL must look like ws:\/\/HOST/);
  }
});

test("token expiry is read from the JWT, and refresh comes before it", () => {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const jwt = `${b64({ alg: "HS256" })}.${b64({ sub: "1", exp: 2000 })}.sig`;
  assert.equal(tokenExpiry(jwt), 2000000);
  assert.equal(tokenExpiry("opaque-token"), null);
  assert.equal(tokenExpiry(`${b64({})}.${b64({ sub: "1" })}.s`), null);
  assert.equal(refreshDelay(3600000, 0), 3570000); // an hour's token: 30 s before exp
  assert.equal(refreshDelay(20000, 0), 15000); // a short one: a quarter of what is left
  assert.equal(refreshDelay(20000, 0, 4000), 12000); // the server's clock is ahead
  assert.equal(refreshDelay(1000, 5000), 0); // already due
});
