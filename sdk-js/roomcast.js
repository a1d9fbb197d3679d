/**
 * roomcast.js: the browser client for roomcast (https://github.com/ - see docs/client-js.md).
 *
 * One ES module, no build step, no dependencies. It keeps one logical
 * connection alive across reconnects: full-jitter backoff over a list of
 * gateway URLs, rejoins every room from the last stream id it saw, drops
 * duplicates by id, answers the server's heartbeat interval with pings, and
 * queues requests made while offline (sends carry an idempotency key, so a
 * resend publishes once).
 *
 * The pure parts (stream ids, backoff, pacer, room tracker, request book,
 * resume store) come first and do no I/O: they are exported for the unit
 * tests (`node --test`) and hold every decision; `RoomcastClient` at the end
 * wires them to a WebSocket and timers.
 *
 * @module roomcast
 */

export const VERSION = "0.1.0";
export const DEFAULT_PATH = "/api/v1/ws/connect";

// ---------------------------------------------------------------- errors --

/** Codes below 1000 are the SDK's own; others are the server's (4400, 4403, ...) or close codes. */
export const ClientCode = Object.freeze({
  TIMEOUT: 1, // no reply in time
  QUEUE_FULL: 2, // the offline queue is at its bound
  ABORTED: 3, // the caller's AbortSignal withdrew an unsent request
  TOKEN: 4, // the token function failed or returned nothing
});

/** The server answered a request with an `error` frame, or the SDK failed it (see ClientCode). */
export class RoomcastError extends Error {
  /**
   * @param {number} code
   * @param {string} message
   */
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.name = "RoomcastError";
    /** @type {number} */
    this.code = code;
    /** @type {string} */
    this.reason = message;
  }
}

/** The client stopped for good; `code` is the close code (1000 after close(), 4401/4403 on a refused token). */
export class ClientClosedError extends RoomcastError {
  constructor(code, message) {
    super(code, message);
    this.name = "ClientClosedError";
  }
}

/** A request sent to the server got no reply within its timeout. */
export class RequestTimeoutError extends RoomcastError {
  constructor(message) {
    super(ClientCode.TIMEOUT, message);
    this.name = "RequestTimeoutError";
  }
}

/** The offline queue holds `maxQueued` requests already; nothing was queued. */
export class QueueFullError extends RoomcastError {
  constructor(limit) {
    super(ClientCode.QUEUE_FULL, `offline queue full (${limit} requests waiting)`);
    this.name = "QueueFullError";
  }
}

// ------------------------------------------------------------ stream ids --

const STREAM_ID = /^(\d+)(?:-(\d+))?$/;

/**
 * Parse a stream id "<ms>-<seq>" (a bare "<ms>" means seq 0, as Redis reads it).
 * Ids are opaque to apps, but order matters for dedupe: as strings "9-0" > "10-0".
 * @param {unknown} text
 * @returns {[bigint, bigint] | null} null for anything that is not an id
 */
export function parseStreamId(text) {
  if (typeof text !== "string") return null;
  const m = STREAM_ID.exec(text);
  return m ? [BigInt(m[1]), BigInt(m[2] ?? "0")] : null;
}

/** @param {[bigint, bigint]} a @param {[bigint, bigint]} b @returns {number} -1, 0 or 1 */
export function compareStreamIds(a, b) {
  if (a[0] !== b[0]) return a[0] < b[0] ? -1 : 1;
  if (a[1] !== b[1]) return a[1] < b[1] ? -1 : 1;
  return 0;
}

/** @param {[bigint, bigint]} id */
export function formatStreamId(id) {
  return `${id[0]}-${id[1]}`;
}

// --------------------------------------------------------------- backoff --

/** The largest delay (ms) for a 0-based attempt: min(cap, base * 2**attempt). */
export function backoffCeiling(attempt, base, cap) {
  if (!(attempt >= 0)) throw new RangeError("attempt must be >= 0");
  return Math.min(cap, base * 2 ** Math.min(attempt, 64));
}

/**
 * Full jitter: a delay drawn uniformly from [0, ceiling]. Thousands of clients
 * that lost the same gateway spread over the whole window instead of coming
 * back in synchronized waves.
 * @param {number} attempt @param {() => number} random @param {number} base @param {number} cap
 */
export function fullJitter(attempt, random, base, cap) {
  return random() * backoffCeiling(attempt, base, cap);
}

/** Counts consecutive failures and turns them into reconnect delays (ms). */
export class Backoff {
  /**
   * @param {{base?: number, cap?: number, restartJitter?: number, random?: () => number}} [options]
   */
  constructor({ base = 200, cap = 10000, restartJitter = 500, random = Math.random } = {}) {
    if (!(base > 0) || !(cap >= base) || !(restartJitter >= 0)) {
      throw new RangeError("roomcast: backoff needs 0 < base <= cap and restartJitter >= 0");
    }
    this.base = base;
    this.cap = cap;
    this.restartJitter = restartJitter;
    this.random = random;
    this.attempt = 0;
  }

  /** The delay before the next attempt after a failure; counts the failure. */
  next() {
    return fullJitter(this.attempt++, this.random, this.base, this.cap);
  }

  /** 1012 (restart) / 1013 (slow consumer): the server asks us back now; a little jitter only. */
  restart() {
    this.reset();
    return this.random() * this.restartJitter;
  }

  /**
   * 4429: the user holds too many connections over all gateways; a slot frees
   * only when one closes (or a dead gateway's slots expire), so retrying soon
   * cannot help. Waits between cap/2 and cap, and keeps the ceiling at cap.
   */
  tooMany() {
    this.attempt = Math.max(this.attempt, Math.ceil(Math.log2(this.cap / this.base)) + 1);
    return this.cap / 2 + (this.random() * this.cap) / 2;
  }

  /** Forget past failures (a connection got its rooms back). */
  reset() {
    this.attempt = 0;
  }
}

// ----------------------------------------------------------------- pacer --

/**
 * Token bucket for outgoing frames. The gateway answers bursts past
 * WS_RATE_LIMIT/WS_RATE_BURST (20/s, 40) with 4429 errors, and rejoining many
 * rooms plus flushing the offline queue after a reconnect is such a burst.
 */
