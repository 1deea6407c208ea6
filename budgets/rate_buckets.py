"""Throttle counts taken atomically: a token bucket per client, one statement a request.

A rate of N per period is a bucket of N requests that refills one request every period / N
(the generic cell rate algorithm, as Anthropic's own limits and redis-cell work): N may come
at once, then one every period / N. The bucket is a single number, the time at which it is
full again; a request moves it one interval later, unless that would put it more than a
period ahead of now, in which case the request is refused and told how long to wait.

Taking is one upsert, so simultaneous requests cannot both take the last place (reading the
count and then writing it, as Django's cache-backed DRF throttles do, lets a burst through).
Postgres keeps the buckets, on its own clock so every web process agrees; Redis does, with a
script, when THROTTLE_REDIS_URL is set; SQLite (`make run`'s default) on this machine's.
"""

import time
from functools import cache

from django.conf import settings
from django.db import connection

from budgets.models import ThrottleBucket

TABLE = ThrottleBucket._meta.db_table
# Buckets that are full again hold nothing: every so many requests, a process deletes them.
SWEEP_EVERY = 1000

_taken = 0


def take(key: str, *, limit: int, period_s: float) -> float:
    """Take one request from `key`'s bucket (`limit` per `period_s`). Returns 0.0 when the
    request may go, else the seconds until it may."""
    interval = period_s / limit
    if settings.THROTTLE_REDIS_URL:
        return _take_in_redis(key, interval, period_s)
    return _take_in_database(key, interval, period_s)


def forget_all() -> None:
    """Every bucket full again (tests start from here)."""
    if settings.THROTTLE_REDIS_URL:
        client = _redis(settings.THROTTLE_REDIS_URL)
        for key in client.scan_iter(match=f"{REDIS_PREFIX}*"):
            client.delete(key)
    ThrottleBucket.objects.all().delete()


# --- The database ------------------------------------------------------------------------

POSTGRES_TAKE = f"""
    WITH clock AS (SELECT extract(epoch FROM clock_timestamp())::float8 AS now)
    INSERT INTO {TABLE} AS bucket (key, full_at)
    SELECT %(key)s, clock.now + %(interval)s FROM clock
    ON CONFLICT (key) DO UPDATE
        SET full_at = GREATEST(bucket.full_at, (SELECT now FROM clock)) + %(interval)s
        WHERE GREATEST(bucket.full_at, (SELECT now FROM clock)) + %(interval)s
            <= (SELECT now FROM clock) + %(period)s
    RETURNING 0.0
"""
POSTGRES_WAIT = f"""
    SELECT full_at + %(interval)s - %(period)s - extract(epoch FROM clock_timestamp())::float8
    FROM {TABLE} WHERE key = %(key)s
"""
# SQLite has no server clock (one machine) and spells GREATEST as a two-argument MAX.
SQLITE_TAKE = f"""
    INSERT INTO {TABLE} AS bucket (key, full_at) VALUES (%(key)s, %(now)s + %(interval)s)
    ON CONFLICT (key) DO UPDATE
        SET full_at = MAX(bucket.full_at, %(now)s) + %(interval)s
        WHERE MAX(bucket.full_at, %(now)s) + %(interval)s <= %(now)s + %(period)s
    RETURNING 0.0
"""
SQLITE_WAIT = (
    f"SELECT full_at + %(interval)s - %(period)s - %(now)s FROM {TABLE} WHERE key = %(key)s"
)


def _take_in_database(key: str, interval: float, period_s: float) -> float:
    postgres = connection.vendor == "postgresql"
    params = {"key": key, "interval": interval, "period": period_s, "now": time.time()}
    with connection.cursor() as cursor:
        cursor.execute(POSTGRES_TAKE if postgres else SQLITE_TAKE, params)
        if cursor.fetchone() is not None:
            _sweep_now_and_then(cursor, postgres)
            return 0.0
        cursor.execute(POSTGRES_WAIT if postgres else SQLITE_WAIT, params)
        row = cursor.fetchone()
    return max(0.0, row[0]) if row else 0.0


def _sweep_now_and_then(cursor, postgres: bool) -> None:
    global _taken
    _taken += 1
    if _taken % SWEEP_EVERY == 0:
        now = "extract(epoch FROM clock_timestamp())" if postgres else str(time.time())
        cursor.execute(f"DELETE FROM {TABLE} WHERE full_at < {now}")


# --- Redis ---------------------------------------------------------------------------------

REDIS_PREFIX = "throttle:"
# KEYS[1]: the bucket; ARGV: interval, period (seconds). Redis's own clock, as Postgres's.
REDIS_TAKE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local interval, period = tonumber(ARGV[1]), tonumber(ARGV[2])
local full_at = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now) + interval
if full_at > now + period then
    return tostring(full_at - period - now)
end
redis.call('SET', KEYS[1], tostring(full_at), 'PX', math.ceil((full_at - now) * 1000))
return '0'
"""


@cache
def _redis(url: str):
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)


@cache
def _redis_take(url: str):
    return _redis(url).register_script(REDIS_TAKE)


def _take_in_redis(key: str, interval: float, period_s: float) -> float:
    script = _redis_take(settings.THROTTLE_REDIS_URL)
    wait = script(keys=[REDIS_PREFIX + key], args=[interval, period_s])
    return max(0.0, float(wait))
