"""The worker heartbeat in Redis: ``quarry worker`` refreshes one key per process with a TTL;
``/readyz`` (``job_runner=redis``) counts the live ones.

Key: ``<broker_namespace>:workers:<host:pid>``, value the Unix time of the beat, TTL
``job_stale_seconds`` (the jobs table's notion of a dead worker).
"""

import time

import redis

from app.config import Settings


def heartbeat_key(settings: Settings, worker: str) -> str:
    """The Redis key of one worker process."""
    return f"{settings.broker_namespace}:workers:{worker}"


def beat(client: "redis.Redis", settings: Settings, worker: str) -> None:
    """Refresh ``worker``'s key (raises ``redis.RedisError`` when Redis is unreachable)."""
    client.set(heartbeat_key(settings, worker), str(time.time()),
               ex=max(1, int(settings.job_stale_seconds)))


def live_workers(client: "redis.Redis", settings: Settings) -> list[str]:
    """``host:pid`` of every worker whose key has not expired, sorted."""
    prefix = heartbeat_key(settings, "")
    return sorted(key.decode()[len(prefix):]
                  for key in client.scan_iter(match=f"{prefix}*", count=500))
