"""SQLite storage (the standard library's sqlite3): users, sessions, projects and
their members, tasks, comments, chat messages, and the jobs/outbox tables the
actors use to publish exactly once (see outbox.py).

Every call opens its own connection (cheap for SQLite, and safe across the web
server's threads and the worker's processes). `writing()` takes SQLite's write
lock at BEGIN (IMMEDIATE), so concurrent writers queue instead of failing.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from taskboard.config import settings

STATUSES = ("todo", "doing", "done")
Row = dict[str, Any]

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS projects (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    owner_id INTEGER NOT NULL REFERENCES users(id));
CREATE TABLE IF NOT EXISTS members (
    project_id INTEGER NOT NULL REFERENCES projects(id),
    user_id INTEGER NOT NULL REFERENCES users(id),
    PRIMARY KEY (project_id, user_id));
CREATE TABLE IF NOT EXISTS tasks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id INTEGER NOT NULL REFERENCES projects(id),
    title TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'todo',
    created_by INTEGER NOT NULL REFERENCES users(id));
CREATE TABLE IF NOT EXISTS comments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id INTEGER NOT NULL REFERENCES tasks(id),
    user_id INTEGER NOT NULL REFERENCES users(id),
    body TEXT NOT NULL,
    created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id INTEGER NOT NULL REFERENCES projects(id),
    user_id INTEGER NOT NULL REFERENCES users(id),
    content TEXT NOT NULL,
    created_at REAL NOT NULL);
-- one row per Dramatiq message whose change is committed: a retry skips the change
CREATE TABLE IF NOT EXISTS jobs (
    message_id TEXT PRIMARY KEY,
    actor TEXT NOT NULL,
    done_at REAL NOT NULL);
-- events committed with their change, relayed to roomcast in seq order (outbox.py)
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_key TEXT NOT NULL UNIQUE,
    event TEXT NOT NULL,
    sent_at REAL);
CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox (seq) WHERE sent_at IS NULL;
"""


class NotFound(LookupError):
    """The project, task or user is gone (or never was)."""


