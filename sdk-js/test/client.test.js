// RoomcastClient against a scripted server: the WebSocket (an edge we do not
// own) is replaced by a socket the test plays the server's part on, so the
// client's own reconnect, resume, dedupe, queue and heartbeat code runs for real.
// The browser tests (tests/browser/) run the same client against real gateways.
import { test as nodeTest } from "node:test";
import assert from "node:assert/strict";

import { ClientClosedError, RequestTimeoutError, RoomcastClient, RoomcastError } from "../roomcast.js";

/** Every socket the client opened, in order. */
function scriptedServer() {
  const sockets = [];
  class ScriptedSocket {
    constructor(url, protocols) {
      this.url = url;
      this.protocols = protocols;
      this.sent = [];
      this.closed = null;
      sockets.push(this);
    }
    send(text) {
      this.sent.push(JSON.parse(text));
    }
    close(code, reason) {
      this.closed = { code, reason };
    }
    // the server's side
    hello(userId = 7, heartbeat = 30) {
      this.push({ type: "connected", data: { user_id: userId, username: "u", connection_id: "c", heartbeat_interval: heartbeat, rooms: [`user:${userId}`] }, timestamp: new Date().toISOString() });
    }
    push(frame) {
      this.onmessage?.({ data: JSON.stringify(frame) });
    }
    drop(code = 1006, reason = "") {
      this.onclose?.({ code, reason });
    }
    /** Frames sent of a type, from index `from`. */
    of(type, from = 0) {
      return this.sent.slice(from).filter((f) => f.type === type);
    }
    /** Answer every unanswered join_room (room_joined with last_id, recovered as asked). */
    answerJoins({ lastId = "0-0", recovered } = {}) {
      for (const f of this.of("join_room")) {
        if (f.answered) continue;
        f.answered = true;
        const data = { last_id: lastId };
        if (f.data?.since !== undefined && recovered !== undefined) data.recovered = recovered;
        this.push({ type: "room_joined", room: f.room, ref: f.ref, data });
      }
    }
  }
  return { sockets, WebSocket: ScriptedSocket, last: () => sockets[sockets.length - 1] };
}