export class Pacer {
  /** @param {number} rate per second @param {number} burst @param {() => number} [now] ms clock */
  constructor(rate, burst, now = () => performance.now()) {
    if (!(rate > 0) || !(burst >= 1)) throw new RangeError("roomcast: pacing needs rate > 0 and burst >= 1");
    this.rate = rate;
    this.burst = burst;
    this._now = now;
    this._tokens = burst;
    this._updated = now();
  }

  /** Take one slot; returns how long (ms) to wait before using it (0: now). */
  reserve() {
    const now = this._now();
    this._tokens = Math.min(this.burst, this._tokens + ((now - this._updated) / 1000) * this.rate);
    this._updated = now;
    this._tokens -= 1;
    // A negative balance is a queue of reservations, each waiting its turn.
    return this._tokens >= 0 ? 0 : (-this._tokens / this.rate) * 1000;
  }
}

// ---------------------------------------------------------- room tracker --

/**
 * Which rooms the app wants to be in, and where to resume each one. Pure:
 * the client asks it on every room event (dedupe) and on every rejoin.
 */
export class RoomTracker {
  constructor() {
    /** @type {Map<string, {lastSeen: [bigint, bigint] | null, joinLastId: string | null, since: string | null, joined: boolean}>} */
    this._rooms = new Map();
  }

  /** @param {string} room */
  has(room) {
    return this._rooms.has(room);
  }

  /** Rooms the client is in or will rejoin. */
  get rooms() {
    return [...this._rooms.keys()];
  }

  /** @param {string} room */
  _state(room) {
    let state = this._rooms.get(room);
    if (!state) {
      state = { lastSeen: null, joinLastId: null, since: null, joined: false };
      this._rooms.set(room, state);
    }
    return state;
  }

  /**
   * Remember the room for rejoins. An explicit `since` asks for a replay after
   * that id, so events after it pass the duplicate check again.
   * @param {string} room @param {string | null} [since]
   */
  want(room, since = null) {
    const state = this._state(room);
    if (since != null) {
      state.since = since;
      state.lastSeen = parseStreamId(since);
    }
  }

  /** The room was left (by the app or the server): never rejoin it. @param {string} room */
  forget(room) {
    this._rooms.delete(room);
  }

  /** A join was refused: stop tracking the room unless we are in it already. @param {string} room */
  joinFailed(room) {
    const state = this._rooms.get(room);
    if (state && !state.joined) this._rooms.delete(room);
  }

  connectionLost() {
    for (const state of this._rooms.values()) state.joined = false;
  }

  /** The server put us in `room` at connect (user:<id>); true if it is new to us. @param {string} room */
  autoJoined(room) {
    const isNew = !this._rooms.has(room);
    this._state(room).joined = true;
    return isNew;
  }

  /** The `since` for the next join of `room`, or null for a plain join. @param {string} room */
  resumePoint(room) {
    const state = this._rooms.get(room);
    if (!state) return null;
    if (state.since != null) return state.since;
    if (state.lastSeen) return formatStreamId(state.lastSeen);
    return state.joinLastId;
  }

  /**
   * Record a room_joined reply.
   * @param {string} room @param {unknown} lastId @param {unknown} recovered
   */
  joined(room, lastId, recovered) {
    const state = this._state(room);
    state.joined = true;
    state.since = null;
    const head = parseStreamId(lastId);
    if (!head) return;
    if (state.joinLastId == null) state.joinLastId = /** @type {string} */ (lastId);
    if (recovered === false) {
      // No replay comes and the app refetches: the room's head is the new
      // baseline; nothing at or before it will be sent live on this connection.
      if (!state.lastSeen || compareStreamIds(head, state.lastSeen) > 0) state.lastSeen = head;
      state.joinLastId = /** @type {string} */ (lastId);
    }
  }

  /**
   * True if the event is new for the room (and remember it); false for a duplicate.
   * Events of untracked rooms and unparsable ids pass: dropping them would lose
   * data to guard against a mere duplicate.
   * @param {string} room @param {string} eventId
   */
  accept(room, eventId) {
    const state = this._rooms.get(room);
    const id = parseStreamId(eventId);
    if (!state || !id) return true;
    if (state.lastSeen && compareStreamIds(id, state.lastSeen) <= 0) return false;
    state.lastSeen = id;
    return true;
  }

  /** Every room's resume point, for the resume store. @returns {Record<string, string>} */
  snapshot() {
    /** @type {Record<string, string>} */
    const out = {};
    for (const room of this._rooms.keys()) {
      const point = this.resumePoint(room);
      if (point != null) out[room] = point;
    }
    return out;
  }
}

// --------------------------------------------------------- request book --

let keyCounter = 0;