def connect(path: Path | None = None) -> sqlite3.Connection:
    # autocommit mode: transactions are explicit (BEGIN IMMEDIATE in writing())
    conn = sqlite3.connect(path or settings().DB, timeout=10, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def init(path: Path | None = None) -> None:
    path = path or settings().DB
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = connect(path)
    try:
        conn.execute("PRAGMA journal_mode = WAL")  # readers never wait for the writer
        conn.executescript(SCHEMA)
    finally:
        conn.close()


@contextmanager
def reading() -> Iterator[sqlite3.Connection]:
    conn = connect()
    try:
        yield conn
    finally:
        conn.close()


@contextmanager
def writing() -> Iterator[sqlite3.Connection]:
    """One transaction holding the database's write lock from its first statement."""
    conn = connect()
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    finally:
        conn.close()


def _one(conn: sqlite3.Connection, sql: str, *args: Any) -> Row | None:
    row = conn.execute(sql, args).fetchone()
    return dict(row) if row is not None else None


def _all(conn: sqlite3.Connection, sql: str, *args: Any) -> list[Row]:
    return [dict(row) for row in conn.execute(sql, args)]


# -- users and sessions --------------------------------------------------------------------
def user_by_name(conn: sqlite3.Connection, username: str) -> Row | None:
    return _one(conn, "SELECT * FROM users WHERE username = ?", username)


def user_by_id(conn: sqlite3.Connection, user_id: int) -> Row | None:
    return _one(conn, "SELECT id, username FROM users WHERE id = ?", user_id)


def add_user(conn: sqlite3.Connection, username: str, password_hash: str) -> int:
    cur = conn.execute("INSERT INTO users (username, password_hash) VALUES (?, ?)",
                       (username, password_hash))
    return int(cur.lastrowid or 0)


def add_session(conn: sqlite3.Connection, session_id: str, user_id: int) -> None:
    conn.execute("INSERT INTO sessions (id, user_id, created_at) VALUES (?, ?, ?)",
                 (session_id, user_id, time.time()))


def session_user(conn: sqlite3.Connection, session_id: str) -> Row | None:
    return _one(conn, "SELECT u.id, u.username FROM sessions s JOIN users u "
                      "ON u.id = s.user_id WHERE s.id = ?", session_id)


def drop_session(conn: sqlite3.Connection, session_id: str) -> None:
    conn.execute("DELETE FROM sessions WHERE id = ?", (session_id,))


# -- projects and members ------------------------------------------------------------------
def add_project(conn: sqlite3.Connection, name: str, owner_id: int) -> int:
    cur = conn.execute("INSERT INTO projects (name, owner_id) VALUES (?, ?)", (name, owner_id))
    project_id = int(cur.lastrowid or 0)
    add_member(conn, project_id, owner_id)
    return project_id


def project(conn: sqlite3.Connection, project_id: int) -> Row:
    row = _one(conn, "SELECT * FROM projects WHERE id = ?", project_id)
    if row is None:
        raise NotFound(f"no project {project_id}")
    return row


def projects_of(conn: sqlite3.Connection, user_id: int) -> list[Row]:
    return _all(conn, "SELECT p.* FROM projects p JOIN members m ON m.project_id = p.id "
                      "WHERE m.user_id = ? ORDER BY p.id", user_id)


def is_member(conn: sqlite3.Connection, project_id: int, user_id: int) -> bool:
    return _one(conn, "SELECT 1 AS yes FROM members WHERE project_id = ? AND user_id = ?",
                project_id, user_id) is not None


def add_member(conn: sqlite3.Connection, project_id: int, user_id: int) -> None:
    conn.execute("INSERT OR IGNORE INTO members (project_id, user_id) VALUES (?, ?)",
                 (project_id, user_id))


def remove_member(conn: sqlite3.Connection, project_id: int, user_id: int) -> None:
    conn.execute("DELETE FROM members WHERE project_id = ? AND user_id = ?",
                 (project_id, user_id))


def members(conn: sqlite3.Connection, project_id: int) -> list[Row]:
    return _all(conn, "SELECT u.id, u.username FROM members m JOIN users u ON u.id = m.user_id "
                      "WHERE m.project_id = ? ORDER BY u.username", project_id)


def all_memberships(conn: sqlite3.Connection) -> list[Row]:
    return _all(conn, "SELECT project_id, user_id FROM members ORDER BY project_id")


def all_project_ids(conn: sqlite3.Connection) -> list[int]:
    return [int(r["id"]) for r in conn.execute("SELECT id FROM projects ORDER BY id")]


# -- tasks, comments, chat -----------------------------------------------------------------
def add_task(conn: sqlite3.Connection, project_id: int, title: str, user_id: int) -> int:
    cur = conn.execute("INSERT INTO tasks (project_id, title, created_by) VALUES (?, ?, ?)",
                       (project_id, title, user_id))
    return int(cur.lastrowid or 0)


def task(conn: sqlite3.Connection, task_id: int) -> Row:
    row = _one(conn, "SELECT * FROM tasks WHERE id = ?", task_id)
    if row is None:
        raise NotFound(f"no task {task_id}")
    return row


def set_status(conn: sqlite3.Connection, task_id: int, status: str) -> None:
    conn.execute("UPDATE tasks SET status = ? WHERE id = ?", (status, task_id))


def tasks(conn: sqlite3.Connection, project_id: int) -> list[Row]:
    return _all(conn, "SELECT t.*, (SELECT count(*) FROM comments c WHERE c.task_id = t.id) "
                      "AS comments FROM tasks t WHERE t.project_id = ? ORDER BY t.id", project_id)


def add_comment(conn: sqlite3.Connection, task_id: int, user_id: int, body: str) -> int:
    cur = conn.execute("INSERT INTO comments (task_id, user_id, body, created_at) "
                       "VALUES (?, ?, ?, ?)", (task_id, user_id, body, time.time()))
    return int(cur.lastrowid or 0)


def comments(conn: sqlite3.Connection, project_id: int) -> list[Row]:
    return _all(conn, "SELECT c.id, c.task_id, c.user_id, u.username, c.body FROM comments c "
                      "JOIN tasks t ON t.id = c.task_id JOIN users u ON u.id = c.user_id "
                      "WHERE t.project_id = ? ORDER BY c.id", project_id)


def add_message(conn: sqlite3.Connection, project_id: int, user_id: int, content: str) -> int:
    cur = conn.execute("INSERT INTO messages (project_id, user_id, content, created_at) "
                       "VALUES (?, ?, ?, ?)", (project_id, user_id, content, time.time()))
    return int(cur.lastrowid or 0)


def messages(conn: sqlite3.Connection, project_id: int, limit: int = 50) -> list[Row]:
    rows = _all(conn, "SELECT m.id, m.user_id, u.username, m.content FROM messages m "
                      "JOIN users u ON u.id = m.user_id WHERE m.project_id = ? "
                      "ORDER BY m.id DESC LIMIT ?", project_id, limit)
    return rows[::-1]
