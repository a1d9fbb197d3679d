// TypeScript declarations for roomcast.js (the browser client for roomcast).

export declare const VERSION: string;
/** The gateway's WebSocket path, added to a URL given without one. */
export declare const DEFAULT_PATH: "/api/v1/ws/connect";
/** What an idempotency key may hold: 1-64 of [A-Za-z0-9_.:-]. */
export declare const KEY_PATTERN: RegExp;

/** Codes below 1000 are the SDK's own. */
export declare const ClientCode: Readonly<{ TIMEOUT: 1; QUEUE_FULL: 2; ABORTED: 3; TOKEN: 4 }>;

/** A request failed: the server's error code (4400, 4403, 4429, 4500), a close code, or a ClientCode. */
export declare class RoomcastError extends Error {
  constructor(code: number, message: string);
  readonly code: number;
  /** The message without the code. */
  readonly reason: string;
}
/** The client stopped for good; `code` is the close code (1000 after close(), 4401/4403 for a refused token). */
export declare class ClientClosedError extends RoomcastError {}
/** A request sent to the server got no reply within its timeout (code ClientCode.TIMEOUT). */
export declare class RequestTimeoutError extends RoomcastError {
  constructor(message: string);
}
/** The offline queue is at its bound (code ClientCode.QUEUE_FULL); nothing was queued. */
export declare class QueueFullError extends RoomcastError {
  constructor(limit: number);
}

/** A JWT, or a function returning one, called before every connection attempt. */
export type TokenSource = string | (() => string | Promise<string>);

