"""Every Redis key, stream and consumer-group name roomcast uses, in one place.

Keys of one shard carry the shard as a Redis Cluster hash tag (`{s3}`) so the
publish script can touch the dedupe key, the shard stream and the room history
in one atomic call on one slot.
"""

from __future__ import annotations

from shared.rooms import shard_of

PREFIX = "rc"


def _tag(shard: int) -> str:
    return f"{PREFIX}:{{s{shard}}}"


def shard_stream(shard: int) -> str:
    """The fan-out stream every gateway reads."""
    return f"{_tag(shard)}:stream"


def shard_seq(shard: int) -> str:
    """Counter stamped on each shard entry, so a reader can see a gap (trim or reset)."""
    return f"{_tag(shard)}:seq"


def room_history(room: str, shards: int) -> str:
    return f"{_tag(shard_of(room, shards))}:history:{room}"


def room_meta(room: str, shards: int) -> str:
    """Hash with the room's first and last event ids, outliving its history a while."""
    return f"{_tag(shard_of(room, shards))}:meta:{room}"


def dedupe(event_key: str, room: str, shards: int) -> str:
    return f"{_tag(shard_of(room, shards))}:dedupe:{event_key}"


def gateway_group(instance_id: str) -> str:
    """One consumer group per gateway instance and shard (never shared: see SPEC §7)."""
    return f"gw:{instance_id}"


def user_connections(user_id: int) -> str:
    """Sorted set of a user's live connections over all gateways; score = expiry time."""
    return f"{PREFIX}:conns:{user_id}"


def room_presence(room: str) -> str:
    """Sorted set of user ids present in a room over all gateways; score = expiry time."""
    return f"{PREFIX}:presence:{{{room}}}"


def room_user_connections(room: str, user_id: int) -> str:
    """Sorted set of one user's connections in one room; score = expiry time.

    Shares the room's hash tag with `room_presence`: one script touches both.
    """
    return f"{PREFIX}:presence:{{{room}}}:{user_id}"


def room_presence_names(room: str) -> str:
    """Hash of user id -> username of the users present in a room; expires with it."""
    return f"{PREFIX}:presence:{{{room}}}:names"


def room_departures(room: str) -> str:
    """Hash of user id -> "token|username": users the presence sweep removed from a
    room whose `user_left` is not appended yet (kept until it is, or a day)."""
    return f"{PREFIX}:presence:{{{room}}}:departures"


def grants(user_id: int) -> str:
    """Set of rooms a user was granted."""
    return f"{PREFIX}:acl:{user_id}"


def room_link(room: str) -> str:
    """The project room a channel or task room is linked to."""
    return f"{PREFIX}:link:{room}"


def presence_rooms() -> str:
    """Set of rooms with presence entries, which the presence sweeper walks."""
    return f"{PREFIX}:presence-rooms"


def presence_sweeper() -> str:
    """Lock naming the one gateway that sweeps expired presence this heartbeat."""
    return f"{PREFIX}:presence-sweeper"


def instance_slots(instance_id: str) -> str:
    """Set of `user_id|connection_id` slots held by one gateway instance, so that
    the instance, restarted after a crash, frees its previous run's slots at once."""
    return f"{PREFIX}:instance-slots:{instance_id}"


def shard_count() -> str:
    """The STREAM_SHARDS every process on this Redis must use (set by the first one)."""
    return f"{PREFIX}:config:stream-shards"


def instance_lease(instance_id: str) -> str:
    """Held by the live gateway with this instance id: a second one refuses to start."""
    return f"{PREFIX}:instance:{instance_id}"


# -- the job queue (producers -> workers) --------------------------------------------------
def inbox(shard: int) -> str:
    """The ordered job queue of one shard (a stream, read by one worker at a time)."""
    return f"{_tag(shard)}:inbox"


def inbox_lease(shard: int) -> str:
    """Names the one worker consuming this shard's inbox; fences the others out."""
    return f"{_tag(shard)}:inbox-lease"


def inbox_group() -> str:
    """The consumer group of every inbox, shared by the workers (one reads at a time)."""
    return "workers"


def dead_letters(shard: int) -> str:
    """Jobs of this shard that could never be applied, with the reason (a stream)."""
    return f"{_tag(shard)}:dead"


def workers() -> str:
    """Sorted set of live workers: member = worker id, score = expiry time."""
    return f"{PREFIX}:workers"
