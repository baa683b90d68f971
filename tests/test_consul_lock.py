"""What the Consul lock promises beyond the common contract, on real Consul
1.15.4: a dev agent for the session's shape, the servers' TTL floor and the
ACL policy we ship; a 3-server cluster on loopback for the timing, a server
that leaves and a leader that dies."""
import asyncio
import json
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from understudy.consul_agent import ConsulCluster, ConsulDev
from understudy.coordinator.backend import BackendMisconfigured, BackendUnavailable, HistoryEntry, Pause
from understudy.coordinator.consul_backend import ConsulBackend, ConsulSettings, parse_go_duration
from understudy.coordinator.trading_lock import TradingLock

TTL = 0.5
POLICY = Path(__file__).resolve().parents[1] / "deploy" / "ansible" / "roles" / "consul" / "files" / \
    "understudy-lock-policy.hcl"


def deadline(seconds: float = 2.0) -> float:
    return time.monotonic() + seconds


def api(url: str, path: str, token: str | None = None, method: str = "GET", body=None, timeout: float = 5):
    request = urllib.request.Request(f"{url}{path}", method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"X-Consul-Token": token} if token else {})
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        return json.loads(resp.read() or b"null")


def backend(urls, prefix: str, token: str | None = None) -> ConsulBackend:
    return ConsulBackend(ConsulSettings(urls=tuple(urls), key_prefix=prefix, token=token))


@pytest.fixture
async def dev(tmp_path):
    agent = await asyncio.to_thread(ConsulDev(tmp_path).start)
    yield agent
    await asyncio.to_thread(agent.stop)


def test_go_durations_as_consul_prints_them():
    assert parse_go_duration("100ms") == pytest.approx(0.1)
    assert parse_go_duration("10s") == 10.0
    assert parse_go_duration("1m30s") == 90.0
    assert parse_go_duration("1h0m0s") == 3600.0
    with pytest.raises(ValueError):
        parse_go_duration("10 s")


async def test_the_session_has_a_sub_second_ttl_no_checks_no_lock_delay_and_a_node_of_its_own(dev):
    lock = TradingLock(backend(dev.urls, "shape"), "sg-1", TTL)
    await lock.acquire(timeout_s=3)
    try:
        session = api(dev.agent.url, f"/v1/session/info/{lock.backend._session_id}")[0]
        assert (session["TTL"], session["LockDelay"], session["Behavior"]) == ("500ms", 0, "release")
        assert session["NodeChecks"] in ([], None) and session["ServiceChecks"] in ([], None)
        # Not the agent's node: ours, which no agent owns, so none can take the session with it.
        assert session["Node"] == "shape-sg-1" != dev.agent.name
        node = api(dev.agent.url, "/v1/catalog/node/shape-sg-1")["Node"]
        assert node["Meta"] == {"understudy": "trading-lock"}
    finally:
        await lock.release()
        await lock.backend.close()


async def test_a_ttl_under_the_servers_session_ttl_min_is_refused_by_name(tmp_path):
    strict = await asyncio.to_thread(ConsulDev(tmp_path, config={"session_ttl_min": "10s"}).start)
    client = backend(strict.urls, "strict")
    try:
        with pytest.raises(BackendMisconfigured, match=r"lock\.ttl_s: 0\.5 s is under .*session_ttl_min \(10s"):
            await client.check(TTL, deadline())
        await client.check(10.0, deadline())
        with pytest.raises(BackendMisconfigured, match=r"lock\.ttl_s: Consul refused a 500ms session TTL"):
            # First the quarantine of a new Consul, then the session itself: both are refused.
            for _ in range(3):
                await client.try_acquire("sg-1", TTL, 0, deadline())
    finally:
        await client.close()
        await asyncio.to_thread(strict.stop)


async def test_a_lost_race_burns_no_epoch(dev):
    locks = [TradingLock(backend(dev.urls, "race"), f"sg-{i}", TTL) for i in range(6)]
    try:
        first = await locks[0].acquire(timeout_s=3)  # past the new Consul's quarantine
        await locks[0].release()
        results = await asyncio.gather(*(lock.try_acquire() for lock in locks), return_exceptions=True)
        winners = [r for r in results if r is not None and not isinstance(r, BaseException)]
        assert len(winners) == 1 and winners[0].epoch > first.epoch
        state = await locks[0].backend.inspect(deadline())
        assert state.last_epoch == state.epoch == winners[0].epoch  # the losers bumped nothing
    finally:
        for lock in locks:
            await lock.close()
            await lock.backend.close()