/** Poll a condition with a deadline (no sleeps as synchronisation). */
async function until(predicate, what, timeout = 2000) {
  const deadline = Date.now() + timeout;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

// A broken client must fail its test, not hang the run.
const test = (name, fn) => nodeTest(name, { timeout: 5000 }, fn);

const fastBackoff = { base: 1, cap: 5, restartJitter: 1 };

function client(server, options = {}) {
  return new RoomcastClient(options.urls ?? ["ws://a:1", "ws://b:2"], {
    token: "tok.en.x",
    WebSocket: server.WebSocket,
    backoff: fastBackoff,
    sendRate: null,
    ...options,
  });
}

test("connects with the bearer subprotocol by default, the query on request", async () => {
  const server = scriptedServer();
  const a = client(server).connect();
  await until(() => server.sockets.length === 1, "a socket");
  assert.deepEqual(server.last().protocols, ["bearer", "tok.en.x"]);
  assert.equal(server.last().url, "ws://a:1/api/v1/ws/connect");
  a.close();
  const b = client(server, { tokenIn: "query" }).connect();
  await until(() => server.sockets.length === 2, "a second socket");
  assert.equal(server.last().url, "ws://a:1/api/v1/ws/connect?token=tok.en.x");
  assert.equal(server.last().protocols, undefined);
  b.close();
});

test("one clear error per misuse", () => {
  const server = scriptedServer();
  assert.throws(() => new RoomcastClient([], { token: "t" }), /at least one gateway URL/);
  assert.throws(() => new RoomcastClient("ws://a:1", {}), /options.token must be/);
  assert.throws(() => new RoomcastClient("ws://a:1", { token: "t", tokenIn: "cookie", WebSocket: server.WebSocket }), /tokenIn/);
  assert.throws(() => new RoomcastClient("ws://a:1", { token: "t" }), /no WebSocket here/); // Node 20 has none
  const c = client(server);
  assert.throws(() => c.send("project:1", ""), /content must be a non-empty string/);
  assert.throws(() => c.send("project:1", "hi", { key: "has space" }), /key must be 1-64 characters/);
  assert.throws(() => c.join(42), /room must be a name/);
  c.close();
});

test("sends made offline wait for the rejoins, then go out once each with their keys", async () => {
  const server = scriptedServer();
  const c = client(server);
  const joined = c.join("project:1");
  const sent = [c.send("project:1", "one"), c.send("project:1", "two", { key: "my-key.1" })];
  await until(() => server.sockets.length === 1, "a socket");
  const ws = server.last();
  assert.equal(ws.sent.length, 0); // nothing before the welcome
  ws.hello();
  // the queued join goes with the outbox; the server's own user room is rejoined first
  assert.deepEqual(ws.sent.map((f) => [f.type, f.room]), [["join_room", "user:7"]]);
  ws.answerJoins();
  assert.deepEqual(ws.sent.map((f) => [f.type, f.room, f.data?.content]), [
    ["join_room", "user:7", undefined],
    ["join_room", "project:1", undefined],
    ["send_message", "project:1", "one"],
    ["send_message", "project:1", "two"],
  ]);
  const [one, two] = ws.of("send_message");
  assert.match(one.data.key, /^[0-9a-f]{32}$/);
  assert.equal(two.data.key, "my-key.1");
  ws.answerJoins();
  ws.push({ type: "ack", ref: two.ref, data: { key: "my-key.1", message_id: "m2" } });
  ws.push({ type: "ack", ref: one.ref, data: { key: one.data.key, message_id: "m1" } });
  assert.equal((await joined).lastId, "0-0");
  assert.deepEqual(await Promise.all(sent), [{ key: one.data.key, messageId: "m1" }, { key: "my-key.1", messageId: "m2" }]);
  c.close();
});

test("an unanswered send is resent after a reconnect with the same key", async () => {
  const server = scriptedServer();
  const c = client(server);
  c.join("project:1");
  await until(() => server.sockets.length === 1, "a socket");
  let ws = server.last();
  ws.hello();
  ws.answerJoins();
  ws.answerJoins();
  const ack = c.send("project:1", "hello");
  const first = ws.of("send_message")[0];
  ws.drop(1006);
  await until(() => server.sockets.length === 2, "a reconnect");
  ws = server.last();
  ws.hello();
  ws.answerJoins();
  const again = ws.of("send_message");
  assert.equal(again.length, 1);
  assert.equal(again[0].data.key, first.data.key);
  ws.push({ type: "ack", ref: again[0].ref, data: { key: first.data.key, message_id: "m" } });
  assert.equal((await ack).messageId, "m");
  c.close();
});

test("reconnect fails over, rejoins from the last id, drops duplicates, reports recovery", async () => {
  const server = scriptedServer();
  const c = client(server);
  const events = [];
  const room = c.room("project:1");
  room.on("task.created", (e) => events.push(e.id));
  const recovered = [];
  c.on("recovered", (e) => recovered.push(e.room));
  const disconnected = [];
  c.on("disconnected", (e) => disconnected.push(e));
  c.join("project:1");
  await until(() => server.sockets.length === 1, "a socket");
  let ws = server.last();
  assert.ok(ws.url.startsWith("ws://a:1"));
  ws.hello();
  ws.answerJoins({ lastId: "1-0" });
  ws.answerJoins({ lastId: "1-0" });
  for (const id of ["2-0", "3-0"]) ws.push({ type: "task.created", room: "project:1", id, data: {} });

  ws.drop(1006, "gone");
  await until(() => server.sockets.length === 2, "a reconnect");
  assert.equal(disconnected[0].code, 1006);
  assert.equal(disconnected[0].willReconnect, true);
  assert.equal(disconnected[0].url, "ws://a:1/api/v1/ws/connect");
  ws = server.last();
  assert.ok(ws.url.startsWith("ws://b:2"), "the next attempt goes to the next URL");
  ws.hello();
  const rejoin = Object.fromEntries(ws.of("join_room").map((f) => [f.room, f.data?.since]));
  assert.deepEqual(rejoin, { "user:7": "1-0", "project:1": "3-0" });
  ws.answerJoins({ lastId: "4-0", recovered: true });
  // the replay overlaps what was seen live: 3-0 again is dropped
  for (const id of ["3-0", "4-0", "4-0", "10-0"]) ws.push({ type: "task.created", room: "project:1", id, data: {} });
  assert.deepEqual(events, ["2-0", "3-0", "4-0", "10-0"]);
  assert.deepEqual(recovered.sort(), ["project:1", "user:7"]);
  assert.equal(room.lastId, "10-0");
  await c.ready();
  c.close();
});

test("not_recovered and resync_required reach the room and the client", async () => {
  const server = scriptedServer();
  const c = client(server);
  c.join("project:1");
  await until(() => server.sockets.length === 1, "a socket");
  let ws = server.last();
  ws.hello();
  ws.answerJoins();
  ws.answerJoins();
  ws.push({ type: "message", room: "project:1", id: "5-0", data: {} });
  const seen = [];
  c.room("project:1").on("*", (e) => seen.push(e.type));
  ws.drop(1012, "restart");
  await until(() => server.sockets.length === 2, "a reconnect");
  ws = server.last();
  ws.hello();
  ws.answerJoins({ lastId: "90-0", recovered: false });
  ws.push({ type: "resync_required", room: "project:1", data: { room: "project:1" } });
  assert.deepEqual(seen, ["not_recovered", "resync_required"]); // the room sees its own events only
  assert.equal(c.room("project:1").lastId, "90-0");
  c.close();
});

test("4401 with a fixed token stops for good; waiting requests fail with the close code", async () => {
  const server = scriptedServer();
  const c = client(server);
  const last = new Promise((resolve) => c.on("disconnected", resolve));
  const pending = c.join("project:1");
  await until(() => server.sockets.length === 1, "a socket");
  server.last().drop(4401, "Authentication failed");
  const event = await last;
  assert.equal(event.code, 4401);
  assert.equal(event.willReconnect, false);
  await assert.rejects(pending, (e) => e instanceof ClientClosedError && e.code === 4401);
  await assert.rejects(c.ready(), ClientClosedError);
  assert.equal(c.state, "closed");
  assert.equal(server.sockets.length, 1);
  await assert.rejects(c.ping(), ClientClosedError);
});

test("4401 with a token function reconnects with the new token; the same token stops", async () => {
  const server = scriptedServer();
  const tokens = ["a.b.1", "a.b.2", "a.b.2"];
  let calls = 0;
  const c = client(server, { token: () => tokens[Math.min(calls++, tokens.length - 1)] });
  c.connect();
  await until(() => server.sockets.length === 1, "a socket");
  assert.equal(server.last().protocols[1], "a.b.1");
  server.last().drop(4401, "Token expired");
  await until(() => server.sockets.length === 2, "a reconnect with a new token");
  assert.equal(server.last().protocols[1], "a.b.2");
  server.last().drop(4403, "Forbidden");
  await until(() => c.state === "closed", "the client to stop");
  assert.equal(server.sockets.length, 2);
});

test("a missing pong is a dead connection", async () => {
  const server = scriptedServer();
  const c = client(server);
  const gone = new Promise((resolve) => c.on("disconnected", resolve));
  c.connect();
  await until(() => server.sockets.length === 1, "a socket");
  const ws = server.last();
  ws.hello(7, 0.02); // heartbeat every 20 ms
  ws.answerJoins();
  await until(() => ws.of("ping").length === 1, "a ping");
  const event = await gone; // never answered
  assert.equal(event.code, 1006);
  assert.equal(event.reason, "heartbeat timeout");
  assert.equal(ws.closed.code, 4000);
  await until(() => server.sockets.length === 2, "a reconnect");
  c.close();
});

test("answered pings keep the connection", async () => {
  const server = scriptedServer();
  const c = client(server);
  c.connect();
  await until(() => server.sockets.length === 1, "a socket");
  const ws = server.last();
  ws.hello(7, 0.02);
  ws.answerJoins();
  for (let n = 1; n <= 3; n++) {
    await until(() => ws.of("ping").length === n, `ping ${n}`);
    ws.push({ type: "pong", ref: ws.of("ping")[n - 1].ref });
  }
  assert.equal(server.sockets.length, 1);
  assert.equal(c.state, "open");
  c.close();
});

test("commands fail with typed errors carrying the code; timeouts too", async () => {
  const server = scriptedServer();
  const c = client(server, { requestTimeout: 30 });
  c.connect();
  await until(() => server.sockets.length === 1, "a socket");
  const ws = server.last();
  ws.hello();
  ws.answerJoins();
  const denied = c.join("project:9");
  const f = ws.of("join_room").at(-1);
  ws.push({ type: "error", ref: f.ref, data: { code: 4403, error: "Forbidden" } });
  await assert.rejects(denied, (e) => e instanceof RoomcastError && e.code === 4403);
  assert.equal(c.rooms.includes("project:9"), false);
  await assert.rejects(c.ping(), (e) => e instanceof RequestTimeoutError && e.code === 1);
  // a late pong for the timed-out ping settles nothing else
  const later = c.ping({ timeout: 1000 });
  const [late, current] = ws.of("ping").filter((p) => !p.ref.startsWith("hb-"));
  ws.push({ type: "pong", ref: late.ref });
  ws.push({ type: "pong", ref: current.ref });
  await later;
  c.close();
});

test("the offline queue is bounded; an AbortSignal withdraws an unsent request", async () => {
  const server = scriptedServer();
  const c = client(server, { maxQueued: 2 });
  const controller = new AbortController();
  const first = c.send("project:1", "1", { signal: controller.signal });
  c.send("project:1", "2");
  await assert.rejects(c.send("project:1", "3"), (e) => e.code === 2 && /offline queue full/.test(e.message));
  controller.abort();
  await assert.rejects(first, (e) => e.code === 3);
  c.close();
});

test("events as an async iterator, per room and for the client; they end on close", async () => {
  const server = scriptedServer();
  const c = client(server);
  const roomEvents = c.room("project:1").events();
  const all = c.events();
  c.join("project:1");
  await until(() => server.sockets.length === 1, "a socket");
  const ws = server.last();
  ws.hello();
  ws.answerJoins();
  ws.answerJoins();
  ws.push({ type: "message", room: "project:1", id: "1-0", data: { content: "x" }, sender: "bob" });
  ws.push({ type: "message", room: "channel:2", id: "1-0", data: {} });
  const first = await roomEvents.next();
  assert.deepEqual(first.value, { type: "message", room: "project:1", data: { content: "x" }, sender: "bob", timestamp: null, id: "1-0" });
  c.close();
  assert.equal((await roomEvents.next()).done, true);
  const types = [];
  for await (const e of all) types.push(e.type);
  assert.deepEqual(types, ["connected", "message", "message", "disconnected"]);
});

test("a page reload resumes from the resume store", async () => {
  const storage = new Map();
  const store = { getItem: (k) => storage.get(k) ?? null, setItem: (k, v) => storage.set(k, v), removeItem: (k) => storage.delete(k) };
  const server = scriptedServer();
  const before = client(server, { resumeStorage: store });
  before.join("project:1");
  await until(() => server.sockets.length === 1, "a socket");
  let ws = server.last();
  ws.hello();
  ws.answerJoins({ lastId: "3-0" });
  ws.answerJoins({ lastId: "3-0" });
  ws.push({ type: "message", room: "project:1", id: "8-0", data: {} });
  await Promise.resolve();
  before.close();
  assert.deepEqual(JSON.parse(storage.get("roomcast:resume")), { "user:7": "3-0", "project:1": "8-0" });

  const after = client(server, { resumeStorage: store }); // the reloaded page
  after.join("project:1");
  await until(() => server.sockets.length === 2, "a socket");
  ws = server.last();
  ws.hello();
  ws.answerJoins({ lastId: "9-0", recovered: true });
  ws.answerJoins({ lastId: "9-0", recovered: true });
  const since = Object.fromEntries(ws.of("join_room").map((f) => [f.room, f.data?.since]));
  assert.deepEqual(since, { "user:7": "3-0", "project:1": "8-0" });
  after.close();
});

test("refreshes the session before the token expires, with the token function's next token", async () => {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  let issued = 0;
  const mint = () => `${b64({ alg: "HS256" })}.${b64({ sub: "7", exp: Math.floor(Date.now() / 1000) + 2, n: ++issued })}.sig`;
  const server = scriptedServer();
  const c = client(server, { token: mint });
  c.connect();
  await until(() => server.sockets.length === 1, "a socket");
  const ws = server.last();
  ws.hello();
  ws.answerJoins();
  await until(() => ws.of("refresh").length === 1, "a refresh before exp", 3000);
  const [refresh] = ws.of("refresh");
  assert.equal(refresh.data.token.split(".").length, 3);
  assert.notEqual(refresh.data.token, ws.protocols[1]); // the next token, not the one in use
  ws.push({ type: "refreshed", ref: refresh.ref, data: { expires_at: 0 } });
  assert.equal(server.sockets.length, 1);
  c.close();
});