/** A fresh idempotency key: 32 hex characters (crypto.getRandomValues works on plain http too). */
export function newKey() {
  const c = globalThis.crypto;
  if (c && typeof c.getRandomValues === "function") {
    return Array.from(c.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
  }
  keyCounter += 1;
  return `${Date.now().toString(36)}-${keyCounter}-${Math.random().toString(36).slice(2)}`;
}

export const KEY_PATTERN = /^[A-Za-z0-9_.:-]{1,64}$/;

/** One request that expects a reply. Settled once: by the reply, an error, a timeout or close. */
export class Request {
  /**
   * @param {number} seq @param {string} kind @param {string | null} room
   * @param {Record<string, unknown> | null} data @param {(frame: any) => any} parse
   */
  constructor(seq, kind, room, data, parse) {
    this.seq = seq;
    this.ref = String(seq);
    this.kind = kind;
    this.room = room;
    this.data = data;
    this.done = false;
    this._parse = parse;
    /** @type {(value: any) => void} */
    this._resolve = () => {};
    /** @type {(error: Error) => void} */
    this._reject = () => {};
    this.promise = new Promise((resolve, reject) => {
      this._resolve = resolve;
      this._reject = reject;
    });
    // Fire-and-forget requests are fine: an unobserved failure is not an "unhandled rejection".
    this.promise.catch(() => {});
  }

  /** The frame to send; `data` copied because the sender may add `since`. */
  frame() {
    /** @type {Record<string, unknown>} */
    const out = { type: this.kind, ref: this.ref };
    if (this.room != null) out.room = this.room;
    if (this.data != null) out.data = { ...this.data };
    return out;
  }

  /** Settle with the server's reply (an `error` frame rejects). @param {any} frame */
  settle(frame) {
    if (this.done) return;
    if (frame && frame.type === "error") {
      const data = frame.data && typeof frame.data === "object" ? frame.data : {};
      this.fail(new RoomcastError(Number.isInteger(data.code) ? data.code : 0, String(data.error ?? "unknown error")));
      return;
    }
    let value;
    try {
      value = this._parse(frame);
    } catch (error) {
      this.fail(error instanceof Error ? error : new Error(String(error)));
      return;
    }
    this.done = true;
    this._resolve(value);
  }

  /** @param {Error} error */
  fail(error) {
    if (this.done) return;
    this.done = true;
    this._reject(error);
  }
}

/**
 * The outbox (requests not sent yet, bounded) and the requests in flight (sent,
 * awaiting a reply, matched by `ref`). Requests unanswered when a connection
 * drops go back to the front of the outbox: at-least-once, which is why sends
 * carry an idempotency key.
 */
export class RequestBook {
  /** @param {number} [limit] the most requests the outbox holds */
  constructor(limit = 500) {
    if (!(limit >= 1)) throw new RangeError("roomcast: maxQueued must be >= 1");
    this.limit = limit;
    /** @type {Request[]} */
    this._outbox = [];
    /** @type {Map<string, Request>} */
    this._inFlight = new Map();
  }

  get queued() {
    return this._outbox.length;
  }

  get inFlight() {
    return this._inFlight.size;
  }

  /** @param {Request} request @throws {QueueFullError} */
  submit(request) {
    if (this._outbox.length >= this.limit) throw new QueueFullError(this.limit);
    this._outbox.push(request);
  }

  /** Take an unsent request out (AbortSignal). @param {Request} request */
  withdraw(request) {
    const i = this._outbox.indexOf(request);
    if (i < 0) return false;
    this._outbox.splice(i, 1);
    return true;
  }

  /** The oldest unsent request still wanted, removed from the outbox. */
  next() {
    while (this._outbox.length) {
      const request = /** @type {Request} */ (this._outbox.shift());
      if (!request.done) return request;
    }
    return undefined;
  }

  /** @param {Request} request */
  markSent(request) {
    this._inFlight.set(request.ref, request);
  }

  /** The in-flight request a reply's `ref` answers. @param {unknown} ref */
  popReply(ref) {
    if (typeof ref !== "string" && typeof ref !== "number") return undefined;
    const request = this._inFlight.get(String(ref));
    this._inFlight.delete(String(ref));
    return request;
  }

  /** Fallback for a reply that came without `ref`: the oldest request of that kind (and room). */
  popOldest(kind, room) {
    let oldest;
    for (const request of this._inFlight.values()) {
      if (request.kind === kind && (room == null || request.room === room) && (!oldest || request.seq < oldest.seq)) {
        oldest = request;
      }
    }
    if (oldest) this._inFlight.delete(oldest.ref);
    return oldest;
  }

  /** Connection lost: unanswered requests are resent first, in their order. */
  requeueInFlight() {
    const unanswered = [...this._inFlight.values()].filter((r) => !r.done).sort((a, b) => a.seq - b.seq);
    this._inFlight.clear();
    // Past the bound on purpose: these were accepted already and must not be lost.
    this._outbox.unshift(...unanswered);
  }

  /** Rooms a queued or in-flight join will (re)join by itself. */
  pendingJoinRooms() {
    const rooms = new Set();
    for (const r of [...this._outbox, ...this._inFlight.values()]) {
      if (r.kind === "join_room" && r.room != null && !r.done) rooms.add(r.room);
    }
    return rooms;
  }

  /** @param {Error} error */
  failAll(error) {
    for (const r of [...this._outbox, ...this._inFlight.values()]) r.fail(error);
    this._outbox = [];
    this._inFlight.clear();
  }
}

// ---------------------------------------------------------- resume store --

/**
 * Resume points kept in a Storage (sessionStorage), so a page reload resumes
 * every room it joins again from where the page was. Writes are coalesced to
 * one per microtask: a burst of events costs one write.
 */
export class ResumeStore {
  /** @param {Pick<Storage, "getItem" | "setItem" | "removeItem">} storage @param {string} key */
  constructor(storage, key) {
    this.storage = storage;
    this.key = key;
    this._pending = null;
  }

  /** @returns {Record<string, string>} */
  load() {
    try {
      const value = JSON.parse(this.storage.getItem(this.key) ?? "{}");
      if (!value || typeof value !== "object" || Array.isArray(value)) return {};
      return Object.fromEntries(Object.entries(value).filter(([, id]) => parseStreamId(id) !== null));
    } catch {
      return {}; // unreadable or corrupt: resume nothing rather than fail
    }
  }

  /** @param {() => Record<string, string>} snapshot called when the write happens */
  save(snapshot) {
    const first = this._pending === null;
    this._pending = snapshot;
    if (!first) return;
    queueMicrotask(() => {
      const take = this._pending;
      this._pending = null;
      try {
        if (take) this.storage.setItem(this.key, JSON.stringify(take()));
      } catch {
        // Quota or privacy mode: resuming after a reload is best effort.
      }
    });
  }

  clear() {
    try {
      this.storage.removeItem(this.key);
    } catch {
      /* best effort */
    }
  }
}

// --------------------------------------------------------------- helpers --

/**
 * Check a URL early (a bad one is a bug, not a reason to retry); http(s) maps to ws(s)
 * and an empty path becomes /api/v1/ws/connect.
 * @param {string} url
 */
export function websocketUrl(url) {
  let parsed;
  try {
    parsed = new URL(url);
  } catch {
    throw new TypeError(`roomcast: URL must look like ws://HOST[:PORT][/path], got ${JSON.stringify(url)}`);
  }
  const scheme = { "http:": "ws:", "https:": "wss:" }[parsed.protocol] ?? parsed.protocol;
  if ((scheme !== "ws:" && scheme !== "wss:") || !parsed.host) {
    throw new TypeError(`roomcast: URL must look like ws://HOST[:PORT][/path], got ${JSON.stringify(url)}`);
  }
  parsed.protocol = scheme;
  if (parsed.pathname === "" || parsed.pathname === "/") parsed.pathname = DEFAULT_PATH;
  parsed.searchParams.delete("token");
  parsed.hash = "";
  return parsed.toString();
}

/**
 * The `exp` claim of a JWT, in ms, or null (not a JWT, no exp). Read without
 * checking the signature: only to know when to refresh.
 * @param {string} token
 */
export function tokenExpiry(token) {
  const part = token.split(".")[1];
  if (!part) return null;
  try {
    const b64 = part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "=");
    const claims = JSON.parse(atob(b64));
    return typeof claims.exp === "number" ? claims.exp * 1000 : null;
  } catch {
    return null;
  }
}

