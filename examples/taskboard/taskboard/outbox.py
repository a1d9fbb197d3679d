"""Publish each event once, in the order the database changed.

A job's change and the events that describe it commit in one transaction
(`run_job`); the events are then relayed to roomcast from inside the job through
`api.job_publisher()`, which appends them directly (no second queue hop).

- A retried job whose change is already committed (table `jobs`) skips the change
  and only relays, so nothing is done twice. If it failed after roomcast took its
  events but before the outbox marked them sent, the relay sends them again with
  the same keys (`job:<message id>:<n>`): roomcast appends a key once, so clients
  see each event once.
- The relay holds SQLite's write lock and sends every unsent event in `seq`
  order, whichever job recorded it. Two jobs running at once (Dramatiq threads
  and processes) therefore publish in the order their changes committed, and
  every client's board follows the database.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from dramatiq.middleware import CurrentMessage

from shared.events import validate_event
from taskboard import db
from taskboard.config import settings
from workers import api

log = logging.getLogger("taskboard.outbox")

Event = dict[str, Any]  # {"type", "room", "data", "sender"}: what workers.api publishes
Change = Callable[[sqlite3.Connection], list[Event]]
RELAY_BATCH = 100


class SimulatedFailure(RuntimeError):
    """TASKBOARD_FAIL_FIRST_ATTEMPT: the job fails once, right after publishing."""


def run_job(change: Change) -> None:
    """Apply `change` once per Dramatiq message, then relay the outbox."""
    message = CurrentMessage.get_current_message()
    if message is None:
        raise RuntimeError("run_job() runs inside a Dramatiq job (an actor)")
    with db.writing() as conn:
        if conn.execute("SELECT 1 FROM jobs WHERE message_id = ?",
                        (message.message_id,)).fetchone() is None:
            for n, event in enumerate(change(conn), 1):
                # checked before the commit: an event roomcast would refuse fails the job
                # here, and never reaches the outbox to block the events behind it
                validate_event(event["type"], event["room"], event["data"])
                conn.execute("INSERT INTO outbox (event_key, event) VALUES (?, ?)",
                             (f"job:{message.message_id}:{n}", json.dumps(event)))
            conn.execute("INSERT INTO jobs (message_id, actor, done_at) VALUES (?, ?, ?)",
                         (message.message_id, message.actor_name, time.time()))
    first_attempt = not message.options.get("retries")
    relay(fail_after_publish=first_attempt
          and message.actor_name in settings().FAIL_FIRST_ATTEMPT)


def relay(*, fail_after_publish: bool = False) -> None:
    """Send every unsent outbox event to roomcast, in order, and mark it sent."""
    publisher = api.job_publisher()
    while True:
        with db.writing() as conn:
            rows = conn.execute("SELECT seq, event_key, event FROM outbox WHERE sent_at IS NULL "
                                "ORDER BY seq LIMIT ?", (RELAY_BATCH,)).fetchall()
            if not rows:
                return
            publisher.publish_many([{**json.loads(r["event"]), "key": r["event_key"]}
                                    for r in rows])
            if fail_after_publish:
                log.warning("simulated failure after publishing %d event(s) "
                            "(TASKBOARD_FAIL_FIRST_ATTEMPT); Dramatiq retries the job",
                            len(rows))
                raise SimulatedFailure("failed after publishing, before marking sent")
            conn.executemany("UPDATE outbox SET sent_at = ? WHERE seq = ?",
                             [(time.time(), r["seq"]) for r in rows])
