"""What the Consul drills found in the Consul lock, each on a real Consul 1.15.4.

1. A server that has just become leader answers from its state before it has
   applied its log's tail: a session renewal can come back "not found" for a
   session that exists (Session.Renew reads without a barrier). Measured: a
   few such answers in every hundred or so renewals in flight across a single
   server's restart, a consistent read straight after each finding the
   session. The lock must not believe it: a holder's renewal across a restart
   fails (unavailable: the holder rides on the peer lease) or finds the lock
   still its own, never "not ours". Found by
   `understudy drill lock-backend-restart-persistent --lock consul`, which
   failed over in one run of three.
2. A lock held by a node's own session is held: that node's try_acquire gets
   nothing (as Redis's SET NX), so a node whose release is still in flight
   cannot take the lock again at a new epoch. Found by `bench/takeover.py
   --lock consul`: a node that had just switched over re-took the lock
   against its own release, and the switchover never completed.
"""
import asyncio
import time
import urllib.request

from understudy.consul_agent import ConsulCluster, ConsulDev
from understudy.coordinator.backend import BackendUnavailable
from understudy.coordinator.consul_backend import ConsulBackend, ConsulSettings

SESSION_TTL_S = 10.0  # long: no session may expire while the server is down, only the stale answer is tested
# Consul holds a request while it has no leader and answers every held one the instant it is elected,
# from its state as it is then: renewals that outlast the election see the stale window.
RENEW_EVERY_S = 0.03  # ~100 in flight: under aiohttp's pool of 100 and Consul's 200 connections per client
RENEW_DEADLINE_S = 3.0  # longer than the restart takes to elect (1-2 s)
WATCH_S = 2.5  # of renewals from the restart: they span its election (1-2 s), held ones answered at it
RESTARTS = 4  # at most; the stale window is hit in nearly every restart
# The window lasts while the new leader applies its log's tail, up to the session's entry: entries written
# before the session make it long enough to be hit by a renewal every few milliseconds.
ENTRIES_BEFORE = 300
STALE = "did not know the session"  # how the backend reports the stale answer it refused to believe


async def test_a_new_leaders_stale_not_found_does_not_end_the_lease(tmp_path):
    cluster = ConsulCluster(tmp_path, size=1, prefix="restart").start()  # a data directory: the session survives
    server = cluster.servers[0]
    backend = ConsulBackend(ConsulSettings(urls=(server.url,), key_prefix="restart"))
    try:
        cluster.wait_leader()
        # A new Consul holds the first grant back one TTL (its quarantine); seed the epoch key, as an
        # existing deployment has it.
        for i in range(ENTRIES_BEFORE):
            key = "restart/epoch" if i == ENTRIES_BEFORE - 1 else f"filler/{i}"
            request = urllib.request.Request(f"{server.url}/v1/kv/{key}", data=b"1", method="PUT")
            urllib.request.urlopen(request, timeout=2).close()
        epoch = await backend.try_acquire("sg-1", SESSION_TTL_S, 0, time.monotonic() + 2.0)
        assert epoch is not None
        session_id = backend._session_id
        outcomes: list[str] = []
        stale = 0

        async def renew_once() -> None:
            try:
                ok = await backend.renew("sg-1", epoch, SESSION_TTL_S, time.monotonic() + RENEW_DEADLINE_S)
                outcomes.append("ours" if ok else "not ours")
            except BackendUnavailable as exc:
                outcomes.append("stale" if STALE in str(exc) else "unavailable")

        for _ in range(RESTARTS):
            server.kill()
            server.start()
            restarted_at = time.monotonic()
            renewals = []
            while time.monotonic() - restarted_at < WATCH_S:  # bounded in time, and so in count
                renewals.append(asyncio.create_task(renew_once()))
                await asyncio.sleep(RENEW_EVERY_S)
            await asyncio.gather(*renewals)
            assert "not ours" not in outcomes, f"{outcomes.count('not ours')} renewals said the lock was not ours"
            # The restarted leader, caught up, renews it: the session and the lock survived the restart.
            assert await backend.renew("sg-1", epoch, SESSION_TTL_S, time.monotonic() + 2.0)
            stale = outcomes.count("stale")
            if stale:
                break
        assert stale, f"no stale 'not found' in {RESTARTS} restarts: the test proved nothing"
        assert backend._session_id == session_id
    finally:
        await backend.close()
        cluster.stop()


async def test_a_lock_held_by_our_own_session_is_not_free_to_take_again(tmp_path):
    dev = ConsulDev(tmp_path).start()
    backend = ConsulBackend(ConsulSettings(urls=tuple(dev.urls), key_prefix="own"))
    try:
        request = urllib.request.Request(f"{dev.agent.url}/v1/kv/own/epoch", data=b"1", method="PUT")
        urllib.request.urlopen(request, timeout=2).close()  # past a new Consul's quarantine
        epoch = await backend.try_acquire("sg-1", 0.5, 0, time.monotonic() + 2.0)
        assert epoch is not None
        assert await backend.try_acquire("sg-1", 0.5, epoch, time.monotonic() + 2.0) is None
        state = await backend.inspect(time.monotonic() + 2.0)
        assert (state.holder, state.epoch, state.last_epoch) == ("sg-1", epoch, epoch)  # no epoch burnt
        assert await backend.release("sg-1", epoch, time.monotonic() + 2.0)
        assert await backend.try_acquire("sg-1", 0.5, epoch, time.monotonic() + 2.0) > epoch
    finally:
        await backend.close()
        dev.stop()