/**
 * When to refresh a token (ms from now): before `exp` by 30 s, or by a quarter
 * of what is left for short tokens. `skew` = server clock minus ours.
 * @param {number} expiresAt ms @param {number} now ms @param {number} [skew]
 */
export function refreshDelay(expiresAt, now, skew = 0) {
  const left = expiresAt - (now + skew);
  return Math.max(0, left - Math.min(30000, left / 4));
}

const AUTH_CLOSE_CODES = new Set([4401, 4403]);
const RESTART_CLOSE_CODES = new Set([1012, 1013]);
// Refusals of a rejoin that asking again cannot change; others (4500) are retried.
const JOIN_REFUSAL_CODES = new Set([4400, 4403, 4429]);
// Replies that may be matched by kind and room if the server left out `ref`.
const REPLY_TO_REQUEST = {
  room_joined: "join_room",
  room_left: "leave_room",
  ack: "send_message",
  pong: "ping",
  presence: "presence",
  refreshed: "refresh",
};
const ABNORMAL = 1006;

const dataOf = (frame) => (frame && frame.data && typeof frame.data === "object" ? frame.data : {});
const roomOf = (frame) =>
  typeof frame.room === "string" ? frame.room : typeof dataOf(frame).room === "string" ? dataOf(frame).room : null;

function parseJoined(frame) {
  const d = dataOf(frame);
  return {
    room: roomOf(frame),
    lastId: typeof d.last_id === "string" ? d.last_id : null,
    recovered: typeof d.recovered === "boolean" ? d.recovered : null,
    replayed: Number.isInteger(d.replayed) ? d.replayed : null,
  };
}

function parseAck(frame) {
  const d = dataOf(frame);
  return { key: typeof d.key === "string" ? d.key : null, messageId: typeof d.message_id === "string" ? d.message_id : null };
}

function parsePresence(frame) {
  const users = dataOf(frame).users;
  if (!Array.isArray(users)) return [];
  return users
    .filter((u) => u && Number.isInteger(u.user_id) && typeof u.username === "string")
    .map((u) => ({ userId: u.user_id, username: u.username }));
}

const parseNothing = () => undefined;

function report(error) {
  if (typeof globalThis.reportError === "function") globalThis.reportError(error);
  else console.error("roomcast: event callback failed", error);
}

// ---------------------------------------------------------------- events --

/** An async iterator of events; unbounded so the reader never waits for the app. */
class EventStream {
  /** @param {() => void} onClose */
  constructor(onClose) {
    this._items = [];
    this._waiters = [];
    this._ended = false;
    this._onClose = onClose;
  }

  _push(event) {
    if (this._ended) return;
    const waiter = this._waiters.shift();
    if (waiter) waiter({ value: event, done: false });
    else this._items.push(event);
  }

  _end() {
    if (this._ended) return;
    this._ended = true;
    for (const waiter of this._waiters.splice(0)) waiter({ value: undefined, done: true });
  }

  next() {
    if (this._items.length) return Promise.resolve({ value: this._items.shift(), done: false });
    if (this._ended) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => this._waiters.push(resolve));
  }

  /** `break` out of a for-await loop lands here: stop listening. */
  return() {
    this._items = [];
    this._end();
    this._onClose();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator]() {
    return this;
  }
}

/** Callbacks by type ("*" for all) and async iterators, for the client and for each room. */
class Emitter {
  constructor() {
    /** @type {Map<string, Set<Function>>} */
    this._callbacks = new Map();
    /** @type {Set<EventStream>} */
    this._streams = new Set();
    this._ended = false;
  }

  on(type, callback) {
    if (typeof type !== "string" || typeof callback !== "function") {
      throw new TypeError("roomcast: on(type, callback) needs an event type string and a function");
    }
    if (!this._callbacks.has(type)) this._callbacks.set(type, new Set());
    this._callbacks.get(type).add(callback);
    return () => this.off(type, callback);
  }

  off(type, callback) {
    this._callbacks.get(type)?.delete(callback);
  }

  stream() {
    const stream = new EventStream(() => this._streams.delete(stream));
    if (this._ended) stream._end();
    else this._streams.add(stream);
    return stream;
  }

  emit(event) {
    for (const stream of this._streams) stream._push(event);
    for (const type of [event.type, "*"]) {
      for (const callback of [...(this._callbacks.get(type) ?? [])]) {
        try {
          callback(event);
        } catch (error) {
          report(error); // one app handler's bug must not stop delivery
        }
      }
    }
  }

  end() {
    this._ended = true;
    for (const stream of this._streams) stream._end();
    this._streams.clear();
  }
}

/** A room of one client: its events (callbacks or `for await`) and its commands. */
export class Room {
  /** @param {RoomcastClient} client @param {string} name */
  constructor(client, name) {
    this.client = client;
    this.name = name;
    this._emitter = new Emitter();
  }

  /** The last event id seen in this room (where a rejoin resumes), or null. */
  get lastId() {
    return this.client._tracker.resumePoint(this.name);
  }

  on(type, callback) {
    return this._emitter.on(type, callback);
  }

  off(type, callback) {
    this._emitter.off(type, callback);
  }

  /** Events of this room from now on, room events and the client's own (not_recovered, ...). */
  events() {
    return this._emitter.stream();
  }

  [Symbol.asyncIterator]() {
    return this.events();
  }

  join(options) {
    return this.client.join(this.name, options);
  }

  leave(options) {
    return this.client.leave(this.name, options);
  }

  send(content, options) {
    return this.client.send(this.name, content, options);
  }

  presence(options) {
    return this.client.presence(this.name, options);
  }
}

// ---------------------------------------------------------------- client --

