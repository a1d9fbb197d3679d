"""Project membership, mirrored into roomcast grants.

SQLite is the source of truth; roomcast's grants (in Redis) follow it:
a member is granted `project:<id>`, the project's chat room `channel:<id>` is
linked to it (so the grant admits there too), and removal revokes live. On
start the app grants every membership again, since a fresh Redis knows none.
"""

from __future__ import annotations

from workers import api

GRANT_TIMEOUT = 5.0  # s; longer means no worker is consuming roomcast's job queue


def project_room(project_id: int) -> str:
    return f"project:{project_id}"


def channel_room(project_id: int) -> str:
    return f"channel:{project_id}"


class NotInForce(Exception):
    """A grant queued but not applied in time: the worker is down or far behind."""


def open_project(project_id: int, owner_id: int) -> None:
    """Link the chat room and grant the owner; returns once the owner may join both."""
    api.link_room(channel_room(project_id), project_room(project_id))
    grant_member(project_id, owner_id)
    # link_room() has no wait(): the link and the grant may sit in different shards of
    # the job queue, so the grant can be in force first. Wait for the channel as well.
    engine = api.default_backend().engine
    if not api.Grant(engine, owner_id, channel_room(project_id)).wait(GRANT_TIMEOUT):
        raise NotInForce(f"the link of {channel_room(project_id)} is not in force after "
                         f"{GRANT_TIMEOUT:.0f} s: is the worker running?")


def grant_member(project_id: int, user_id: int) -> None:
    """Returns once every gateway would let the user join the project's rooms."""
    if not api.grant_access(user_id, project_room(project_id)).wait(GRANT_TIMEOUT):
        raise NotInForce(f"the grant on {project_room(project_id)} is not in force after "
                         f"{GRANT_TIMEOUT:.0f} s: is the worker running?")


def revoke_member(project_id: int, user_id: int) -> None:
    """Live: within a second the user's connections leave the project and its channel."""
    api.revoke_access(user_id, project_room(project_id))


def sync_all(memberships: list[tuple[int, int]], project_ids: list[int]) -> None:
    """Grant every (project, user) membership and link every channel, as one batch."""
    with api.batch() as batch:
        for project_id in project_ids:
            batch.link_room(channel_room(project_id), project_room(project_id))
        for project_id, user_id in memberships:
            batch.grant_access(user_id, project_room(project_id))
