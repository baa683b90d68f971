"""The failover controller's robustness, in one process without a venue:
supervised tasks, takeover steps that retry any failure, late heartbeats
that never roll the peer's state back, and a quote loop that survives a
lease lost mid-requote. The engine here is the real NodeEngine, not
started: these paths need no venue."""
import asyncio
import time
import types

import msgspec
import pytest

from understudy.config import Secrets
from understudy.coordinator.lease import Lease
from understudy.coordinator.redis_backend import RedisBackend, RedisSettings
from understudy.coordinator.trading_lock import TradingLock
from understudy.failover import roles
from understudy.failover.controller import FailoverController
from understudy.failover.heartbeat import HeartbeatSender
from understudy.node.engine import NodeEngine
from understudy.supervision import Limits, Policy, Supervisor

from .nodeproc import node_settings, to_config
from .simproc import RestClient

KEY = b"k" * 32


def cluster_config(tmp_path):
    sim = types.SimpleNamespace(accounts=[("key", "secret")], base_url="http://127.0.0.1:1",
                                ws_url="ws://127.0.0.1:1")
    settings = node_settings(sim, tmp_path, "sg-2", node={"mode": "cluster"})
    settings["cluster"] = {"peer": "sg-1", "peer_host": "127.0.0.1", "heartbeat_key": {"env": "K"},
                           "bind_port": 0, "peer_port": 9}
    settings["lock"] = {"backend": "redis", "redis": {"port": 1}}
    return to_config(settings)


@pytest.fixture
async def controller(tmp_path):
    config = cluster_config(tmp_path)
    secrets = Secrets("key", "secret", "admin", None, KEY)
    engine = NodeEngine(config, secrets)
    lock = TradingLock(RedisBackend(RedisSettings(port=1)), "sg-2", 1.5)
    ha = FailoverController(config, secrets, engine, lock)
    yield ha
    await ha.close()
    await lock.backend.close()


def drain(ha) -> list:
    events = []
    while not ha.events.empty():
        events.append(ha.events.get_nowait())
    return events


async def test_a_late_heartbeat_counts_its_echo_but_never_rolls_the_peer_state_back(controller):
    """The bug: under jitter a late datagram (accepted by the replay window) was applied as the
    peer's current state, and a standby flipped to candidate within 200 ms of a healthy primary."""
    ha = controller
    sender = HeartbeatSender("sg-1", KEY, boot=1000)
    now_ms = time.time_ns() // 1_000_000 - 200
    older = sender.next(now_ms, role="candidate", epoch=None)
    newer = sender.next(now_ms + 100, role="primary", epoch=42)
    ha.link._received(newer)
    ha.link._received(older)  # reordered in the network: arrives second
    heard = [e for e in drain(ha) if isinstance(e, roles.PeerHeard)]
    assert [(e.role, e.epoch) for e in heard] == [("primary", 42)]
    assert ha.link.last_peer.role == "primary" and ha.link.receiver.late == 1
    assert ha.lock.epoch_floor == 42


async def test_a_takeover_step_retries_an_unforeseen_error_instead_of_dying(controller):
    ha = controller
    calls = []

    async def protective_cancel():
        calls.append(1)
        if len(calls) < 3:
            # What the decoder raised on Binance's documented cancel-all reply with an order list.
            raise msgspec.ValidationError("Object missing required field `orderId` - at `$[1]`")
        return 0

    await asyncio.wait_for(ha._step(protective_cancel, roles.ProtectiveCancelDone, "protective cancel",
                                    lambda left: left == 0), 5)
    assert len(calls) == 3 and ha.step_failures == {"protective cancel": 2}
    assert [type(e) for e in drain(ha)] == [roles.ProtectiveCancelDone]


async def test_a_hand_over_that_cannot_cancel_goes_on_once_no_send_can_land(controller):
    ha = controller

    async def cancel_own_orders():
        await asyncio.sleep(30)  # the venue path is down: the cancel never gets an answer

    ha.engine.gate = None
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(ha._step(cancel_own_orders, roles.OwnOrdersCancelled, "own-order cancel",
                                    lambda remaining: remaining == 0, give_up_at=ha.clock() + 0.3), 5)
    assert 0.3 <= loop.time() - started < 1.0
    assert [type(e) for e in drain(ha)] == [roles.OwnOrdersCancelled]


async def test_a_failing_loop_is_restarted_with_backoff_and_one_that_keeps_failing_is_fatal():
    fatal = []
    supervisor = Supervisor(fatal.append, Limits(backoff_s=0.01, max_backoff_s=0.02, max_failures=3, window_s=10))
    runs = []

    async def flaky():
        runs.append(1)
        if len(runs) < 3:
            raise RuntimeError("boom")

    await asyncio.wait_for(supervisor.spawn("flaky", flaky, Policy.RESTART), 2)
    assert len(runs) == 3 and supervisor.failures["flaky"] == 2 and not fatal

    async def broken():
        raise RuntimeError("always")

    await asyncio.wait_for(supervisor.spawn("broken", broken, Policy.RESTART), 2)
    assert supervisor.failures["broken"] == 4 and fatal == ["task broken failed: RuntimeError: always"]