/**
 * One logical connection to roomcast that survives reconnects.
 *
 * ```js
 * const client = new RoomcastClient(["wss://a.example", "wss://b.example"], { token: getToken });
 * client.room("project:1").on("task.created", (e) => render(e.data));
 * await client.join("project:1");
 * ```
 */
export class RoomcastClient {
  /**
   * @param {string | string[]} urls one gateway URL or several (failover, round-robin)
   * @param {import("./roomcast").ClientOptions} options
   */
  constructor(urls, options) {
    const list = Array.isArray(urls) ? urls : [urls];
    if (list.length === 0) throw new TypeError("roomcast: needs at least one gateway URL");
    if (!options || (typeof options.token !== "string" && typeof options.token !== "function")) {
      throw new TypeError("roomcast: options.token must be a JWT string or a function returning one");
    }
    if (typeof options.token === "string" && options.token.trim() === "") {
      throw new TypeError("roomcast: options.token is empty");
    }
    const tokenIn = options.tokenIn ?? "protocol";
    if (tokenIn !== "protocol" && tokenIn !== "query") {
      throw new TypeError(`roomcast: options.tokenIn must be "protocol" or "query", got ${JSON.stringify(tokenIn)}`);
    }
    const WebSocketImpl = options.WebSocket ?? globalThis.WebSocket;
    if (typeof WebSocketImpl !== "function") {
      throw new TypeError("roomcast: no WebSocket here; pass options.WebSocket");
    }
    this._urls = list.map(websocketUrl);
    this._urlIndex = 0;
    this._tokenSource = options.token;
    this._tokenIn = tokenIn;
    this._WebSocket = WebSocketImpl;
    this._backoff = new Backoff(options.backoff ?? {});
    this._requestTimeout = options.requestTimeout ?? 10000;
    this._openTimeout = options.openTimeout ?? 10000;
    this._heartbeat = options.heartbeat ?? true;
    this._autoRefresh = options.refresh ?? true;
    const rate = options.sendRate === undefined ? 18 : options.sendRate;
    // Defaults sit under the server's WS_RATE_LIMIT/WS_RATE_BURST (20/s, 40).
    this._pacer = rate ? new Pacer(rate, options.sendBurst ?? 30) : null;
    this._tracker = new RoomTracker();
    this._book = new RequestBook(options.maxQueued ?? 500);
    this._emitter = new Emitter();
    /** @type {Map<string, Room>} */
    this._rooms = new Map();
    this._seq = 0;
    this._state = "idle";
    this._ws = null;
    this._token = null;
    /** @type {Map<string, (frame: any) => void>} replies to the client's own frames */
    this._internal = new Map();
    this._timers = new Set();
    this._retryTimer = null;
    this._pumpTimer = null;
    this._everConnected = false;
    this._skew = 0;
    this._final = null;
    this._readyWaiters = [];
    this._store = null;
    this._stored = {};
    const storage = options.resumeStorage === "session" ? globalThis.sessionStorage : options.resumeStorage;
    if (options.resumeStorage === "session" && !storage) {
      throw new TypeError('roomcast: resumeStorage "session" needs sessionStorage (a browser page)');
    }
    if (storage) {
      this._store = new ResumeStore(storage, options.storageKey ?? "roomcast:resume");
      this._stored = this._store.load();
    }
    this._onOnline = () => {
      if (this._retryTimer !== null) this._retryNow();
    };
  }

  // -- lifecycle --------------------------------------------------------------

  /** "idle" | "connecting" | "resuming" | "open" | "closed" */
  get state() {
    return this._state;
  }

  /** The URL the current (or next) connection uses. */
  get url() {
    return this._urls[this._urlIndex];
  }

  /** Rooms the client is in or will rejoin after a reconnect. */
  get rooms() {
    return this._tracker.rooms;
  }

  /** Start connecting (idempotent). Returns the client, for chaining. */
  connect() {
    if (this._state === "idle") {
      this._state = "connecting";
      globalThis.addEventListener?.("online", this._onOnline);
      this._attempt();
    }
    return this;
  }

  /** Resolves once connected with every room rejoined; rejects with ClientClosedError if it never will be. */
  ready() {
    this.connect();
    if (this._state === "open") return Promise.resolve();
    if (this._final) return Promise.reject(this._closedError());
    return new Promise((resolve, reject) => this._readyWaiters.push({ resolve, reject }));
  }

  /** Close for good; requests still waiting fail with ClientClosedError(1000). */
  close() {
    if (this._state === "closed") return;
    const ws = this._ws;
    this._detach();
    if (ws) {
      try {
        ws.close(1000, "client closed");
      } catch {
        /* already closing */
      }
    }
    this._emit({ type: "disconnected", code: 1000, reason: "client closed", willReconnect: false, url: this.url });
    this._finish(1000, "client closed");
  }

  // -- events -------------------------------------------------------------------

  /**
   * Call `callback` for each event of `type`: a room event type ("message",
   * "task.created", ...), one of the client's own ("connected", "disconnected",
   * "recovered", "not_recovered", "resync_required", "room_left", "error"), or "*".
   * Returns a function that unsubscribes.
   */
  on(type, callback) {
    return this._emitter.on(type, callback);
  }

  off(type, callback) {
    this._emitter.off(type, callback);
  }

  /** Every event from now on, as an async iterator; ends when the client closes. */
  events() {
    return this._emitter.stream();
  }

  /** The handle of one room (created on first use; joining is separate). @param {string} name */
  room(name) {
    if (typeof name !== "string" || !name) throw new TypeError("roomcast: room(name) needs a room name like \"project:1\"");
    let room = this._rooms.get(name);
    if (!room) {
      room = new Room(this, name);
      this._rooms.set(name, room);
    }
    return room;
  }

  // -- commands -------------------------------------------------------------------

  /**
   * Join `room`, and rejoin it after every reconnect until left. `since` replays
   * the events after that id; without it the client resumes from what it saw
   * (or from the resume store after a page reload).
   */
  join(room, { since, timeout, signal } = {}) {
    checkRoom("join", room);
    if (since != null && typeof since !== "string") throw new TypeError("roomcast: join(room, {since}): since must be a stream id string");
    return this._submit("join_room", room, null, parseJoined, timeout, signal, () => {
      this._tracker.want(room, since ?? this._stored[room] ?? null);
      delete this._stored[room]; // used once: from now on the tracker knows better
    });
  }

