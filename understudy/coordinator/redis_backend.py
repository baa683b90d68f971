"""The trading lock on Redis: `SET NX PX` inside a Lua script that also
bumps the epoch, and compare-then-act scripts for renew and release, so a
node can only ever extend or free the lock it holds at its own epoch.

A Redis restart that lost its data is survived in two ways:
- the epoch is `max(last + 1, Redis TIME in ms, caller's floor + 1)` (see
  `next_epoch`), so it never repeats;
- the lock key is gone while its holder's lease may still be running, so a
  Redis that has no epoch key (new, or restarted empty) quarantines the lock
  for one TTL from the first attempt before granting it: every lease granted
  before the restart ends within one TTL of its last renewal. The holder's
  next renewal finds the key gone and gives the lease up.
Run Redis with AOF (`appendfsync everysec` or `always`) anyway: it keeps the
pause flag and the history, and spares the quarantine.
"""
import asyncio
import dataclasses
import json
import time
from dataclasses import dataclass

import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import (ClusterDownError, NoPermissionError, OutOfMemoryError, ReadOnlyError, RedisError,
                              ResponseError, TryAgainError)
from redis.exceptions import TimeoutError as RedisTimeoutError

from .backend import BackendNonsense, BackendUnavailable, HistoryEntry, LockBackend, LockState, Pause, bounded

# Error replies a healthy Redis gives while it cannot answer for now (a replica without its master,
# out of memory, a script running long; LOADING is a ConnectionError in redis-py), or that refuse
# us as a wrong password does (an ACL without our keys): no answer, in effect. Anything else it
# says is nonsense.
_TRANSIENT_ERRORS = (ReadOnlyError, TryAgainError, ClusterDownError, OutOfMemoryError, NoPermissionError)
_TRANSIENT_REPLIES = ("BUSY", "NOREPLICAS", "MASTERDOWN")

_ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return {0, 'held'} end
local marker = redis.call('GET', KEYS[3])
if marker and marker ~= ARGV[1] then return {0, 'handover'} end
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('EXISTS', KEYS[2]) == 0 then
  local quarantine_until = tonumber(redis.call('GET', KEYS[4]) or '0')
  if quarantine_until == 0 then
    redis.call('SET', KEYS[4], string.format('%d', now_ms + tonumber(ARGV[2])))
    return {0, 'quarantine'}
  end
  if now_ms < quarantine_until then return {0, 'quarantine'} end
end
local stored = tonumber(redis.call('GET', KEYS[2]) or '0')
local epoch = math.max(stored + 1, now_ms, tonumber(ARGV[3]) + 1)
local text = string.format('%d', epoch)
redis.call('SET', KEYS[2], text)
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. text, 'PX', ARGV[2])
redis.call('DEL', KEYS[3], KEYS[4])
return {text, 'ok'}
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
_RESTORE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return 0 end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[2], 'PX', ARGV[3])
return 1
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  if ARGV[2] ~= '' then redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3]) end
  return 1
