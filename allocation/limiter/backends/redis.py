"""The limiter's shared state in Redis (settings.LLM_LIMITER_REDIS_URL): storage only.

Keys, for one Redis (not Cluster: a transaction spans a model's keys and the lease's):
    llm_limiter:<model>:state    JSON: a LimiterState's fields
    llm_limiter:<model>:leases   sorted set of the calls in flight, scored by expiry (Unix time)
    llm_limiter:lease:<id>       hash: model, holder, input_estimate, output_reserve
                                 (expires on its own)
    llm_limiter:holder:<h:pid>   set of the lease ids a process holds, for renewal
    llm_limiter:lease_seq        counter for lease ids (ints, like Lease primary keys)
    llm_limiter:models           set of the models with state, for staff pages

Atomicity: optimistic transactions. WATCH the model's keys, read them, decide in Python, then
MULTI/EXEC the writes; if another process wrote a watched key meanwhile, EXEC fails and we read
and decide again (which is why a sequence's `decide` must only read and change what it is
given). A Lua script would run atomically in Redis, but it would have to port the AIMD
controller, the breaker and the bucket arithmetic to Lua, two copies of one algorithm to
keep in step; retries are cheap at a few hundred calls a second per model.

Expired leases never count (ZCOUNT from `now`) and are trimmed on every store. Staff pages
list ModelState rows, so the first time a process sees a model it makes sure the model has a
row (its fields stay unused: the state is read from here).
"""

import json
import math
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import redis

from allocation.limiter.backends import LimiterBackend, Locked, limits_for
from allocation.limiter.state import LeaseInfo, LimiterState, Snapshot
from allocation.models import ModelState

PREFIX = "llm_limiter"
# A Redis that does not answer must fail the call with a message, not hang it.
TIMEOUT_S = 2.0