  /** Leave `room` (idempotent); it is not rejoined after this. */
  leave(room, { timeout, signal } = {}) {
    checkRoom("leave", room);
    // Forgotten at once: a reconnect before the reply must not rejoin it.
    this._tracker.forget(room);
    this._persist();
    return this._submit("leave_room", room, null, parseNothing, timeout, signal);
  }

  /**
   * Send a chat message. It always carries an idempotency key (a fresh one
   * unless given), kept when it is resent after a reconnect, so the server
   * publishes it once. Resolves with `{key, messageId}` from the `ack`.
   */
  send(room, content, { key, timeout, signal } = {}) {
    checkRoom("send", room);
    if (typeof content !== "string" || content.length === 0) {
      throw new TypeError("roomcast: send(room, content): content must be a non-empty string");
    }
    if (key != null && !(typeof key === "string" && KEY_PATTERN.test(key))) {
      throw new TypeError("roomcast: send(..., {key}): key must be 1-64 characters of A-Z a-z 0-9 _ . : -");
    }
    return this._submit("send_message", room, { content, key: key ?? newKey() }, parseAck, timeout, signal);
  }

  /** Users connected to `room` on any gateway (members only): `[{userId, username}]`. */
  presence(room, { timeout, signal } = {}) {
    checkRoom("presence", room);
    return this._submit("presence", room, null, parsePresence, timeout, signal);
  }

  /** A round trip to the gateway. */
  ping({ timeout, signal } = {}) {
    return this._submit("ping", null, null, parseNothing, timeout, signal);
  }

  /**
   * Hand the server a new token before the current one expires. With a token
   * function the client does this by itself; with a fixed token string, the
   * new token also replaces it for the next reconnect.
   */
  refresh(token, { timeout, signal } = {}) {
    if (typeof token !== "string" || !token) throw new TypeError("roomcast: refresh(token): token must be a JWT string");
    if (typeof this._tokenSource === "string") this._tokenSource = token;
    const request = this._submit("refresh", null, { token }, (frame) => dataOf(frame).expires_at ?? null, timeout, signal);
    return request.then((expiresAt) => {
      this._token = token;
      this._scheduleRefresh();
      return expiresAt;
    });
  }

  /** Queue a request; `accepted` runs once it is in the outbox, before anything is sent. */
  _submit(kind, room, data, parse, timeout, signal, accepted) {
    if (this._state === "closed") return Promise.reject(this._closedError());
    if (signal?.aborted) return Promise.reject(abortError(signal));
    const request = new Request(++this._seq, kind, room, data, parse);
    request.timeout = timeout ?? this._requestTimeout;
    try {
      this._book.submit(request);
    } catch (error) {
      return Promise.reject(error);
    }
    accepted?.();
    signal?.addEventListener("abort", () => {
      if (this._book.withdraw(request)) request.fail(abortError(signal));
    }, { once: true });
    if (this._state === "idle") this.connect();
    this._pump();
    return request.promise;
  }

  // -- connection loop ------------------------------------------------------------

  async _attempt() {
    this._retryTimer = null;
    let token;
    try {
      token = await this._fetchToken();
    } catch (error) {
      if (this._state === "closed") return;
      this._emit({ type: "error", code: ClientCode.TOKEN, message: `token function failed: ${error?.message ?? error}`, room: null });
      this._scheduleRetry(ABNORMAL, "token function failed", this._backoff.next());
      return;
    }
    if (this._state === "closed") return;
    this._open(token);
  }

  async _fetchToken() {
    const source = this._tokenSource;
    const token = typeof source === "function" ? await source() : source;
    if (typeof token !== "string" || !token) throw new Error("the token function returned no token");
    return token;
  }

  _open(token) {
    this._state = "connecting";
    this._token = token;
    const url = this.url;
    let ws;
    try {
      ws = this._tokenIn === "query"
        ? new this._WebSocket(`${url}${url.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}`)
        : new this._WebSocket(url, ["bearer", token]);
    } catch (error) {
      // The constructor throws on a token no subprotocol can carry: that is the app's bug.
      const reason = `cannot open a WebSocket with this token (${error?.message ?? error}); tokenIn: "query" sends it in the URL instead`;
      this._emit({ type: "error", code: ClientCode.TOKEN, message: reason, room: null });
      this._emit({ type: "disconnected", code: 4401, reason, willReconnect: false, url });
      this._finish(4401, reason);
      return;
    }
    this._ws = ws;
    this._welcomed = false;
    ws.onmessage = (ev) => this._onMessage(ws, ev.data);
    ws.onclose = (ev) => {
      if (this._ws === ws) this._onClosed(ev.code || ABNORMAL, ev.reason || "");
    };
    ws.onerror = () => {}; // the close event that follows says what happened
    this._later(() => {
      if (this._ws === ws && !this._welcomed) this._abandon("no connected frame in time");
    }, this._openTimeout);
  }

  /** Forget the socket: no more of its events reach us, its timers stop. */
  _detach() {
    const ws = this._ws;
    this._ws = null;
    if (ws) {
      ws.onmessage = ws.onclose = ws.onerror = null;
    }
    for (const timer of this._timers) clearTimeout(timer);
    this._timers.clear();
    if (this._pumpTimer !== null) clearTimeout(this._pumpTimer);
    this._pumpTimer = null;
    this._internal.clear();
    this._tracker.connectionLost();
    this._book.requeueInFlight();
    return ws;
  }

  /** Treat the connection as dead now (a dead peer never answers a close handshake). */
  _abandon(reason) {
    const ws = this._detach();
    try {
      ws?.close(4000, reason.slice(0, 100));
    } catch {
      /* already closed */
    }
    this._afterClose(ABNORMAL, reason);
  }

  _onClosed(code, reason) {
    this._detach();
    this._afterClose(code, reason);
  }

