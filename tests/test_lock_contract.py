"""One contract for every trading-lock backend, each on the real server: a
redis-server, and a Consul 1.15.4 dev agent (built by the bootstrap) — its
HTTP reached through a toxiproxy link, so a test can stall the network while
Consul's own timers keep running, or freeze the agent itself with SIGSTOP."""
import asyncio
import time
import uuid

import pytest

from understudy.chaos.toxics import ToxiproxyServer
from understudy.consul_agent import ConsulDev
from understudy.coordinator.backend import BackendUnavailable, HistoryEntry, Pause
from understudy.coordinator.consul_backend import ConsulBackend, ConsulSettings
from understudy.coordinator.redis_backend import RedisBackend, RedisSettings
from understudy.coordinator.trading_lock import TradingLock
from tests.redisproc import RedisProcess

TTL = 0.5
BACKENDS = ["redis", "consul"]


@pytest.fixture(scope="module")
def toxiproxy(tmp_path_factory):
    server = ToxiproxyServer(tmp_path_factory.mktemp("toxiproxy") / "toxiproxy.log").start()
    yield server
    server.stop()


class Cluster:
    """A backend under test and a way to make clients of it, one per node."""

    def __init__(self, kind: str, tmp_path, toxiproxy=None):
        self.kind = kind
        self.tmp_path = tmp_path
        self.toxiproxy = toxiproxy
        self.prefix = f"test-{uuid.uuid4().hex[:8]}"
        self.clients = []
        self.locks: list[TradingLock] = []
        self.redis: RedisProcess | None = None
        self.consul: ConsulDev | None = None
        self.link = None

    async def start(self) -> "Cluster":
        if self.kind == "redis":
            self.redis = RedisProcess(self.tmp_path).start()
        else:
            self.consul = await asyncio.to_thread(ConsulDev(self.tmp_path).start)
            self.link = self.toxiproxy.link(f"consul-{self.prefix}", "127.0.0.1:0", self.consul.agent.address)
            self.url = f"http://{self.link.address}"
        return self

    def client(self):
        if self.kind == "redis":
            backend = RedisBackend(RedisSettings(port=self.redis.port, key_prefix=self.prefix))
        else:
            backend = ConsulBackend(ConsulSettings(urls=(self.url,), key_prefix=self.prefix))
        self.clients.append(backend)
        return backend

    def lock(self, node: str, **kw) -> TradingLock:
        lock = TradingLock(self.client(), node, kw.pop("ttl_s", TTL), **kw)
        self.locks.append(lock)
        return lock

    def frees_within(self) -> float:
        """How long after a silent holder's last renewal this backend frees the key, at most."""
        return self.client().frees_within_s(TTL)

    def stall(self):
        """The backend process stops answering (SIGSTOP): not a refusal, and its timers stop too."""
        (self.redis or self.consul.agent).freeze()

    def unstall(self):
        (self.redis or self.consul.agent).thaw()

    def cut(self):
        """Nothing reaches the backend, which goes on (Consul's session timers keep running).
        Redis needs no cut: it expires keys by the clock even while frozen."""
        if self.link is not None:
            self.link.timeout(0)
        else:
            self.stall()

    def heal(self):
        if self.link is not None:
            self.link.clear()
        else:
            self.unstall()

    async def stop(self):
        self.unstall()
        for lock in self.locks:
            await lock.close()
        for client in self.clients:
            await client.close()
        if self.redis:
            self.redis.kill()
        if self.link is not None:
            self.link.destroy()
        if self.consul:
            await asyncio.to_thread(self.consul.stop)


@pytest.fixture(params=BACKENDS)
async def cluster(request, tmp_path):
    proxy = request.getfixturevalue("toxiproxy") if request.param != "redis" else None
    c = await Cluster(request.param, tmp_path, proxy).start()
    try:
        yield c
    finally:
        await c.stop()


def deadline(seconds: float = 2.0) -> float:
    return time.monotonic() + seconds


async def test_one_holder_at_a_time_and_epochs_increase(cluster):
    a, b = cluster.lock("sg-1"), cluster.lock("sg-2")
    lease_a = await a.acquire(timeout_s=3)
    assert lease_a is not None and a.may_trade()
    assert await b.try_acquire() is None
    state = await cluster.client().inspect(deadline())
    assert (state.holder, state.epoch) == ("sg-1", lease_a.epoch)
    assert state.last_epoch == lease_a.epoch

    assert await a.release()
    assert not a.may_trade()
    lease_b = await b.acquire(timeout_s=2)
    assert lease_b is not None and lease_b.epoch > lease_a.epoch
    # The old holder can neither renew nor release the new holder's lock.
    assert not await a.backend.renew("sg-1", lease_a.epoch, TTL, deadline())
    assert not await a.backend.release("sg-1", lease_a.epoch, deadline())
    assert (await a.backend.inspect(deadline())).holder == "sg-2"
    await a.close()
    await b.release()


