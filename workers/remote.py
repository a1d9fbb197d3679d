"""Publishing through a gateway's backend API instead of straight to the engine.

For a backend in another process than a memory-engine gateway (whose queue lives
in that gateway's process), for the CLI's `--url`, and for any backend that would
rather hold an API key than Redis credentials:

    backend = Backend.remote("http://127.0.0.1:8000", api_key)
    backend.task_created("project:1", task_id=7, project_id=1, title="Ship it")

Events are checked at the call site as usual and again by the gateway; one call
is one request, so its events keep their order. HTTP errors become the same
exceptions a local queue raises (InvalidEvent, QueueFull), or RemoteError with
one line saying what to fix.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any

import orjson

from shared.engines.roles import AccessJob, EventJob, Job, QueueFull
from shared.events import InvalidEvent

REQUEST_TIMEOUT = 15.0


class RemoteError(Exception):
    """The gateway's backend API refused or could not be reached; the message says why."""


def _payload(job: EventJob) -> list[dict[str, Any]]:
    out = []
    for event in job.events:
        wire = orjson.loads(event.encoded)
        out.append({"type": wire["type"], "room": event.room, "data": wire["data"],
                    "sender": wire["sender"], "key": event.key})
    return out


def _access(job: AccessJob) -> dict[str, Any]:
    body: dict[str, Any] = {"op": job.op, "room": job.room}
    if job.op == "link":
        body["project_room"] = job.project_room
    else:
        body["user_id"] = job.user_id
    return body


class GatewayApi:
    """The backend API of one gateway (`EVENTS_API_KEY`)."""

    def __init__(self, url: str, api_key: str) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise RemoteError(f"gateway URL {url!r}: expected http://HOST:PORT")
        self.url = url.rstrip("/")
        self._key = api_key

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json",
                                              "X-API-Key": self._key})
        try:
            with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise self._refusal(exc) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RemoteError(f"cannot reach the gateway at {self.url}: {reason}") from None

    def _refusal(self, exc: urllib.error.HTTPError) -> Exception:
        try:
            detail = json.loads(exc.read()).get("detail", "")
        except ValueError:
            detail = ""
        text = detail if isinstance(detail, str) else json.dumps(detail)[:300]
        if exc.code == 422:
            return InvalidEvent(text)
        if exc.code == 503:
            return QueueFull(text)
        if exc.code == 401:
            return RemoteError(f"the gateway at {self.url} refused the API key "
                               "(EVENTS_API_KEY)")
        if exc.code == 404:
            return RemoteError(f"the gateway at {self.url} has no backend API: set "
                               "EVENTS_API_KEY on it")
        return RemoteError(f"the gateway at {self.url} answered {exc.code}: {text}")


class HttpJobQueue:
    """SyncJobQueue over the backend API: one request per job, in order."""

    def __init__(self, api: GatewayApi) -> None:
        self._api = api

    def enqueue(self, jobs: Sequence[Job], *, timeout: float | None = None) -> None:
        for job in jobs:
            if isinstance(job, EventJob):
                self._api.request("POST", "/api/v1/events", {"events": _payload(job)})
            else:
                self._api.request("POST", "/api/v1/access", _access(job))


class HttpGrantCheck:
    def __init__(self, api: GatewayApi) -> None:
        self._api = api

    def granted(self, user_id: int, room: str) -> bool:
        query = urllib.parse.urlencode({"user_id": user_id, "room": room})
        return bool(self._api.request("GET", f"/api/v1/access?{query}").get("allowed"))


class RemoteTarget:
    """What a Backend publishes to when it goes through a gateway."""

    def __init__(self, url: str, api_key: str) -> None:
        api = GatewayApi(url, api_key)
        self.sync_jobs = HttpJobQueue(api)
        self.access_store = HttpGrantCheck(api)

    def close(self) -> None:
        """Nothing held between requests."""
