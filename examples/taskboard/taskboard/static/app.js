// The taskboard page. Changes go to the backend's REST API; what the board shows
// comes from two places only: a snapshot (GET /api/projects/N), read after joining
// the project's rooms, and the events of those rooms, pushed by roomcast.
// The browser SDK is imported from the first gateway (/sdk/roomcast.js).

const $ = (id) => document.getElementById(id);
const STATUSES = ["todo", "doing", "done"];
let client = null; // one RoomcastClient for the page, for every room
let board = null; // the open project and what is known of it

// -- the backend -------------------------------------------------------------------
async function api(method, path, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 204) return null;
  const payload = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = Array.isArray(payload.detail) // FastAPI's 422: a list of field errors
      ? payload.detail.map((d) => `${d.loc.slice(1).join(".")}: ${d.msg}`).join("; ")
      : payload.detail ?? response.statusText;
    throw new Error(detail);
  }
  return payload;
}

function problem(error) {
  $("problem").textContent = error ? String(error.message ?? error) : "";
}

function action(fn) {
  // a form or button handler: one line on the page when it fails
  return async (event) => {
    event.preventDefault();
    problem(null);
    try {
      await fn(event);
    } catch (error) {
      problem(error);
    }
  };
}

// a form's field by name (form.name and form.title are the form's own attributes)
const field = (form, name) => form.elements.namedItem(name).value;

function el(tag, text, attrs = {}) {
  const node = document.createElement(tag);
  if (text != null) node.textContent = text; // text, never HTML: user input stays inert
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  return node;
}

// -- session and the roomcast client -------------------------------------------------
async function start(user) {
  $("login").hidden = true;
  $("home").hidden = false;
  $("logout").hidden = false;
  $("who").textContent = `${user.username} (user ${user.id})`;
  const config = await api("GET", "/api/config");
  const { RoomcastClient } = await import(config.sdk);
  // The token function runs before every (re)connect and before the token expires:
  // the session cookie buys a fresh short-lived roomcast token from the backend.
  client = new RoomcastClient(config.gateways, {
    token: async () => (await api("GET", "/api/token")).token,
  });
  client.on("connected", (e) => setStatus(`live · ${new URL(e.url).host}`, "live"));
  client.on("disconnected", (e) =>
    setStatus(e.willReconnect ? `reconnecting (${e.code})` : `offline (${e.code})`, "down"));
  // user:<id> is joined at connect: the backend notifies us there when added or removed
  client.on("notification.new", (e) => {
    $("notices").prepend(el("li", e.data.title));
    loadProjects().catch(problem);
  });
  client.on("room_left", (e) => {
    if (board && e.room === board.project.room && e.reason === "access_revoked") {
      problem(`You were removed from ${board.project.name}.`);
      closeBoard();
    }
  });
  // the rooms' history no longer covers a gap (or the gateway may have missed events):
  // read the snapshot again
  for (const type of ["not_recovered", "resync_required"]) {
    client.on(type, (e) => {
      if (board && [board.project.room, board.project.chat_room].includes(e.room)) refetch(board);
    });
  }
  client.connect();
  await loadProjects();
}

function setStatus(text, state) {
  $("status").textContent = text;
  $("status").dataset.state = state;
}

async function loadProjects() {
  const { projects } = await api("GET", "/api/me");
  const list = $("projects");
  list.replaceChildren();
  for (const project of projects) {
    const link = el("a", project.name, { href: "#", "data-project-id": String(project.id) });
    link.onclick = action(() => openProject(project));
    list.append(el("li"));
    list.lastChild.append(link);
  }
}

// -- one project: join, snapshot, events -----------------------------------------------
async function openProject(project) {
  if (board) closeBoard();
  const b = (board = {
    project, tasks: new Map(), comments: new Map(), messages: new Map(), members: [],
    cards: new Map(), buffered: [], loading: true, offs: [],
  });
  $("board").hidden = $("side").hidden = false;
  $("project-name").textContent = project.name;
  $("add-member").hidden = !project.is_owner;
  for (const room of [project.room, project.chat_room]) {
    b.offs.push(client.room(room).on("*", (e) => (b.loading ? b.buffered.push(e) : apply(b, e))));
  }
  // Join first, then read the snapshot: a change made meanwhile is in the snapshot,
  // in the buffered events, or both, and applying it twice changes nothing.
  await client.join(project.room);
  await client.join(project.chat_room);
  await refetch(b);
}

async function refetch(b) {
  b.loading = true;
  const state = await api("GET", `/api/projects/${b.project.id}`);
  if (board !== b) return;
  b.tasks = new Map(state.tasks.map((t) => [t.id, { id: t.id, title: t.title, status: t.status }]));
  b.comments = new Map(state.comments.map((c) => [c.id, c]));
  b.messages = new Map(state.messages.map((m) => [`m${m.id}`, m]));
  b.members = state.members;
  for (const card of b.cards.values()) card.remove();
  b.cards.clear();
  $("chat").replaceChildren();
  for (const task of b.tasks.values()) renderTask(b, task);
  for (const message of b.messages.values()) renderMessage(message);
  renderMembers(b);
  const buffered = b.buffered.splice(0);
  b.loading = false;
  for (const event of buffered) apply(b, event);
}