async def test_renewal_keeps_the_lease_alive(cluster):
    a, b = cluster.lock("sg-1"), cluster.lock("sg-2")
    lease = await a.acquire(timeout_s=3)
    await asyncio.sleep(TTL * 3)
    assert a.may_trade() and a.lease.epoch == lease.epoch and a.renewals >= 4
    assert await b.try_acquire() is None
    await a.release()


async def test_handover_marker_admits_only_the_target(cluster):
    a, b, c = cluster.lock("sg-1"), cluster.lock("sg-2"), cluster.lock("sg-3")
    first = await a.acquire(timeout_s=3)
    assert await a.release(target="sg-2", marker_ttl_s=1.0)
    assert (await a.backend.inspect(deadline())).handover_to == "sg-2"
    assert await c.try_acquire() is None
    second = await b.try_acquire()
    assert second is not None and second.epoch > first.epoch
    await b.release(target="sg-3", marker_ttl_s=0.3)
    assert await a.try_acquire() is None
    await asyncio.sleep(0.4)  # the marker lapses: anyone may take the lock
    assert await a.try_acquire() is not None
    await a.release()


async def test_silent_holder_is_replaced_within_ttl_plus_100ms(cluster):
    holder, waiter = cluster.lock("sg-1"), cluster.lock("sg-2")
    await holder.acquire(timeout_s=3)
    await asyncio.sleep(TTL / 2)
    # The holder freezes right after a renewal: its lease ends, nobody releases.
    last_renewal_sent = time.monotonic()
    assert await holder.backend.renew("sg-1", holder.lease.epoch, TTL, deadline())
    await holder._stop_renewing()
    lease = await waiter.acquire(timeout_s=3)
    replaced_after = time.monotonic() - last_renewal_sent
    assert lease is not None
    # Redis frees the key one TTL after the last renewal; Consul between one and two.
    assert replaced_after <= cluster.frees_within() + 0.1, f"replaced after {replaced_after * 1000:.0f} ms"
    assert not holder.may_trade(), "the frozen holder's lease ended before the new one began"
    await waiter.release()


async def test_unreachable_backend_loses_the_lease_by_its_safe_deadline(cluster):
    lost_at = []
    holder = cluster.lock("sg-1", on_lost=lambda reason: lost_at.append((time.monotonic(), reason)))
    await holder.acquire(timeout_s=3)
    await asyncio.sleep(0.05)
    cluster.stall()
    try:
        safe_deadline = holder.lease.safe_deadline
        started = time.monotonic()
        with pytest.raises(BackendUnavailable):
            await holder.backend.inspect(started + 0.1)
        assert time.monotonic() - started < 0.15, "a backend call blocked past its deadline"
        while not lost_at and time.monotonic() < safe_deadline + 1:
            assert holder.may_trade() == (time.monotonic() < safe_deadline)
            await asyncio.sleep(0.002)
        assert lost_at, "the lease was never reported lost"
        assert lost_at[0][0] <= safe_deadline + 0.02
        assert not holder.may_trade(safe_deadline)
    finally:
        cluster.unstall()
    await holder.close()


async def test_a_lapsed_lock_is_restored_at_its_epoch_only_if_nobody_took_it(cluster):
    holder, other = cluster.lock("sg-1"), cluster.lock("sg-2")
    lease = await holder.acquire(timeout_s=3)
    await holder._stop_renewing()  # the holder is cut off from the backend (riding the peer lease)
    await asyncio.sleep(cluster.frees_within() + 0.3)  # long enough for the key to lapse
    assert (await other.backend.inspect(deadline())).holder is None
    assert not await holder.backend.renew("sg-1", lease.epoch, TTL, deadline())
    assert await holder.backend.restore("sg-1", lease.epoch, TTL, deadline())
    state = await other.backend.inspect(deadline())
    assert (state.holder, state.epoch, state.last_epoch) == ("sg-1", lease.epoch, lease.epoch)
    assert await other.try_acquire() is None
    assert not await holder.backend.restore("sg-1", lease.epoch, TTL, deadline()), "restored over a held key"

    # Once anyone acquired after it, there is no going back to the old epoch.
    assert await holder.backend.release("sg-1", lease.epoch, deadline())
    second = await other.try_acquire()
    assert second is not None and second.epoch > lease.epoch
    assert await other.release()
    assert not await holder.backend.restore("sg-1", lease.epoch, TTL, deadline())
    assert not await other.backend.restore("sg-2", second.epoch + 1, TTL, deadline()), "an epoch never issued"
    assert (await other.backend.inspect(deadline())).holder is None