  async _afterClose(code, reason) {
    if (this._state === "closed") return;
    this._state = "connecting";
    const used = this._token;
    const url = this.url;
    this._urlIndex = (this._urlIndex + 1) % this._urls.length; // fail over to the next URL
    let delay;
    if (AUTH_CLOSE_CODES.has(code)) {
      // Only a different token can change the answer.
      let fresh = null;
      if (typeof this._tokenSource === "function") {
        try {
          fresh = await this._fetchToken();
        } catch {
          fresh = null;
        }
      }
      if (this._state === "closed") return;
      if (!fresh || fresh === used) {
        this._emit({ type: "disconnected", code, reason, willReconnect: false, url });
        this._finish(code, reason);
        return;
      }
      delay = this._backoff.next();
    } else if (code === 4429) {
      delay = this._backoff.tooMany();
    } else if (RESTART_CLOSE_CODES.has(code)) {
      delay = this._backoff.restart();
    } else {
      delay = this._backoff.next();
    }
    this._scheduleRetry(code, reason, delay, url);
  }

  _scheduleRetry(code, reason, delay, url = this.url) {
    this._emit({ type: "disconnected", code, reason, willReconnect: true, delay: Math.round(delay), url });
    this._retryTimer = setTimeout(() => this._attempt(), delay);
  }

  _retryNow() {
    clearTimeout(this._retryTimer);
    this._attempt();
  }

  _finish(code, reason) {
    this._state = "closed";
    this._final = { code, reason };
    if (this._retryTimer !== null) clearTimeout(this._retryTimer);
    this._retryTimer = null;
    clearTimeout(this._refreshTimer);
    globalThis.removeEventListener?.("online", this._onOnline);
    const error = this._closedError();
    this._book.failAll(error);
    for (const waiter of this._readyWaiters.splice(0)) waiter.reject(error);
    this._emitter.end();
    for (const room of this._rooms.values()) room._emitter.end();
  }

  _closedError() {
    const { code, reason } = this._final ?? { code: 1000, reason: "client closed" };
    return new ClientClosedError(code, reason);
  }

  /** A timer that dies with the current connection. */
  _later(fn, ms) {
    const timer = setTimeout(() => {
      this._timers.delete(timer);
      fn();
    }, ms);
    this._timers.add(timer);
    return timer;
  }

  // -- one connection -------------------------------------------------------------

  _onMessage(ws, raw) {
    if (this._ws !== ws) return;
    let frame;
    try {
      frame = typeof raw === "string" ? JSON.parse(raw) : null;
    } catch {
      frame = null;
    }
    if (!frame || typeof frame !== "object" || Array.isArray(frame)) return; // not ours to crash on
    if (!this._welcomed) {
      if (frame.type !== "connected") {
        this._abandon("expected a connected frame");
        return;
      }
      this._welcomed = true;
      this._onWelcome(frame);
      return;
    }
    this._handle(frame);
  }

  _onWelcome(frame) {
    const data = dataOf(frame);
    const rooms = Array.isArray(data.rooms) ? data.rooms.filter((r) => typeof r === "string") : [];
    const interval = typeof data.heartbeat_interval === "number" && data.heartbeat_interval > 0 ? data.heartbeat_interval : 30;
    const serverNow = Date.parse(frame.timestamp ?? "");
    this._skew = Number.isNaN(serverNow) ? 0 : serverNow - Date.now();
    for (const room of rooms) this._tracker.autoJoined(room);
    this._state = "resuming";
    this._emit({
      type: "connected",
      userId: Number.isInteger(data.user_id) ? data.user_id : null,
      username: typeof data.username === "string" ? data.username : null,
      connectionId: typeof data.connection_id === "string" ? data.connection_id : null,
      heartbeatInterval: interval,
      rooms,
      reconnect: this._everConnected,
      url: this.url,
    });
    this._everConnected = true;
    if (this._heartbeat) this._startHeartbeat(interval * 1000);
    this._scheduleRefresh();
    this._rejoin();
  }

  /**
   * Join every room again from its resume point, then open the outbox. Rooms
   * with a join request still queued are left to it, so no room is joined twice
   * in a row. Also joins the server's own rooms (user:<id>) once, to learn the
   * id to resume them from.
   */
  _rejoin() {
    const ws = this._ws;
    const queued = this._book.pendingJoinRooms();
    const rooms = this._tracker.rooms.filter((room) => !queued.has(room));
    let waiting = rooms.length;
    let failed = false;
    const done = () => {
      if (this._ws !== ws || waiting > 0) return;
      if (failed) {
        this._abandon("rejoin failed");
        return;
      }
      // Only a connection that got its rooms back ends the run of failures.
      this._backoff.reset();
      this._state = "open";
      for (const waiter of this._readyWaiters.splice(0)) waiter.resolve();
      this._pump();
    };
    if (waiting === 0) {
      done();
      return;
    }
    for (const room of rooms) {
      const ref = `rejoin-${++this._seq}`;
      /** @type {Record<string, unknown>} */
      const frame = { type: "join_room", room, ref };
      const since = this._tracker.resumePoint(room) ?? this._stored[room];
      if (since != null) frame.data = { since };
      delete this._stored[room];
      this._internal.set(ref, (reply) => {
        if (reply.type === "error") {
          const { code, error } = dataOf(reply);
          this._emit({ type: "error", code, message: String(error ?? ""), room });
          if (JOIN_REFUSAL_CODES.has(code)) {
            // Refused now (e.g. access revoked while offline): stop rejoining it.
            this._tracker.forget(room);
            this._persist();
            this._emit({ type: "room_left", room, reason: "rejoin_failed" });
          } else {
            failed = true; // the server's trouble (4500): keep the room, retry on a new connection
          }
        } else {
          this._onJoined(room, reply);
        }
        waiting -= 1;
        done();
      });
      this._sendNow(frame);
    }
    this._later(() => {
      if (this._ws === ws && this._state === "resuming") this._abandon("rejoin timed out");
    }, this._requestTimeout);
  }

  _onJoined(room, frame) {
    const joined = parseJoined(frame);
    this._tracker.joined(room, joined.lastId, joined.recovered);
    this._persist();
    if (joined.recovered === true) this._emit({ type: "recovered", room, replayed: joined.replayed ?? 0 });
    else if (joined.recovered === false) this._emit({ type: "not_recovered", room, lastId: joined.lastId });
  }