function apply(b, e) {
  const d = e.data ?? {};
  switch (e.type) {
    case "task.created":
      if (!b.tasks.has(d.task_id)) b.tasks.set(d.task_id, { id: d.task_id, title: d.title, status: "todo" });
      renderTask(b, b.tasks.get(d.task_id));
      break;
    case "task.status_changed": {
      const task = b.tasks.get(d.task_id);
      if (task) {
        task.status = d.new_status;
        renderTask(b, task);
      }
      break;
    }
    case "comment.added": // the taskboard's own event type (taskboard/events.py)
      b.comments.set(d.comment_id, { id: d.comment_id, task_id: d.task_id, username: e.sender, body: d.body });
      if (b.tasks.has(d.task_id)) renderTask(b, b.tasks.get(d.task_id));
      break;
    case "message":
      if (!b.messages.has(d.message_id)) {
        const message = { id: d.message_id, username: e.sender, content: d.content };
        b.messages.set(d.message_id, message);
        renderMessage(message);
      }
      break;
    case "project.updated":
      if (d.changes?.members) {
        b.members = d.changes.members;
        renderMembers(b);
      }
      break;
  }
}

function closeBoard() {
  const b = board;
  board = null;
  for (const off of b.offs) off();
  for (const room of [b.project.room, b.project.chat_room]) client.leave(room).catch(() => {});
  for (const card of b.cards.values()) card.remove();
  $("board").hidden = $("side").hidden = true;
  loadProjects().catch(problem);
}

// -- rendering ---------------------------------------------------------------------
function renderTask(b, task) {
  let card = b.cards.get(task.id);
  if (!card) {
    card = makeCard(task);
    b.cards.set(task.id, card);
  }
  card.querySelector(".title").textContent = task.title;
  for (const button of card.querySelectorAll("button[data-to]")) button.hidden = button.dataset.to === task.status;
  const comments = [...b.comments.values()].filter((c) => c.task_id === task.id);
  card.querySelector("summary").textContent = `${comments.length} comment${comments.length === 1 ? "" : "s"}`;
  card.querySelector(".comments").replaceChildren(...comments.map((c) => el("li", `${c.username}: ${c.body}`)));
  const column = $(`col-${task.status}`);
  if (card.parentElement !== column) {
    const after = [...column.children].find((c) => Number(c.dataset.taskId) > task.id);
    column.insertBefore(card, after ?? null);
  }
}

function makeCard(task) {
  const card = el("li", null, { class: "card", "data-task-id": String(task.id) });
  card.append(el("span", null, { class: "title" }));
  const moves = el("div", null, { class: "moves" });
  for (const status of STATUSES) {
    const button = el("button", `→ ${status}`, { "data-to": status });
    button.onclick = action(() => api("PATCH", `/api/tasks/${task.id}`, { status }));
    moves.append(button);
  }
  const details = el("details");
  const form = el("form");
  form.append(el("input", null, { name: "body", placeholder: "Comment", required: "" }), el("button", "Add"));
  form.onsubmit = action(async () => {
    await api("POST", `/api/tasks/${task.id}/comments`, { body: field(form, "body") });
    form.reset();
  });
  details.append(el("summary"), el("ul", null, { class: "comments" }), form);
  card.append(moves, details);
  return card;
}

function renderMessage(message) {
  const item = el("li", null, { "data-message-id": String(message.id) });
  item.append(el("b", `${message.username}: `), document.createTextNode(message.content));
  $("chat").append(item);
  item.scrollIntoView({ block: "nearest" });
}

function renderMembers(b) {
  $("members").replaceChildren(...b.members.map((m) => {
    const item = el("li", m.username);
    if (b.project.is_owner && m.id !== b.project.owner_id) {
      const remove = el("button", "remove");
      remove.onclick = action(() => api("DELETE", `/api/projects/${b.project.id}/members/${m.id}`));
      item.append(" ", remove);
    }
    return item;
  }));
}

// -- forms ---------------------------------------------------------------------------
$("login-form").onsubmit = action(async (event) => {
  const form = event.target;
  const { user } = await api("POST", "/api/login", {
    username: field(form, "username"), password: field(form, "password") });
  await start(user);
});
$("logout").onclick = action(async () => {
  await api("POST", "/api/logout");
  client?.close();
  location.reload();
});
$("new-project").onsubmit = action(async (event) => {
  const project = await api("POST", "/api/projects", { name: field(event.target, "name") });
  event.target.reset();
  await loadProjects();
  await openProject(project); // the grant is in force: the backend waited for it
});
$("new-task").onsubmit = action(async (event) => {
  await api("POST", `/api/projects/${board.project.id}/tasks`, { title: field(event.target, "title") });
  event.target.reset(); // the card appears when task.created arrives
});
$("chat-form").onsubmit = action(async (event) => {
  await api("POST", `/api/projects/${board.project.id}/messages`, { content: field(event.target, "content") });
  event.target.reset();
});
$("add-member").onsubmit = action(async (event) => {
  await api("POST", `/api/projects/${board.project.id}/members`, { username: field(event.target, "username") });
  event.target.reset();
});

api("GET", "/api/me").then(
  ({ user }) => start(user).catch(problem),
  () => { $("login").hidden = false; }, // not logged in yet
);