async def test_a_new_consul_holds_the_first_grant_back_one_ttl(dev):
    """A Consul with no epoch key (new, or its data lost while a lease may
    still run) lets nobody in until a session of its own has expired: Consul's
    timer, not anyone's wall clock."""
    lock = TradingLock(backend(dev.urls, "fresh"), "sg-1", TTL)
    try:
        started = time.monotonic()
        assert await lock.try_acquire() is None
        lease = await lock.acquire(timeout_s=3)
        assert lease is not None and time.monotonic() - started >= TTL - 0.05
    finally:
        await lock.close()
        await lock.backend.close()


async def test_the_shipped_acl_policy_is_enough_and_no_more(tmp_path):
    root = uuid.uuid4().hex
    secured = await asyncio.to_thread(ConsulDev(tmp_path, config={
        "acl": {"enabled": True, "default_policy": "deny", "tokens": {"initial_management": root}}}).start)
    url = secured.agent.url
    try:
        api(url, "/v1/acl/policy", root, "PUT", {"Name": "understudy-lock", "Rules": POLICY.read_text()})
        token = api(url, "/v1/acl/token", root, "PUT", {"Policies": [{"Name": "understudy-lock"}]})["SecretID"]
        client = backend(secured.urls, "understudy", token)
        await client.check(TTL, deadline())
        lock = TradingLock(client, "sg-1", TTL)
        lease = await lock.acquire(timeout_s=3)
        assert lease is not None
        await asyncio.sleep(TTL)
        assert lock.may_trade() and lock.renewals >= 2
        await client.set_pause(Pause(True, "ops", "drill", 1.0), deadline())
        await client.append_history(HistoryEntry(lease.epoch, None, "sg-1", "start", 1.0), 5, deadline())
        assert (await client.get_pause(deadline())).paused
        assert (await client.read_history(5, deadline()))[0].epoch == lease.epoch
        assert await lock.release()

        outside = backend(secured.urls, "elsewhere", token)
        with pytest.raises(BackendUnavailable, match="refused the token"):
            await outside.try_acquire("sg-1", TTL, 0, deadline())
        anonymous = backend(secured.urls, "understudy")
        with pytest.raises(BackendUnavailable, match="refused the token"):
            await anonymous.set_pause(Pause(False), deadline())
        for c in (client, outside, anonymous):
            await c.close()
    finally:
        await asyncio.to_thread(secured.stop)


# -- a 3-server cluster ------------------------------------------------------------------
@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    cluster = ConsulCluster(tmp_path_factory.mktemp("consul-cluster")).start()
    cluster.wait_leader()
    yield cluster
    cluster.stop()


async def test_on_the_cluster_a_silent_holder_is_replaced_within_two_ttls(servers):
    prefix = f"timing-{uuid.uuid4().hex[:6]}"
    holder = TradingLock(backend(servers.urls, prefix), "sg-1", TTL)
    waiter = TradingLock(backend(servers.urls[::-1], prefix), "sg-2", TTL)
    try:
        for _ in range(3):
            await holder.acquire(timeout_s=3)
            await asyncio.sleep(TTL / 2)
            last_renewal_sent = time.monotonic()
            assert await holder.backend.renew("sg-1", holder.lease.epoch, TTL, deadline())
            await holder.close()  # frozen: no more renewals, no release
            lease = await waiter.acquire(timeout_s=3)
            replaced_after = time.monotonic() - last_renewal_sent
            assert lease is not None and TTL <= replaced_after <= 2 * TTL + 0.1, replaced_after
            assert await waiter.release()
    finally:
        for lock in (holder, waiter):
            await lock.close()
            await lock.backend.close()