class RedisBackend(LimiterBackend):
    name = "redis"

    def __init__(self, url: str):
        self.url = url
        self._client: redis.Redis | None = None
        self._registered: set[str] = set()

    def atomically(self, model, *, now, lease_id, decide):
        keys = [_state_key(model), _leases_key(model)]
        if lease_id is not None:
            keys.append(_lease_key(lease_id))
        limits = limits_for(model)  # staff's, in Postgres: read before watching

        def attempt(pipe):
            lease = pipe.hgetall(_lease_key(lease_id)) if lease_id is not None else {}
            locked = Locked(
                _load(pipe, model),
                LeaseInfo(
                    lease["holder"],
                    0.0,
                    int(lease.get("input_estimate", 0)),
                    int(lease.get("output_reserve", 0)),
                )
                if lease
                else None,
                lambda: _count(pipe, model, now),
                limits,
            )
            result = decide(locked)
            # The counter is not watched: an id spent on a failed EXEC is only skipped.
            new_ids = [pipe.incr(_key("lease_seq")) for _ in locked.new_leases]
            pipe.multi()
            pipe.set(_state_key(model), json.dumps(locked.state.stored_fields()))
            pipe.sadd(_key("models"), model)
            pipe.zremrangebyscore(_leases_key(model), "-inf", now)
            if locked.drop_lease and lease_id is not None:
                pipe.zrem(_leases_key(model), lease_id)
                pipe.delete(_lease_key(lease_id))
                if lease:
                    pipe.srem(_holder_key(lease["holder"]), lease_id)
            for new_id, new_lease in zip(new_ids, locked.new_leases, strict=True):
                _add_lease(pipe, new_id, model, new_lease, now)
            return result, new_ids

        return self._transact(keys, attempt)

    def renew_held(self, holder, *, expires_at, now):
        holder_key = _holder_key(holder)
        ttl = _key_ttl(expires_at - now)

        def attempt(pipe):
            # A release removes its id from this set, so it cannot slip between reading the
            # set and re-adding the lease: the set is watched.
            leases = {
                lease_id: pipe.hget(_lease_key(lease_id), "model")
                for lease_id in pipe.smembers(holder_key)
            }
            pipe.multi()
            for lease_id, model in leases.items():
                if model is None:  # its hash expired: it was long dead
                    pipe.srem(holder_key, lease_id)
                    continue
                # Re-added even if a store trimmed it (another machine's clock ran ahead).
                pipe.zadd(_leases_key(model), {lease_id: expires_at})
                pipe.expire(_lease_key(lease_id), ttl)
            pipe.expire(holder_key, ttl)
            return sum(model is not None for model in leases.values())

        return self._transact([holder_key], attempt)

    def read(self, *, now, model):
        with self._redis() as client:
            models = [model] if model is not None else sorted(client.smembers(_key("models")))
            pipe = client.pipeline(transaction=False)
            for name in models:
                pipe.get(_state_key(name))
                pipe.zcount(_leases_key(name), f"({now!r}", "+inf")
            replies = pipe.execute()
        snapshots = {}
        for name, raw, in_flight in zip(models, replies[::2], replies[1::2], strict=True):
            if raw is not None:
                snapshots[name] = Snapshot(_state(name, raw), in_flight)
        return snapshots

    def holders(self, model, *, now):
        with self._redis() as client:
            live = client.zrangebyscore(_leases_key(model), f"({now!r}", "+inf")
            pipe = client.pipeline(transaction=False)
            for lease_id in live:
                pipe.hget(_lease_key(lease_id), "holder")
            return dict(Counter(holder for holder in pipe.execute() if holder)) if live else {}

    def wipe(self):
        with self._redis() as client:
            keys = list(client.scan_iter(match=f"{PREFIX}:*", count=1000))
            if keys:
                client.delete(*keys)
        ModelState.objects.all().delete()
        self._registered.clear()

    def server_time(self):
        with self._redis() as client:
            seconds, microseconds = client.time()
        return seconds + microseconds / 1_000_000

    def register(self, model):
        if model not in self._registered:
            ModelState.objects.get_or_create(model=model)
            self._registered.add(model)

    def _transact(self, keys: list[str], attempt: Callable):
        """WATCH `keys`, run `attempt(pipe)` (reads, then pipe.multi() and queued writes),
        EXEC; on a conflicting write by anyone else, run it again."""
        with self._redis() as client, client.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(*keys)
                    result = attempt(pipe)
                    pipe.execute()
                    return result
                except redis.WatchError:
                    continue

    @contextmanager
    def _redis(self) -> Iterator[redis.Redis]:
        if self._client is None:
            self._client = redis.Redis.from_url(
                self.url,
                socket_connect_timeout=TIMEOUT_S,
                socket_timeout=TIMEOUT_S,
                decode_responses=True,
            )
        try:
            yield self._client
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise RuntimeError(
                f"The limiter's Redis at {_without_password(self.url)} is not answering: {exc}"
            ) from exc


def _key(*parts) -> str:
    return ":".join((PREFIX, *map(str, parts)))


def _state_key(model: str) -> str:
    return _key(model, "state")


def _leases_key(model: str) -> str:
    return _key(model, "leases")


def _lease_key(lease_id) -> str:
    return _key("lease", lease_id)


def _holder_key(holder: str) -> str:
    return _key("holder", holder)


def _key_ttl(lease_ttl_s: float) -> int:
    """Lease hashes and holder sets outlive their leases, then clean themselves up."""
    return max(1, math.ceil(3 * lease_ttl_s))


def _load(client, model: str) -> LimiterState:
    raw = client.get(_state_key(model))
    return _state(model, raw) if raw else LimiterState(model=model)


def _state(model: str, raw: str) -> LimiterState:
    return LimiterState(model=model, **json.loads(raw))


def _count(client, model: str, now: float) -> int:
    # Leases expiring after `now` only (exclusive), as Postgres counts expires_at > now.
    return client.zcount(_leases_key(model), f"({now!r}", "+inf")


def _add_lease(pipe, lease_id, model: str, lease: LeaseInfo, now: float) -> None:
    pipe.zadd(_leases_key(model), {lease_id: lease.expires_at})
    lease_key, holder_key = _lease_key(lease_id), _holder_key(lease.holder)
    pipe.hset(
        lease_key,
        mapping={
            "model": model,
            "holder": lease.holder,
            "input_estimate": lease.input_estimate,
            "output_reserve": lease.output_reserve,
        },
    )
    ttl = _key_ttl(lease.expires_at - now)
    pipe.expire(lease_key, ttl)
    pipe.sadd(holder_key, lease_id)
    pipe.expire(holder_key, ttl)


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