async def test_a_renewal_that_finds_the_key_lapsed_restores_it(cluster):
    """The TradingLock side: the backend stalled past the key's TTL while the
    peer lease kept the holder trading; when it answers again the holder keeps
    its epoch instead of losing the lock."""
    lost = []
    holder = cluster.lock("sg-1", on_lost=lost.append)
    holder.failsafe_until = lambda: time.monotonic() + 0.3  # a standby that keeps vouching
    lease = await holder.acquire(timeout_s=3)
    cluster.cut()
    try:
        await asyncio.sleep(cluster.frees_within() + TTL)  # the backend has let the key lapse by now
        assert holder.may_trade() and holder.on_failsafe()
    finally:
        cluster.heal()
    await asyncio.sleep(TTL)
    assert holder.restores == 1, "the key lapsed during the stall: the renewal had to restore it"
    assert not lost and holder.lease.epoch == lease.epoch and holder.may_trade() and not holder.on_failsafe()
    state = await holder.backend.inspect(deadline())
    assert (state.holder, state.epoch) == ("sg-1", lease.epoch)
    await holder.release()


async def test_pause_flag_and_history(cluster):
    backend = cluster.client()
    assert (await backend.get_pause(deadline())).paused is False
    await backend.set_pause(Pause(True, "ops", "maintenance", 1700000000.0), deadline())
    assert await backend.get_pause(deadline()) == Pause(True, "ops", "maintenance", 1700000000.0)
    await backend.set_pause(Pause(False, "ops", "done", 1700000100.0), deadline())
    assert (await backend.get_pause(deadline())).paused is False

    for epoch in range(1, 6):
        await backend.append_history(HistoryEntry(epoch, f"n{epoch - 1}", f"n{epoch}", "failover", 1.0 * epoch,
                                                  {"detect_s": 1.0}), keep=3, deadline=deadline())
    history = await backend.read_history(10, deadline())
    assert [h.epoch for h in history] == [5, 4, 3]
    assert history[0] == HistoryEntry(5, "n4", "n5", "failover", 5.0, {"detect_s": 1.0})


async def test_redis_restart_without_persistence_still_increases_the_epoch(tmp_path):
    cluster = await Cluster("redis", tmp_path).start()
    try:
        lock = cluster.lock("sg-1")
        before = await lock.acquire(timeout_s=3)
        cluster.redis.restart()  # every key is gone, the live lock with them
        renewal_lost = time.monotonic()
        while lock.lease is not None and time.monotonic() - renewal_lost < 2:
            await asyncio.sleep(0.01)
        assert lock.lease is None and "no longer ours" in lock.lost_reason

        other = cluster.lock("sg-2")
        started = time.monotonic()
        after = await other.acquire(timeout_s=5)
        assert after is not None and after.epoch > before.epoch
        # The empty Redis held the lock back for one TTL: the old lease had surely ended.
        assert time.monotonic() - started >= TTL - 0.05
    finally:
        await cluster.stop()


async def test_redis_acl_user_from_config(tmp_path, monkeypatch):
    import msgspec

    from understudy.config import LockSection, Secrets
    from understudy.coordinator.factory import make_trading_lock

    redis = RedisProcess(tmp_path, extra_args=("--user", "understudy", "on", ">s3cret", "~ha:*", "+@all")).start()
    try:
        section = msgspec.convert({"backend": "redis", "ttl_s": TTL, "redis": {
            "port": redis.port, "username": "understudy", "key_prefix": "ha"}}, LockSection)
        good = make_trading_lock(section, Secrets("k", "s", "t", lock_password="s3cret"), "sg-1")
        assert await good.acquire(timeout_s=3) is not None
        await good.release()
        await good.backend.close()

        wrong = make_trading_lock(section, Secrets("k", "s", "t", lock_password="nope"), "sg-2")
        with pytest.raises(BackendUnavailable):
            await wrong.try_acquire()
        await wrong.backend.close()

        outside = msgspec.convert({"backend": "redis", "ttl_s": TTL, "redis": {
            "port": redis.port, "username": "understudy", "key_prefix": "other"}}, LockSection)
        denied = make_trading_lock(outside, Secrets("k", "s", "t", lock_password="s3cret"), "sg-2")
        with pytest.raises(BackendUnavailable):  # NOPERM: the ACL confines the user to its keys
            await denied.try_acquire()
        await denied.backend.close()
    finally:
        redis.kill()