async def test_the_session_survives_the_server_it_was_made_on_leaving_the_cluster(tmp_path):
    cluster = await asyncio.to_thread(lambda: ConsulCluster(tmp_path, prefix="leaving").start())
    try:
        leader = await asyncio.to_thread(cluster.wait_leader)
        follower = next(s for s in cluster.servers if s is not leader)
        others = [s.url for s in cluster.servers if s is not follower]
        lock = TradingLock(backend([follower.url, *others], "leave"), "sg-1", TTL)
        other = TradingLock(backend(others, "leave"), "sg-2", TTL)
        lease = await lock.acquire(timeout_s=3)
        # A graceful leave deregisters the server's own node, and every session on it with it;
        # Consul drains the server's RPC traffic first, then it shuts down (~14 s in all).
        leaving = asyncio.create_task(asyncio.to_thread(api, follower.url, "/v1/agent/leave", None, "PUT", None, 30))
        gone_at = None
        while gone_at is None or time.monotonic() < gone_at + 2 * TTL + 0.5:
            await asyncio.sleep(0.1)
            assert lock.may_trade() and lock.lease.epoch == lease.epoch, lock.lost_reason
            assert await other.try_acquire() is None
            if gone_at is None and not follower.alive:
                gone_at = time.monotonic()
        await leaving
        assert lock.backend.server_failovers >= 1 and lock.restores == 0
        await lock.release()
        for c in (lock, other):
            await c.close()
            await c.backend.close()
    finally:
        await asyncio.to_thread(cluster.stop)


async def test_a_leader_election_is_ridden_out_on_the_peer_lease(servers):
    """The leader dies (SIGKILL); writes stop for seconds while the others
    elect a new one. The holder, vouched for by its peer, trades on, keeps
    its epoch, and nobody else gets the lock."""
    prefix = f"election-{uuid.uuid4().hex[:6]}"
    lost = []
    holder = TradingLock(backend(servers.urls, prefix), "sg-1", TTL, on_lost=lost.append)
    holder.failsafe_until = lambda: time.monotonic() + 0.3  # a standby that keeps hearing the primary
    contender = TradingLock(backend(servers.urls[::-1], prefix), "sg-2", TTL)
    try:
        lease = await holder.acquire(timeout_s=5)
        old_leader = servers.wait_leader()
        old_leader.kill()
        killed_at = time.monotonic()
        new_leader = await asyncio.to_thread(servers.wait_leader, 20.0, old_leader)
        elected_after = time.monotonic() - killed_at
        renewals_at_election = holder.renewals
        while holder.renewals == renewals_at_election and time.monotonic() - killed_at < 15:
            assert holder.may_trade()
            try:
                assert await contender.try_acquire() is None
            except BackendUnavailable:
                pass
            await asyncio.sleep(0.1)
        renewed_after = time.monotonic() - killed_at
        assert not lost and holder.lease.epoch == lease.epoch and holder.may_trade(), (lost, renewed_after)
        state = await contender.backend.inspect(deadline())
        assert (state.holder, state.epoch) == ("sg-1", lease.epoch)
        print(f"leader {old_leader.name} killed: {new_leader.name} elected after {elected_after:.2f} s, "
              f"holder renewed after {renewed_after:.2f} s")
    finally:
        for lock in (holder, contender):
            await lock.close()
            await lock.backend.close()
        old_leader.start()
        await asyncio.to_thread(old_leader.wait_ready, 30.0)


async def test_a_release_racing_the_same_nodes_next_acquisition_never_frees_the_new_epoch(dev):
    """A candidate may try again while its previous lease's release is still
    talking to Consul. Both use this node's session: a release that also
    destroyed it would free the newer epoch's key under its lease (the
    property test caught exactly that). Tried at several offsets."""
    prefix = f"race-{uuid.uuid4().hex[:6]}"
    ttl = 0.2  # short, so that each offset's watch past two TTLs is short too
    lock = TradingLock(backend(dev.urls, prefix), "sg-1", ttl)
    other = TradingLock(backend(dev.urls, prefix), "sg-2", ttl)
    try:
        await lock.acquire(timeout_s=3)
        for offset_ms in (0, 1, 2, 3, 5, 8, 12):
            released = asyncio.create_task(lock.release())
            await asyncio.sleep(offset_ms / 1000)
            again = await lock.acquire(timeout_s=3)
            await released
            assert again is not None
            # Past the release bound of any session the release could have ended: while the new
            # lease lasts, nobody else may get the key.
            for _ in range(int(2 * ttl / 0.02) + 5):
                if not lock.may_trade():
                    break  # a starved renewer (a loaded machine) ends the lease: that proves nothing here
                assert await other.try_acquire() is None, f"the new epoch's key was freed (offset {offset_ms} ms)"
                await asyncio.sleep(0.02)
            if lock.lease is None:
                again = await lock.acquire(timeout_s=3)
    finally:
        for c in (lock, other):
            await c.close()
            await c.backend.close()
