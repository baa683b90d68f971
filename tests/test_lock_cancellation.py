"""The trading lock on Python 3.11, where `asyncio.wait_for` can swallow a
cancellation (redis-py sends through it when a socket timeout is set): no
backend call outlives its deadline, stopping the renewer ends the lease
first and never hangs, and a renewer that meets nonsense or an unforeseen
error reports the lease lost instead of dying silently.

The backends here are deliberately misbehaving fakes — what they model is
not a server but a client library's failure to honour a cancel, which no
real server can be asked to produce on cue. The same promises are shown
against a real, SIGSTOPped redis-server at the end.
"""
import asyncio
import time

import pytest

from understudy.coordinator import backend as backend_mod
from understudy.coordinator.backend import BackendNonsense, BackendUnavailable, LockBackend, LockState, Pause, bounded
from understudy.coordinator.redis_backend import RedisBackend, RedisSettings
from understudy.coordinator.trading_lock import RENEWER_STOP_WAIT_S, TradingLock

from .redisproc import RedisProcess

TTL = 0.6


class SwallowingBackend(LockBackend):
    """Grants at once; `renew` behaves as configured:
    - "swallow": completes, but only after ignoring one cancellation (3.11's wait_for when the
      inner call finished as the cancel landed) and answering "renewed";
    - "stubborn": never completes, whatever is cancelled, until `release_stubborn` is set;
    - an exception instance: raised."""

    def __init__(self, renew_mode):
        self.renew_mode = renew_mode
        self.renew_calls = 0
        self.renews_done = 0
        self.release_stubborn = asyncio.Event()
        self.epoch = 100

    async def try_acquire(self, node, ttl_s, epoch_floor, deadline):
        self.epoch += 1
        return self.epoch

    async def renew(self, node, epoch, ttl_s, deadline):
        self.renew_calls += 1
        mode = self.renew_mode
        if isinstance(mode, BaseException):
            raise mode
        if mode == "swallow":
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                pass  # swallowed: the caller is told the renewal went through
            self.renews_done += 1
            return True
        if mode == "stubborn":
            while not self.release_stubborn.is_set():
                try:
                    await self.release_stubborn.wait()
                except asyncio.CancelledError:
                    continue
            return True
        self.renews_done += 1
        return True

    async def restore(self, node, epoch, ttl_s, deadline):
        return False

    async def release(self, node, epoch, deadline):
        return True

    async def release_to(self, node, epoch, target, marker_ttl_s, deadline):
        return True

    async def inspect(self, deadline):
        return LockState(None, None, None, None, self.epoch)

    async def wait_until_free(self, timeout_s, deadline):
        await asyncio.sleep(timeout_s)

    async def get_pause(self, deadline):
        return Pause(False)

    async def set_pause(self, pause, deadline):
        return None

    async def append_history(self, entry, keep, deadline):
        return None

    async def read_history(self, limit, deadline):
        return []


async def _holder(mode, **kw) -> tuple[TradingLock, SwallowingBackend, list[str]]:
    backend = SwallowingBackend(mode)
    lost: list[str] = []
    lock = TradingLock(backend, "sg-1", TTL, renew_every_s=0.05, on_lost=lost.append, **kw)
    assert await lock.try_acquire() is not None
    return lock, backend, lost


async def test_bounded_returns_at_its_deadline_even_when_the_call_ignores_cancellation():
    release = asyncio.Event()

    async def ignores_cancel():
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue
        return "late"

    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match="no answer within"):
        await bounded(ignores_cancel(), time.monotonic() + 0.1, "stubborn")
    assert time.monotonic() - started < 0.2
    assert backend_mod.abandoned_calls >= 1
    release.set()
    await asyncio.sleep(0)