  _startHeartbeat(intervalMs) {
    const ws = this._ws;
    const beat = () => {
      if (this._ws !== ws) return;
      const ref = `hb-${++this._seq}`;
      let answered = false;
      this._internal.set(ref, () => {
        answered = true;
      });
      this._sendNow({ type: "ping", ref });
      // No pong within the next interval: the link is dead even if the socket looks open.
      this._later(() => {
        if (this._ws !== ws) return;
        this._internal.delete(ref);
        if (!answered) this._abandon("heartbeat timeout");
        else beat();
      }, intervalMs);
    };
    this._later(beat, intervalMs);
  }

  _scheduleRefresh() {
    clearTimeout(this._refreshTimer);
    if (!this._autoRefresh || typeof this._tokenSource !== "function" || !this._token) return;
    const expiresAt = tokenExpiry(this._token);
    if (expiresAt === null) return;
    this._refreshTimer = setTimeout(() => this._refreshNow(), refreshDelay(expiresAt, Date.now(), this._skew));
  }

  async _refreshNow() {
    if (this._state !== "open" && this._state !== "resuming") return; // the reconnect fetches a token anyway
    let token;
    try {
      token = await this._fetchToken();
    } catch (error) {
      this._emit({ type: "error", code: ClientCode.TOKEN, message: `token function failed: ${error?.message ?? error}`, room: null });
      token = null;
    }
    if (!token || token === this._token) {
      // Nothing new yet: ask again shortly while the current token lives.
      const expiresAt = tokenExpiry(this._token ?? "") ?? 0;
      if (expiresAt - (Date.now() + this._skew) > 2000) this._refreshTimer = setTimeout(() => this._refreshNow(), 1000);
      return;
    }
    try {
      await this._submit("refresh", null, { token }, parseNothing);
      this._token = token;
    } catch (error) {
      if (this._state === "closed") return;
      this._emit({ type: "error", code: error?.code ?? 0, message: `token refresh refused: ${error?.reason ?? error}`, room: null });
    }
    this._scheduleRefresh();
  }

  /** Send what the outbox holds, paced, once the rooms are back. */
  _pump() {
    if (this._state !== "open" || this._pumpTimer !== null) return;
    while (this._book.queued > 0) {
      const wait = this._pacer ? this._pacer.reserve() : 0;
      if (wait > 0) {
        // The slot is reserved: send the next request when it comes, then go on.
        this._pumpTimer = setTimeout(() => {
          this._pumpTimer = null;
          if (this._state !== "open") return;
          this._sendRequest(this._book.next());
          this._pump();
        }, wait);
        return;
      }
      this._sendRequest(this._book.next());
    }
  }

  /** @param {Request | undefined} request */
  _sendRequest(request) {
    if (!request) return;
    const frame = request.frame();
    if (request.kind === "join_room" && request.room != null) {
      // At send time: events seen since the call move the resume point.
      const since = this._tracker.resumePoint(request.room);
      if (since != null) frame.data = { ...(frame.data ?? {}), since };
    }
    this._book.markSent(request);
    this._later(() => {
      if (this._book.popReply(request.ref)) request.fail(new RequestTimeoutError(`no reply to ${request.kind} in ${request.timeout} ms`));
    }, request.timeout);
    this._ws.send(JSON.stringify(frame));
  }

  /** Internal frames (rejoins, heartbeats) skip the outbox; they still count for the server's rate limit. */
  _sendNow(frame) {
    this._pacer?.reserve();
    this._ws.send(JSON.stringify(frame));
  }

  // -- incoming frames --------------------------------------------------------------

  _handle(frame) {
    const kind = frame.type;
    const ref = frame.ref;
    const room = roomOf(frame);
    if (typeof ref === "string" || typeof ref === "number") {
      const handler = this._internal.get(String(ref));
      if (handler) {
        this._internal.delete(String(ref));
        handler(frame);
        return;
      }
      const request = this._book.popReply(ref);
      if (request) {
        this._settle(request, frame);
        return;
      }
      if (kind !== "error") return; // a late reply to a request that timed out
    }
    if (kind === "error") {
      const { code, error } = dataOf(frame);
      this._emit({ type: "error", code: Number.isInteger(code) ? code : 0, message: String(error ?? ""), room });
    } else if (kind === "resync_required" && room != null) {
      this._emit({ type: "resync_required", room });
    } else if (kind === "room_left" && room != null && !("id" in frame)) {
      const request = this._book.popOldest("leave_room", room);
      if (request) this._settle(request, frame);
      else {
        // The server removed us (e.g. access revoked): never rejoin.
        this._tracker.forget(room);
        this._persist();
        this._emit({ type: "room_left", room, reason: dataOf(frame).reason ?? null });
      }
    } else if (typeof kind === "string" && room != null && typeof frame.id === "string") {
      if (!this._tracker.accept(room, frame.id)) return; // a duplicate (replay overlapping live)
      this._persist();
      this._emit({ type: kind, room, data: dataOf(frame), sender: frame.sender ?? null, timestamp: frame.timestamp ?? null, id: frame.id });
    } else if (typeof kind === "string" && kind in REPLY_TO_REQUEST) {
      const request = this._book.popOldest(REPLY_TO_REQUEST[kind], room);
      if (request) this._settle(request, frame);
    }
  }

  _settle(request, frame) {
    const room = request.room;
    if (frame.type === "error") {
      if (request.kind === "join_room" && room != null) this._tracker.joinFailed(room);
    } else if (request.kind === "join_room" && room != null) {
      this._onJoined(room, frame);
    } else if (request.kind === "leave_room" && room != null) {
      this._tracker.forget(room);
      this._persist();
      this._emit({ type: "room_left", room, reason: dataOf(frame).reason ?? null });
    }
    request.settle(frame);
  }

  _persist() {
    this._store?.save(() => this._tracker.snapshot());
  }

  _emit(event) {
    this._emitter.emit(event);
    const room = event.room != null ? this._rooms.get(event.room) : undefined;
    room?._emitter.emit(event);
  }
}

function checkRoom(command, room) {
  if (typeof room !== "string" || !room) {
    throw new TypeError(`roomcast: ${command}(room): room must be a name like "project:1", got ${JSON.stringify(room)}`);
  }
}

function abortError(signal) {
  const reason = signal.reason instanceof Error ? signal.reason.message : String(signal.reason ?? "aborted");
  return new RoomcastError(ClientCode.ABORTED, `withdrawn before it was sent: ${reason}`);
}