end
return 0
"""


@dataclass(frozen=True)
class RedisSettings:
    host: str = "127.0.0.1"
    port: int = 6379
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None
    key_prefix: str = "understudy"
    connect_timeout_s: float = 0.5


class RedisBackend(LockBackend):
    def __init__(self, settings: RedisSettings):
        self._client = redis.Redis(
            host=settings.host, port=settings.port, username=settings.username, password=settings.password,
            ssl=settings.tls, ssl_ca_certs=settings.ca_file if settings.tls else None,
            socket_connect_timeout=settings.connect_timeout_s, decode_responses=True,
            # No socket timeout: with one, redis-py sends through asyncio.wait_for, which on Python
            # 3.11 can swallow a cancellation. Every call is bounded by `bounded()` instead.
            socket_timeout=None,
        )
        p = settings.key_prefix
        self._lock, self._epoch, self._handover = f"{p}:lock", f"{p}:epoch", f"{p}:handover"
        self._pause, self._history = f"{p}:pause", f"{p}:history"
        self._quarantine = f"{p}:quarantine"
        self._acquire = self._client.register_script(_ACQUIRE)
        self._renew = self._client.register_script(_RENEW)
        self._release = self._client.register_script(_RELEASE)
        self._restore = self._client.register_script(_RESTORE)

    async def _call(self, awaitable, deadline: float, what: str):
        try:
            return await bounded(awaitable, deadline, what)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise BackendUnavailable(f"{what}: {exc}") from exc
        except ResponseError as exc:
            if isinstance(exc, _TRANSIENT_ERRORS) or str(exc).startswith(_TRANSIENT_REPLIES):
                raise BackendUnavailable(f"{what}: {type(exc).__name__}: {exc}") from exc
            raise BackendNonsense(f"{what}: Redis answered {type(exc).__name__}: {exc}") from exc
        except RedisError as exc:
            # A reply that is not RESP (another service on the port, a corrupt stream).
            raise BackendNonsense(f"{what}: {type(exc).__name__}: {exc}") from exc
        except (ValueError, TypeError, UnicodeDecodeError) as exc:
            raise BackendNonsense(f"{what}: an answer of the wrong shape: {exc!r}") from exc

    async def try_acquire(self, node: str, ttl_s: float, epoch_floor: int, deadline: float) -> int | None:
        epoch, outcome = await self._call(
            self._acquire(keys=[self._lock, self._epoch, self._handover, self._quarantine],
                          args=[node, int(ttl_s * 1000), epoch_floor]),
            deadline, "acquire")
        return int(epoch) if outcome == "ok" else None

    async def renew(self, node: str, epoch: int, ttl_s: float, deadline: float) -> bool:
        return bool(await self._call(self._renew(keys=[self._lock], args=[f"{node}|{epoch}", int(ttl_s * 1000)]),
                                     deadline, "renew"))

    async def restore(self, node: str, epoch: int, ttl_s: float, deadline: float) -> bool:
        return bool(await self._call(
            self._restore(keys=[self._lock, self._epoch, self._handover], args=[node, str(epoch), int(ttl_s * 1000)]),
            deadline, "restore"))

    async def release(self, node: str, epoch: int, deadline: float) -> bool:
        return bool(await self._call(
            self._release(keys=[self._lock, self._handover], args=[f"{node}|{epoch}", "", 0]), deadline, "release"))

    async def release_to(self, node: str, epoch: int, target: str, marker_ttl_s: float, deadline: float) -> bool:
        return bool(await self._call(
            self._release(keys=[self._lock, self._handover], args=[f"{node}|{epoch}", target, int(marker_ttl_s * 1000)]),
            deadline, "release-to"))

    async def inspect(self, deadline: float) -> LockState:
        async def read():
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.get(self._lock).pttl(self._lock).get(self._handover).get(self._epoch)
                return await pipe.execute()

        value, pttl, handover, last = await self._call(read(), deadline, "inspect")
        holder = epoch = None
        if value:
            holder, _, epoch_text = value.rpartition("|")
            epoch = int(epoch_text)
        return LockState(holder, epoch, pttl / 1000 if value and pttl >= 0 else None, handover, int(last or 0))

    async def wait_until_free(self, timeout_s: float, deadline: float) -> None:
        """Returns once the key is gone and no quarantine holds the lock."""
        until = time.monotonic() + timeout_s

        async def read():
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.pttl(self._lock).get(self._quarantine).time()
                return await pipe.execute()

        while time.monotonic() < until:
            pttl, quarantine_until, (seconds, micros) = await self._call(read(), deadline, "wait")
            if pttl == -2:
                quarantine_left_ms = int(quarantine_until or 0) - (seconds * 1000 + micros // 1000)
                if quarantine_left_ms <= 0:
                    return
                pttl = quarantine_left_ms
            # Wake at the expiry, but look again within 20 ms: a release can come at any moment.
            step = 0.02 if pttl < 0 else min(pttl / 1000, 0.02)
            await asyncio.sleep(max(0.001, min(step, until - time.monotonic())))

    async def get_pause(self, deadline: float) -> Pause:
        data = await self._call(self._client.hgetall(self._pause), deadline, "get-pause")
        if not data:
            return Pause(False)
        return Pause(data.get("paused") == "1", data.get("by", ""), data.get("reason", ""), float(data.get("since", 0)))

    async def set_pause(self, pause: Pause, deadline: float) -> None:
        await self._call(self._client.hset(self._pause, mapping={
            "paused": "1" if pause.paused else "0", "by": pause.by, "reason": pause.reason, "since": pause.since}),
            deadline, "set-pause")

    async def append_history(self, entry: HistoryEntry, keep: int, deadline: float) -> None:
        async def write():
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.lpush(self._history, json.dumps(dataclasses.asdict(entry)))
                pipe.ltrim(self._history, 0, keep - 1)
                await pipe.execute()

        await self._call(write(), deadline, "history")

    async def read_history(self, limit: int, deadline: float) -> list[HistoryEntry]:
        rows = await self._call(self._client.lrange(self._history, 0, limit - 1), deadline, "history")
        return [HistoryEntry(**json.loads(row)) for row in rows]

    async def close(self) -> None:
        await self._client.aclose()