/** Something with the Storage methods the resume store uses (sessionStorage fits). */
export interface ResumeStorage {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

export interface BackoffOptions {
  /** First ceiling of the reconnect delay, ms (default 200). */
  base?: number;
  /** Largest reconnect delay, ms (default 10000); after a 4429 the delay is between cap/2 and cap. */
  cap?: number;
  /** Largest delay after 1012/1013 (server restart, slow consumer), ms (default 500). */
  restartJitter?: number;
  /** A source of numbers in [0, 1) (default Math.random). */
  random?: () => number;
}

export interface ClientOptions {
  /** The JWT, or a function returning a fresh one (then 4401/4403 closes retry with the new token, and the session is refreshed before `exp`). */
  token: TokenSource;
  /** "protocol" (default): `Sec-WebSocket-Protocol: bearer, <JWT>`, out of URLs and logs; "query": `?token=`. */
  tokenIn?: "protocol" | "query";
  /** Refresh the token in the session before it expires (default true; needs a token function). */
  refresh?: boolean;
  backoff?: BackoffOptions;
  /** Time for a reply to a sent request, ms (default 10000). Requests queued offline wait without limit. */
  requestTimeout?: number;
  /** Time for the `connected` frame after opening, ms (default 10000). */
  openTimeout?: number;
  /** Ping every `heartbeat_interval` from the welcome and drop a connection that misses a pong (default true). */
  heartbeat?: boolean;
  /** Most requests waiting in the offline queue (default 500); past it, requests fail with QueueFullError. */
  maxQueued?: number;
  /** Frames per second the client sends at most (default 18, under the server's 20), or null for no pacing. */
  sendRate?: number | null;
  /** Burst of the pacing (default 30, under the server's 40). */
  sendBurst?: number;
  /** "session" keeps each room's last id in sessionStorage, so a page reload resumes; or any Storage. */
  resumeStorage?: "session" | ResumeStorage;
  /** The storage key (default "roomcast:resume"). */
  storageKey?: string;
  /** A WebSocket class (default globalThis.WebSocket). */
  WebSocket?: new (url: string, protocols?: string | string[]) => WebSocket;
}

export type ConnectionState = "idle" | "connecting" | "resuming" | "open" | "closed";

/** An event published to a room; `id` is its stream id there. */
export interface RoomEvent<D = Record<string, unknown>> {
  type: string;
  room: string;
  data: D;
  sender: string | null;
  timestamp: string | null;
  id: string;
}
export interface ConnectedEvent {
  type: "connected";
  userId: number | null;
  username: string | null;
  connectionId: string | null;
  /** Seconds, from the welcome frame. */
  heartbeatInterval: number;
  rooms: string[];
  /** False on the client's first connection. */
  reconnect: boolean;
  url: string;
}
export interface DisconnectedEvent {
  type: "disconnected";
  /** The close code (1006 for a dropped or failed connection, a heartbeat timeout included). */
  code: number;
  reason: string;
  willReconnect: boolean;
  /** ms until the next attempt, when willReconnect. */
  delay?: number;
  url: string;
}
/** A room resumed with no gap after a reconnect. */
export interface RecoveredEvent { type: "recovered"; room: string; replayed: number }
/** A room could not be resumed (history trimmed or expired): refetch its state. */
export interface NotRecoveredEvent { type: "not_recovered"; room: string; lastId: string | null }
/** The gateway may have missed events of the room: refetch its state. */
export interface ResyncRequiredEvent { type: "resync_required"; room: string }
/** The client is out of the room for good: reason "access_revoked", "rejoin_failed", or null for leave(). */
export interface RoomLeftEvent { type: "room_left"; room: string; reason: string | null }
/** An error frame that answers no request, or the SDK's own trouble (code below 1000). */
export interface ErrorEvent { type: "error"; code: number; message: string; room: string | null }

export type ClientEvent =
  | ConnectedEvent
  | DisconnectedEvent
  | RecoveredEvent
  | NotRecoveredEvent
  | ResyncRequiredEvent
  | RoomLeftEvent
  | ErrorEvent;
export type AnyEvent = ClientEvent | RoomEvent;

export interface ClientEventMap {
  connected: ConnectedEvent;
  disconnected: DisconnectedEvent;
  recovered: RecoveredEvent;
  not_recovered: NotRecoveredEvent;
  resync_required: ResyncRequiredEvent;
  room_left: RoomLeftEvent;
  error: ErrorEvent;
  "*": AnyEvent;
}
export type Listener<E> = (event: E) => void;

/** Events until the client closes; `break` stops listening. */
export interface EventIterator<E = AnyEvent> extends AsyncIterableIterator<E> {
  return(): Promise<IteratorResult<E, undefined>>;
}

export interface RequestOptions {
  /** ms, from the moment the request is sent. */
  timeout?: number;
  /** Withdraws the request if it is still unsent (rejects with ClientCode.ABORTED). */
  signal?: AbortSignal;
}
export interface JoinOptions extends RequestOptions {
  /** Replay the room's events after this stream id. */
  since?: string;
}
export interface SendOptions extends RequestOptions {
  /** The idempotency key (default: a fresh random one); kept across resends. */
  key?: string;
}
export interface Joined {
  room: string | null;
  lastId: string | null;
  /** null for a join without `since`. */
  recovered: boolean | null;
  replayed: number | null;
}
export interface Ack { key: string | null; messageId: string | null }
export interface PresenceUser { userId: number; username: string }

/** One room of a client: its events and its commands. */
export declare class Room implements AsyncIterable<AnyEvent> {
  readonly client: RoomcastClient;
  readonly name: string;
  /** Where a rejoin resumes: the last id seen, or null. */
  readonly lastId: string | null;
  on<K extends keyof ClientEventMap>(type: K, callback: Listener<ClientEventMap[K]>): () => void;
  on(type: string, callback: Listener<RoomEvent>): () => void;
  off(type: string, callback: Listener<any>): void;
  events(): EventIterator;
  [Symbol.asyncIterator](): EventIterator;
  join(options?: JoinOptions): Promise<Joined>;
  leave(options?: RequestOptions): Promise<void>;
  send(content: string, options?: SendOptions): Promise<Ack>;
  presence(options?: RequestOptions): Promise<PresenceUser[]>;
}

export declare class RoomcastClient {
  /** One gateway URL or several (ws(s):// or http(s)://; the path defaults to /api/v1/ws/connect). */
  constructor(urls: string | string[], options: ClientOptions);
  readonly state: ConnectionState;
  /** The URL of the current (or next) connection. */
  readonly url: string;
  /** Rooms the client is in or will rejoin. */
  readonly rooms: string[];
  /** Start connecting (idempotent; commands call it too). */
  connect(): this;
  /** Connected with every room rejoined; rejects with ClientClosedError if that will never happen. */
  ready(): Promise<void>;
  /** Close for good; waiting requests fail with ClientClosedError(1000). */
  close(): void;
  on<K extends keyof ClientEventMap>(type: K, callback: Listener<ClientEventMap[K]>): () => void;
  on(type: string, callback: Listener<RoomEvent>): () => void;
  off(type: string, callback: Listener<any>): void;
  events(): EventIterator;
  room(name: string): Room;
  join(room: string, options?: JoinOptions): Promise<Joined>;
  leave(room: string, options?: RequestOptions): Promise<void>;
  send(room: string, content: string, options?: SendOptions): Promise<Ack>;
  presence(room: string, options?: RequestOptions): Promise<PresenceUser[]>;
  ping(options?: RequestOptions): Promise<void>;
  /** Resolves with the server's `expires_at` for the new token. */
  refresh(token: string, options?: RequestOptions): Promise<unknown>;
}

// The pure parts, exported for tests and for apps that build their own transport.

export declare function parseStreamId(text: unknown): [bigint, bigint] | null;
export declare function compareStreamIds(a: [bigint, bigint], b: [bigint, bigint]): -1 | 0 | 1;
export declare function formatStreamId(id: [bigint, bigint]): string;
export declare function backoffCeiling(attempt: number, base: number, cap: number): number;
export declare function fullJitter(attempt: number, random: () => number, base: number, cap: number): number;
export declare class Backoff {
  constructor(options?: BackoffOptions);
  attempt: number;
  next(): number;
  restart(): number;
  tooMany(): number;
  reset(): void;
}
export declare class Pacer {
  constructor(rate: number, burst: number, now?: () => number);
  reserve(): number;
}
export declare class RoomTracker {
  has(room: string): boolean;
  readonly rooms: string[];
  want(room: string, since?: string | null): void;
  forget(room: string): void;
  joinFailed(room: string): void;
  connectionLost(): void;
  autoJoined(room: string): boolean;
  resumePoint(room: string): string | null;
  joined(room: string, lastId: unknown, recovered: unknown): void;
  accept(room: string, eventId: string): boolean;
  snapshot(): Record<string, string>;
}
export declare class Request<T = unknown> {
  constructor(seq: number, kind: string, room: string | null, data: Record<string, unknown> | null, parse: (frame: any) => T);
  readonly seq: number;
  readonly ref: string;
  readonly kind: string;
  readonly room: string | null;
  readonly data: Record<string, unknown> | null;
  readonly done: boolean;
  readonly promise: Promise<T>;
  timeout?: number;
  frame(): Record<string, unknown>;
  settle(frame: any): void;
  fail(error: Error): void;
}
export declare class RequestBook {
  constructor(limit?: number);
  readonly limit: number;
  readonly queued: number;
  readonly inFlight: number;
  submit(request: Request<any>): void;
  withdraw(request: Request<any>): boolean;
  next(): Request<any> | undefined;
  markSent(request: Request<any>): void;
  popReply(ref: unknown): Request<any> | undefined;
  popOldest(kind: string, room: string | null): Request<any> | undefined;
  requeueInFlight(): void;
  pendingJoinRooms(): Set<string>;
  failAll(error: Error): void;
}
export declare class ResumeStore {
  constructor(storage: ResumeStorage, key: string);
  load(): Record<string, string>;
  save(snapshot: () => Record<string, string>): void;
  clear(): void;
}
export declare function newKey(): string;
export declare function websocketUrl(url: string): string;
export declare function tokenExpiry(token: string): number | null;
export declare function refreshDelay(expiresAt: number, now: number, skew?: number): number;
