"""A backend's domain job, as docs/publishing.md shows it: change the domain state,
then publish from inside the job, with no second hop.

`roomcast worker tests.support.domain_actors` runs it beside roomcast's actors."""

from __future__ import annotations

import dramatiq
import redis

from workers import api
from workers.actors import settings  # importing roomcast's actors sets the broker first


@dramatiq.actor(max_retries=3, min_backoff=50, max_backoff=200)
def change_task_status(task_id: int, project_id: int, old: str, new: str,
                       fail_once_key: str = "") -> None:
    db = redis.Redis.from_url(settings.REDIS_URL)
    db.hset(f"demo:task:{task_id}", "status", new)  # the domain change
    room = f"project:{project_id}"
    events = api.job_publisher()  # appends now; keys come from this job's message id
    events.task_status_changed(room, task_id=task_id, project_id=project_id,
                               old_status=old, new_status=new)
    events.task_updated(room, task_id=task_id, project_id=project_id,
                        changes={"status": new})
    if fail_once_key and db.incr(fail_once_key) == 1:
        raise RuntimeError("the first attempt fails after publishing (a retry follows)")