async def test_a_fatal_task_escalates_at_once_and_only_once():
    fatal = []
    supervisor = Supervisor(fatal.append)

    async def bug():
        raise KeyError("x")

    await supervisor.spawn("one", bug, Policy.FATAL)
    await supervisor.spawn("two", bug, Policy.FATAL)
    assert fatal == ["task one failed: KeyError: 'x'"] and supervisor.failures == {"one": 1, "two": 1}


async def test_a_role_machine_failure_is_fatal_and_ends_the_lease(controller, monkeypatch):
    ha = controller
    reasons = []
    ha.on_fatal = reasons.append

    def broken_step(settings, state, event):
        raise AssertionError("a bug in the machine")

    monkeypatch.setattr(roles, "step", broken_step)
    stop = asyncio.Event()
    await asyncio.wait_for(ha.run(stop), 5)
    assert reasons and reasons[0].startswith("role machine failed: AssertionError")


async def test_a_lease_lost_in_the_middle_of_a_requote_places_nothing_and_raises_nothing(live_sim, tmp_path,
                                                                                         monkeypatch):
    """The bug: the quote loop read `self.lease.epoch` after an await; a lease lost in between
    raised AttributeError, which the task watcher turned into a persisted PanicStop."""
    settings = node_settings(live_sim, tmp_path, "sg-2", node={"mode": "cluster"})
    settings["cluster"] = {"peer": "sg-1", "peer_host": "127.0.0.1", "heartbeat_key": {"env": "K"}}
    settings["lock"] = {"backend": "redis"}
    config = to_config(settings)
    key, secret = live_sim.accounts[0]
    engine = NodeEngine(config, Secrets(key, secret, "admin", None, KEY))
    holder = types.SimpleNamespace(lease=Lease(5, time.monotonic() + 60))
    engine.trading_lock = holder
    engine.trading_enabled = True
    await asyncio.wait_for(engine.start(), 20)
    try:
        deadline = time.monotonic() + 10
        while len(engine.oms.working()) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert engine.oms.working(), "the engine never quoted"
        for o in engine.oms.working().values():
            o.price_ticks += 10_000  # every quote looks stale: the requote cancels and places
        real_cancel = engine._cancel

        async def cancel_losing_the_lease(client_id):
            holder.lease = None  # the renewer lost the lock while this requote was under way
            await real_cancel(client_id)

        monkeypatch.setattr(engine, "_cancel", cancel_losing_the_lease)
        sent = engine.gate.sent
        await engine.requote()
        assert engine.gate.sent == sent and engine.panic_reason is None
    finally:
        engine.trading_enabled = False
        await asyncio.wait_for(engine.stop(), 15)


async def test_an_older_epochs_order_is_swept_from_the_moment_the_lock_is_held_not_only_once_quoting(
        live_sim, tmp_path):
    """The bug: the sweep was gated on trading being enabled, so during the takeover steps an
    order that landed from a frozen ex-primary rested until the next periodic reconcile."""
    settings = node_settings(live_sim, tmp_path, "sg-2", node={"mode": "cluster"})
    settings["cluster"] = {"peer": "sg-1", "peer_host": "127.0.0.1", "heartbeat_key": {"env": "K"}}
    settings["lock"] = {"backend": "redis"}
    key, secret = live_sim.accounts[0]
    engine = NodeEngine(to_config(settings), Secrets(key, secret, "admin", None, KEY))
    engine.trading_lock = types.SimpleNamespace(lease=Lease(5, time.monotonic() + 60))
    await asyncio.wait_for(engine.start(), 20)  # holds epoch 5, not trading: as in the takeover steps
    try:
        old = RestClient(engine.rest._session, live_sim.base_url, key, secret)
        mid = engine.book.mid()
        stale_id, foreign_id = "e1.sg-1.lq2x9k0_1", "desk-manual-1"
        for cid, price in ((stale_id, mid * 0.98), (foreign_id, mid * 0.97)):
            await old.ok("POST", "/api/v3/order", {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT_MAKER",
                                                   "quantity": "0.001", "price": f"{price:.2f}",
                                                   "newClientOrderId": cid}, signed=True)
        assert not engine.trading_enabled
        await engine.sweep_orphans([stale_id, foreign_id])
        open_ids = {o.clientOrderId for o in await engine.rest.open_orders("BTCUSDT")}
        assert stale_id not in open_ids, "the older epoch's order still rests beside the new holder"
        assert foreign_id in open_ids, "another client's order is not the sweep's to cancel"
        assert engine.orphans_cancelled >= 1  # the user stream's NEW report may have swept it first
    finally:
        await asyncio.wait_for(engine.stop(), 15)


async def test_a_hand_over_marker_is_dropped_once_its_target_holds_the_lock(controller):
    """The bug: sg-2 handed the lock to sg-1 and kept advertising the marker for 5 s; when sg-1 switched
    straight back, it heard the old marker as standby, contended against its own release, and (on Consul)
    took the lock again, so the switchover never completed."""
    ha = controller
    ha.handover_to = ("sg-1", ha.clock() + 5.0)
    sender = HeartbeatSender("sg-1", KEY, boot=1000)
    now_ms = time.time_ns() // 1_000_000
    ha.link._received(sender.next(now_ms, role="candidate", epoch=None))
    assert ha._heartbeat_fields()["handover_to"] == "sg-1"  # not taken yet: the marker stays
    ha.link._received(sender.next(now_ms + 100, role="primary", epoch=43))
    assert ha._heartbeat_fields()["handover_to"] is None