async def test_closing_while_a_renewal_swallows_its_cancellation_ends_the_lease_and_does_not_hang():
    lock, backend, _ = await _holder("swallow")
    await asyncio.sleep(0.12)  # a few renewals, one of them in flight now
    started = time.monotonic()
    await asyncio.wait_for(lock.close(), 2.0)
    assert time.monotonic() - started <= RENEWER_STOP_WAIT_S + 0.1
    assert lock.lease is None and not lock.may_trade()
    renewed = backend.renews_done
    await asyncio.sleep(0.3)
    assert backend.renews_done <= renewed + 1  # the swallowed one may finish; nothing after it
    assert backend.renew_calls <= renewed + 1


async def test_release_during_a_stubborn_renewal_returns_promptly_and_the_lease_is_gone_first():
    lock, backend, _ = await _holder("stubborn")
    await asyncio.sleep(0.1)  # the renewer is now stuck in a call that never ends
    started = time.monotonic()
    assert await asyncio.wait_for(lock.release(), 2.0)
    assert time.monotonic() - started <= RENEWER_STOP_WAIT_S + 0.2
    assert lock.lease is None
    backend.release_stubborn.set()


async def test_a_stubborn_backend_loses_the_lease_by_its_safe_deadline_and_says_so():
    lock, backend, lost = await _holder("stubborn")
    deadline = lock.lease.safe_deadline
    while not lost and time.monotonic() < deadline + 1.0:
        await asyncio.sleep(0.01)
    assert lost and time.monotonic() <= deadline + 0.1
    assert lock.lease is None and not lock.may_trade()
    backend.release_stubborn.set()
    await lock.close()


@pytest.mark.parametrize("error", [BackendNonsense("renew: an answer that is not JSON"),
                                   ValueError("invalid literal for int()"),
                                   KeyError("Session")], ids=["nonsense", "value-error", "key-error"])
async def test_a_renewal_answered_with_nonsense_or_failing_unforeseen_ends_the_lease_and_reports_it(error):
    lock, backend, lost = await _holder(error)
    deadline = lock.lease.safe_deadline
    while not lost and time.monotonic() < deadline + 1.0:
        await asyncio.sleep(0.005)
    assert lost, "the renewer died without reporting the lease lost"
    assert time.monotonic() < deadline
    assert lock.lease is None and lock.renew_errors == 1
    await lock.close()


async def test_a_real_redis_frozen_mid_renewal_cannot_hold_close_or_acquire_past_their_deadlines(tmp_path):
    redis = RedisProcess(tmp_path).start()
    try:
        lock = TradingLock(RedisBackend(RedisSettings(port=redis.port, key_prefix="stall")), "sg-1", TTL)
        lost: list[str] = []
        lock.on_lost = lost.append
        assert await lock.acquire(timeout_s=3) is not None  # past the quarantine of a new Redis
        deadline = lock.lease.safe_deadline
        redis.freeze()
        try:
            while not lost and time.monotonic() < deadline + 1.0:
                await asyncio.sleep(0.01)
            assert lost and time.monotonic() <= deadline + 0.1
            started = time.monotonic()
            await asyncio.wait_for(lock.close(), 2.0)
            assert time.monotonic() - started <= RENEWER_STOP_WAIT_S + 0.1
            other = TradingLock(RedisBackend(RedisSettings(port=redis.port, key_prefix="stall")), "sg-2", TTL)
            started = time.monotonic()
            with pytest.raises(BackendUnavailable):
                await other.try_acquire()
            assert time.monotonic() - started <= TTL + 0.1
        finally:
            redis.thaw()
        await lock.backend.close()
        await other.backend.close()
    finally:
        redis.kill()


async def test_a_service_that_is_not_redis_on_the_lock_port_is_nonsense_not_silence():
    """What a misrouted lock address answers: an HTTP server's reply to RESP."""

    async def http_server(reader, writer):
        await reader.read(100)
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(http_server, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    backend = RedisBackend(RedisSettings(port=port, key_prefix="garbage"))
    try:
        with pytest.raises(BackendNonsense, match="renew"):
            await backend.renew("sg-1", 7, TTL, time.monotonic() + 1.0)
    finally:
        await backend.close()
        server.close()
        await server.wait_closed()
