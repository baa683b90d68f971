"""The drill invariant checker, sans-I/O: evidence built by hand (the records
the venue's audit log and the nodes' logs produce), each invariant shown to
pass on a safe history and to catch the unsafe variant of it."""
import json

import pytest

from understudy.chaos import report
from understudy.chaos.checker import ALLOWED, FORBIDDEN, REQUIRED, Rules, check
from understudy.chaos.evidence import (DrillEvent, Evidence, NodeEvent, OrderLife, OrderRequest, read_audit,
                                       read_node_log)
from understudy.node.client_ids import base36

E1, E2 = 1_700_000_000_000, 1_700_000_011_000


def cid(epoch: int, node: str, seq: int) -> str:
    return f"e{base36(epoch)}.{node}.abc_{base36(seq)}"


def order(epoch, node, recv, seq=1, accepted=True, end=None, client_ts=None, code=None, recv_window=None):
    """An order request and, if accepted, its life at the venue."""
    c = cid(epoch, node, seq)
    request = OrderRequest(c, node, epoch, recv, recv + 0.002, accepted, code, client_ts, recv_window)
    life = OrderLife(c, node, epoch, recv, end) if accepted else None
    return request, life


def late(epoch, node, recv, seq, signed, recv_window=0.6):
    """An order the venue refused for arriving after its timestamp + recvWindow."""
    return order(epoch, node, recv, seq, accepted=False, client_ts=signed, code=-1021, recv_window=recv_window)


def evidence(orders=(), node_events=(), drill_events=(), ended=40.0, foreign=()) -> Evidence:
    requests = [o[0] for o in orders]
    lives = [o[1] for o in orders if o[1] is not None]
    return Evidence(requests, lives, [], sorted(node_events, key=lambda e: e.at),
                    sorted(drill_events, key=lambda e: e.at), 0.0, ended, frozenset(foreign))


def acquired(node, epoch, at):
    return NodeEvent(at, node, "acquired", epoch)


def kill_failover(**overrides):
    """sg-1 trades epoch 1 from t=10, is SIGKILLed at 20; sg-2 takes over at 21.0 and quotes at 21.1."""
    orders = [order(E1, "sg-1", 10.1, 1, end=21.02), order(E1, "sg-1", 15.0, 2, end=17.0),
              order(E2, "sg-2", 21.1, 1, end=39.0)]
    nodes = [acquired("sg-1", E1, 10.0), acquired("sg-2", E2, 21.0)]
    drill = [DrillEvent(20.0, "fault", None, "SIGKILL sg-1"), DrillEvent(20.0, "kill", "sg-1")]
    return orders + overrides.get("orders", []), nodes + overrides.get("nodes", []), \
        drill + overrides.get("drill", [])


def test_a_clean_failover_passes_every_invariant():
    orders, nodes, drill = kill_failover()
    verdict = check(evidence(orders, nodes, drill), Rules(failover=REQUIRED))
    assert verdict.ok, [i.violations for i in verdict.invariants]
    assert verdict.takeover_s == pytest.approx(1.102)
    assert verdict.failovers == 1
    assert [r.change for r in verdict.epochs] == ["first", "failover"]


def test_an_order_of_the_old_epoch_after_the_new_one_traded_breaks_the_lease():
    orders, nodes, drill = kill_failover(orders=[order(E1, "sg-1", 22.0, 3, end=22.05)])
    drill = [e for e in drill if e.kind != "kill"]  # a node that kept running, not a dead one
    verdict = check(evidence(orders, nodes, drill), Rules(failover=REQUIRED))
    lease = verdict.invariant("lease")
    assert not lease.ok
    assert "after the lease of epoch #1 ended" in lease.violations[0]


def test_a_stopping_node_holds_its_lease_until_it_exits():
    # SIGTERM at 30: the node cancels and releases on its way out; an order it sends before exiting is
    # still under its lease, one after it exited cannot be.
    orders, nodes, drill = kill_failover()
    orders = orders[:2] + [order(E2, "sg-2", 21.1, 1, end=30.2), order(E2, "sg-2", 30.1, 2, end=30.2)]
    drill = drill + [DrillEvent(30.0, "stop", "sg-2"), DrillEvent(30.5, "exited", "sg-2")]
    assert check(evidence(orders, nodes, drill), Rules(failover=REQUIRED)).invariant("lease").ok
    late = orders + [order(E2, "sg-2", 31.0, 3, end=31.1)]
    lease = check(evidence(late, nodes, drill), Rules(failover=REQUIRED)).invariant("lease")
    assert "killed or had exited" in lease.violations[0]


def test_orders_without_a_lease_at_all_are_caught():
    orders, nodes, drill = kill_failover(orders=[
        (OrderRequest("not-ours-1", None, None, 12.0, 12.001, True), None),
        order(E1 + 5, "sg-2", 12.0, 9, accepted=False),  # an epoch nobody acquired, rejected by the venue
        order(E2, "sg-2", 20.5, 9, accepted=False),  # sent before sg-2 acquired its epoch
    ])
    lease = check(evidence(orders, nodes, drill), Rules(failover=REQUIRED)).invariant("lease")
    assert len(lease.violations) == 3
    assert "names no node and epoch" in lease.violations[0]
    assert "never acquired" in lease.violations[1]
    assert "before sg-2 acquired" in lease.violations[2]


def _isolated(peer_heard: bool):
    """sg-1 holds epoch 1 and loses the lock backend at 20; it keeps sending until 25."""
    orders = [order(E1, "sg-1", 10.5, 1, end=39.0), order(E1, "sg-1", 25.0, 2, end=39.0)]
    drill = [DrillEvent(20.0, "fault"), DrillEvent(20.0, "lock-down", "sg-1")]
    if not peer_heard:
        drill.append(DrillEvent(20.0, "hb-cut", "sg-2", "sg-1"))
    return evidence(orders, [acquired("sg-1", E1, 10.0)], drill)


def test_a_node_cut_off_from_backend_and_peer_may_not_trade_past_ttl_and_silence():
    lease = check(_isolated(peer_heard=False), Rules()).invariant("lease")
    assert len(lease.violations) == 1
    assert "could hold no lease" in lease.violations[0]


def test_a_node_that_still_hears_its_peer_may_trade_on_the_peer_lease():
    assert check(_isolated(peer_heard=True), Rules()).invariant("lease").ok


def test_an_order_in_flight_while_its_sender_was_frozen_is_not_a_lease_violation():
    # Sent at 19.99 under a valid lease, frozen until 23, received at 23.01, swept at once.
    orders, nodes, drill = kill_failover(
        orders=[order(E1, "sg-1", 23.01, 3, end=23.05)],
        drill=[DrillEvent(19.995, "freeze", "sg-1"), DrillEvent(23.0, "thaw", "sg-1")])
    drill = [e for e in drill if e.kind != "kill"]
    verdict = check(evidence(orders, nodes, drill), Rules(failover=REQUIRED))
    assert verdict.invariant("lease").ok
    assert verdict.invariant("overlap").ok  # 40 ms of overlap, swept
    assert verdict.invariant("orphans").ok
    # ... but the venue accepted it after the new epoch had traded: the recvWindow fence should have refused it.
    stale = verdict.invariant("stale-accepted")
    assert len(stale.violations) == 1
    assert "accepted (received t=23.010) 1.910 s after the first order of epoch #2" in stale.violations[0]


def test_the_signed_send_time_is_used_when_the_venue_audits_it():
    # Received 0.1 s after the new epoch traded: within the in-flight allowance, unless the send time is known.
    late = order(E1, "sg-1", 21.2, 3, end=21.25, client_ts=21.19)
    early = order(E1, "sg-1", 21.2, 4, end=21.25, client_ts=20.5)
    for extra, ok in ((late, False), (early, True)):
        orders, nodes, drill = kill_failover(orders=[extra])
        drill = [e for e in drill if e.kind != "kill"]
        assert check(evidence(orders, nodes, drill), Rules(failover=REQUIRED)).invariant("lease").ok is ok


@pytest.mark.parametrize("overlap_s, ok", [(0.3, True), (0.8, False)])
def test_two_epochs_live_at_once_beyond_the_window_is_caught(overlap_s, ok):
    orders, nodes, drill = kill_failover()
    orders[0] = order(E1, "sg-1", 10.1, 1, end=21.1 + overlap_s)
    result = check(evidence(orders, nodes, drill), Rules(failover=REQUIRED)).invariant("overlap")
    assert result.ok is ok
    assert result.facts["longest_s"] == pytest.approx(overlap_s, abs=1e-6)


def test_overlap_instants_are_counted_and_timed():
    orders, nodes, drill = kill_failover()
    clean = check(evidence(orders, nodes, drill), Rules(failover=REQUIRED))
    assert clean.overlaps == []
    assert clean.invariant("overlap").facts["overlap_instants"] == 0
    assert clean.invariant("overlap").facts["total_s"] == 0
    # Two separate moments: the old epoch's order outlives the new epoch's first by 0.1 s, and an old order
    # in flight shows up later and rests 0.05 s beside the new epoch's order; touching spans are no overlap.
    orders[0] = order(E1, "sg-1", 10.1, 1, end=21.2)
    orders += [order(E1, "sg-1", 25.0, 3, end=25.05), order(E1, "sg-1", 30.0, 4, end=39.0)]
    orders[2] = order(E2, "sg-2", 21.1, 1, end=30.0)
    verdict = check(evidence(orders, nodes, drill), Rules(failover=REQUIRED, overlap_s=0.2))
    facts = verdict.invariant("overlap").facts
    assert facts["overlap_instants"] == 2
    assert facts["total_s"] == pytest.approx(0.15)
    assert [(o.start, round(o.duration, 6), o.epochs) for o in verdict.overlaps] == [(21.1, 0.1, (E1, E2)),
                                                                                     (25.0, 0.05, (E1, E2))]
    assert verdict.invariant("overlap").ok  # counted, yet each within the allowed window


def test_an_older_epoch_order_accepted_after_the_newer_epochs_first_is_stale():
    # Signed at 20.95 with 0.5 s of lease left, delayed on its way, received at 21.3: after epoch 2's first
    # order (21.1). Within the lease invariant's allowances, yet the venue should have refused it.
    orders, nodes, drill = kill_failover(orders=[order(E1, "sg-1", 21.3, 3, end=21.35, client_ts=20.95,
                                                       recv_window=0.5)])
    drill = [e for e in drill if e.kind != "kill"]
    verdict = check(evidence(orders, nodes, drill), Rules(failover=REQUIRED))
    assert verdict.invariant("lease").ok
    stale = verdict.invariant("stale-accepted")
    assert stale.facts["stale_accepted"] == 1
    assert "epoch #1 from sg-1 accepted (received t=21.300) 0.200 s after the first order of epoch #2" \
        in stale.violations[0]
    assert "recvWindow of 500 ms" in stale.violations[0]
    assert not verdict.ok


def test_older_epoch_orders_accepted_before_the_newer_epoch_traded_are_not_stale():
    # The same late order, but received just before epoch 2's first order (and one received at that very
    # instant): not after it.
    orders, nodes, drill = kill_failover(orders=[order(E1, "sg-1", 21.05, 3, end=21.12),
                                                 order(E1, "sg-1", 21.1, 4, end=21.12)])
    drill = [e for e in drill if e.kind != "kill"]
    stale = check(evidence(orders, nodes, drill), Rules(failover=REQUIRED)).invariant("stale-accepted")
    assert stale.ok, stale.violations
    assert stale.facts == {"stale_accepted": 0, "refused_late": 0, "refused_late_after_newer_epoch": 0}


def test_an_epoch_that_never_traded_makes_no_order_stale():
    # sg-2 takes epoch 2 and hands it straight back without an order; sg-1 takes epoch 3 and trades.
    E3 = E2 + 1
    orders = [order(E1, "sg-1", 10.1, 1, end=20.5), order(E3, "sg-1", 30.0, 2, end=39.0)]
    nodes = [acquired("sg-1", E1, 10.0), acquired("sg-2", E2, 20.0), NodeEvent(20.01, "sg-2", "released", E2),
             acquired("sg-1", E3, 29.9)]
    stale = check(evidence(orders, nodes), Rules(failover=ALLOWED)).invariant("stale-accepted")
    assert stale.ok, stale.violations
    # ... whereas an order of epoch 1 accepted after epoch 3 traded is stale.
    orders.append(order(E1, "sg-1", 30.5, 3, end=31.0))
    stale = check(evidence(orders, nodes), Rules(failover=ALLOWED)).invariant("stale-accepted")
    assert "after the first order of epoch #3" in stale.violations[0]


def test_the_venue_refusing_late_orders_is_collected_per_node_and_epoch():
    # sg-1's last orders of epoch 1, delayed 1.5 s on the REST link, reach the venue after its lease and are
    # refused; one of them even after epoch 2's first order. A -1021 for a timestamp *ahead* of the venue's
    # clock is no late order.
    orders, nodes, drill = kill_failover(orders=[
        late(E1, "sg-1", 20.5, 3, signed=19.0, recv_window=0.9),
        late(E1, "sg-1", 21.4, 4, signed=19.9, recv_window=0.6),
        late(E2, "sg-2", 30.0, 5, signed=29.0, recv_window=0.8),
        order(E2, "sg-2", 31.0, 6, accepted=False, code=-1021, client_ts=32.5, recv_window=0.8),  # ahead
        order(E2, "sg-2", 32.0, 7, accepted=False, code=-2010),
    ])
    verdict = check(evidence(orders, nodes, drill), Rules(failover=REQUIRED))
    assert verdict.ok, [i.violations for i in verdict.invariants]  # refused is safe: nothing stale was accepted
    assert [(r.node, r.epoch, r.count, r.first, r.last, r.after_newer) for r in verdict.late_refusals] == [
        ("sg-1", E1, 2, 20.5, 21.4, 1), ("sg-2", E2, 1, 30.0, 30.0, 0)]
    first = verdict.late_refusals[0]
    assert first.max_late_s == pytest.approx(0.9)  # 21.4 - (19.9 + 0.6)
    assert first.recv_windows_s == (0.6, 0.9)
    facts = verdict.invariant("stale-accepted").facts
    assert facts["refused_late"] == 3
    assert facts["refused_late_after_newer_epoch"] == 1


def test_no_late_refusals_on_a_clean_run():
    orders, nodes, drill = kill_failover(orders=[order(E2, "sg-2", 25.0, 2, accepted=False, code=-2010)])
    verdict = check(evidence(orders, nodes, drill), Rules(failover=REQUIRED))
    assert verdict.late_refusals == []
    assert verdict.invariant("stale-accepted").facts["refused_late"] == 0


def _with_order_list(resting_until: float):
    """Another client of the account rests an order list (two legs, client ids that name no epoch) from
    t=15 until the new primary's protective cancel."""
    orders, nodes, drill = kill_failover()
    legs = [(OrderRequest(f"drill-oco-{leg}", None, None, 15.0, 15.001, True),
             OrderLife(f"drill-oco-{leg}", None, None, 15.0, resting_until)) for leg in ("limit", "stop")]
    return orders + legs, nodes, drill, {"drill-oco-limit", "drill-oco-stop"}


def test_the_drills_own_orders_on_the_account_are_no_epochs():
    orders, nodes, drill, foreign = _with_order_list(resting_until=21.05)
    verdict = check(evidence(orders, nodes, drill, foreign=foreign), Rules(failover=REQUIRED))
    assert verdict.ok, [i.violations for i in verdict.invariants]
    assert verdict.invariant("lease").facts == {"orders_checked": 3, "foreign_orders_left_out": 2}
    assert verdict.overlaps == []  # resting beside epoch 1's orders is no overlap of epochs
    assert [r.orders for r in verdict.epochs] == [2, 1]


def test_orders_naming_no_epoch_are_still_caught_unless_the_drill_placed_them():
    orders, nodes, drill, _ = _with_order_list(resting_until=21.05)
    verdict = check(evidence(orders, nodes, drill), Rules(failover=REQUIRED))
    assert len(verdict.invariant("lease").violations) == 2
    assert "names no node and epoch" in verdict.invariant("lease").violations[0]


def test_zero_overlap_means_zero_for_planned_switchovers():
    orders, nodes, drill = kill_failover()
    orders[0] = order(E1, "sg-1", 10.1, 1, end=21.101)
    assert not check(evidence(orders, nodes, drill), Rules(failover=REQUIRED, overlap_s=0.0)).invariant("overlap").ok


def test_an_older_epoch_order_left_resting_after_a_takeover_is_an_orphan():
    orders, nodes, drill = kill_failover()
    orders[0] = order(E1, "sg-1", 10.1, 1, end=22.5)  # protective cancel missed it for 1.5 s
    orphans = check(evidence(orders, nodes, drill), Rules(failover=REQUIRED, overlap_s=5)).invariant("orphans")
    assert len(orphans.violations) == 1
    assert "still resting 1.500 s after epoch #2" in orphans.violations[0]


def test_a_late_orphan_must_be_swept_within_the_grace():
    orders, nodes, drill = kill_failover(orders=[order(E1, "sg-1", 23.0, 3, end=24.5)],
                                         drill=[DrillEvent(19.9, "freeze", "sg-1"), DrillEvent(22.9, "thaw", "sg-1")])
    drill = [e for e in drill if e.kind != "kill"]
    orphans = check(evidence(orders, nodes, drill), Rules(failover=REQUIRED, overlap_s=5)).invariant("orphans")
    assert "appeared after the takeover" in orphans.violations[0]


def test_takeover_over_budget_or_missing_is_a_violation():
    orders, nodes, drill = kill_failover()
    slow = check(evidence(orders, nodes, drill), Rules(failover=REQUIRED, takeover_budget_s=1.0))
    assert "1.102 s after the fault" in slow.invariant("takeover").violations[0]
    none = check(evidence(orders[:2], nodes[:1], drill), Rules(failover=REQUIRED))
    assert "no other node took the lock" in none.invariant("takeover").violations[0]
    assert "saw 0" in none.invariant("failover").violations[0]


def test_an_epoch_taken_and_handed_straight_back_is_not_the_takeover():
    orders, nodes, drill = kill_failover()
    orders[2] = order(E2 + 1, "sg-2", 21.2, 1, end=39.0)
    nodes = [acquired("sg-1", E1, 10.0), acquired("sg-2", E2, 20.05), NodeEvent(20.051, "sg-2", "released", E2),
             acquired("sg-2", E2 + 1, 21.1)]
    orders[0] = order(E1, "sg-1", 10.1, 1, end=21.15)  # cancelled by the real takeover, 1.1 s after the flash
    verdict = check(evidence(orders, nodes, drill), Rules(failover=REQUIRED))
    assert verdict.ok, [i.violations for i in verdict.invariants]
    assert verdict.takeover_s == pytest.approx(1.202)
    assert [r.change for r in verdict.epochs] == ["first", "failover", "reacquired"]


def test_a_lock_change_while_the_drill_stops_the_pair_is_no_failover():
    orders, nodes, drill = kill_failover()
    drill = [e for e in drill if e.kind != "fault"] + [DrillEvent(20.5, "teardown")]
    verdict = check(evidence(orders, nodes, drill), Rules(failover=FORBIDDEN))
    assert verdict.ok
    assert [r.change for r in verdict.epochs] == ["first", "teardown"]


def test_failover_expectations():
    orders, nodes, drill = kill_failover()
    assert not check(evidence(orders, nodes, drill), Rules(failover=FORBIDDEN)).invariant("failover").ok
    assert check(evidence(orders, nodes, drill), Rules(failover=ALLOWED)).invariant("failover").ok
    planned = drill + [DrillEvent(20.5, "switchover", "sg-2")]
    verdict = check(evidence(orders, nodes, planned), Rules(failover=FORBIDDEN))
    assert verdict.invariant("failover").ok
    assert verdict.switchovers == 1


def test_reading_the_venue_audit_log_and_a_node_log():
    key = "k1"
    lines = [
        {"kind": "request", "action": "new", "recv_us": 10_000_000, "done_us": 10_002_000, "api_key": key,
         "client_order_id": cid(E1, "sg-1", 1), "outcome": "accepted"},
        {"kind": "request", "action": "new", "recv_us": 10_100_000, "done_us": 10_101_000, "api_key": key,
         "client_order_id": cid(E1, "sg-1", 2), "outcome": "rejected", "code": -2010},
        {"kind": "request", "action": "new", "recv_us": 10_100_000, "done_us": 10_101_000, "api_key": "other",
         "client_order_id": "x", "outcome": "accepted"},
        {"kind": "request", "action": "cancel_all", "recv_us": 11_000_000, "done_us": 11_001_000, "api_key": key,
         "client_order_id": None, "outcome": "accepted", "cancelled": ["a", "b"]},
        {"kind": "order_done", "ts_us": 11_000_500, "api_key": key, "client_order_id": cid(E1, "sg-1", 1)},
    ]
    orders, lives, cancel_alls = read_audit([json.dumps(r) for r in lines], key)
    assert [(o.node, o.epoch, o.accepted, o.code) for o in orders] == [("sg-1", E1, True, None),
                                                                       ("sg-1", E1, False, -2010)]
    assert [(life.start, life.end) for life in lives] == [(10.0, 11.0005)]
    assert cancel_alls[0].cancelled == 2
    assert cancel_alls[0].client_ids == ("a", "b")
    log = [
        '{"epoch": %d, "event": "trading lock acquired", "timestamp": "2026-01-01T00:00:01.500000Z"}' % E1,
        '{"previous": "candidate", "new": "primary", "reason": "lock acquired", "event": "role changed", '
        '"timestamp": "2026-01-01T00:00:01.501000Z", "epoch": null}',
        'Traceback (most recent call last): not JSON',
        '{"event": "lock lease ran out with the backend unreachable: trading on the peer lease", '
        '"timestamp": "2026-01-01T00:00:02Z", "epoch": %d}' % E1,
        '{"reason": "no answer", "event": "trading lock lost", "timestamp": "2026-01-01T00:00:03Z", "epoch": %d}' % E1,
        '{"event": "stopped", "timestamp": "2026-01-01T00:00:04Z", "epoch": null}',
    ]
    events = read_node_log(log, "sg-1")
    assert [(e.kind, e.epoch, e.role) for e in events] == [
        ("acquired", E1, None), ("role", None, "primary"), ("peer-lease", E1, None), ("lost", E1, None),
        ("stopped", None, None)]
    assert events[0].at == pytest.approx(1767225601.5)


def test_reading_the_signed_recv_window_and_a_cancel_all_that_took_an_order_list():
    key = "k1"
    lines = [
        {"kind": "request", "action": "new", "recv_us": 20_000_000, "done_us": 20_001_000, "api_key": key,
         "client_order_id": cid(E1, "sg-1", 3), "outcome": "rejected", "code": -1021, "client_ts_ms": 18_400,
         "recv_window_ms": 612.5},
        {"kind": "request", "action": "new", "recv_us": 20_100_000, "done_us": 20_101_000, "api_key": key,
         "client_order_id": cid(E1, "sg-1", 4), "outcome": "accepted", "client_ts_ms": 20_090},
        {"kind": "request", "action": "cancel_all", "recv_us": 21_000_000, "done_us": 21_001_000, "api_key": key,
         "client_order_id": None, "outcome": "accepted",
         "cancelled": [{"origClientOrderId": "q1"},
                       {"orderListId": 7, "listClientOrderId": "drill-oco",
                        "orders": [{"clientOrderId": "drill-oco-limit"}, {"clientOrderId": "drill-oco-stop"}]}]},
    ]
    orders, _, cancel_alls = read_audit([json.dumps(r) for r in lines], key)
    assert [(o.client_ts, o.recv_window) for o in orders] == [(18.4, 0.6125), (20.09, None)]
    assert cancel_alls[0].client_ids == ("q1", "drill-oco-limit", "drill-oco-stop")
    assert cancel_alls[0].cancelled == 3


def test_reading_an_order_list_and_microsecond_timestamps_from_the_audit():
    key = "k1"
    lines = [
        {"kind": "request", "action": "new_order_list", "recv_us": 15_000_000, "done_us": 15_001_000,
         "api_key": key, "client_order_id": "drill-oco", "outcome": "accepted", "client_ts_ms": 14_999,
         "client_ts_us": 14_999_250, "recv_window_ms": 5000.0,
         "leg_client_order_ids": ["drill-oco-above", "drill-oco-below"]},
        {"kind": "request", "action": "cancel_all", "recv_us": 21_000_000, "done_us": 21_001_000, "api_key": key,
         "client_order_id": None, "outcome": "accepted", "cancelled": ["drill-oco-above", "drill-oco-below"]},
        {"kind": "order_done", "ts_us": 21_000_500, "api_key": key, "client_order_id": "drill-oco-above"},
        {"kind": "order_done", "ts_us": 21_000_600, "api_key": key, "client_order_id": "drill-oco-below"},
    ]
    orders, lives, cancel_alls = read_audit([json.dumps(r) for r in lines], key)
    assert [(o.client_id, o.node, o.epoch, o.accepted, o.client_ts) for o in orders] == [
        ("drill-oco", None, None, True, 14.99925)]
    assert [(life.client_id, life.epoch, life.start, life.end) for life in lives] == [
        ("drill-oco-above", None, 15.0, 21.0005), ("drill-oco-below", None, 15.0, 21.0006)]
    assert cancel_alls[0].client_ids == ("drill-oco-above", "drill-oco-below")


def test_the_report_shows_the_venue_refusing_late_orders_and_overlaps():
    orders, nodes, drill = kill_failover(orders=[late(E1, "sg-1", 21.4, 4, signed=19.9, recv_window=0.6)])
    orders[0] = order(E1, "sg-1", 10.1, 1, end=21.15)
    ev = evidence(orders, nodes, drill)
    result = report.DrillResult("delayed-order", 1, REQUIRED, check(ev, Rules(failover=REQUIRED)), ev)
    text = report.timeline(result)
    assert ("refused 1 late order(s) of epoch #1 from sg-1 (-1021, outside the recvWindow), received "
            "t=21.400..21.400, 1 after a newer epoch's first order, recvWindow 600–600 ms; up to 0.900 s past "
            "timestamp + recvWindow") in text
    assert "orders of epochs #1, #2 live at once for 0.050 s" in text
    assert "[ok] no older-epoch order accepted after a newer epoch's first order" in text
    data = report.summary(result)
    assert data["late_refusals"] == [{"node": "sg-1", "epoch": E1, "epoch_index": 1, "count": 1, "first_t": 21.4,
                                      "last_t": 21.4, "after_newer_epoch": 1, "max_late_s": 0.9,
                                      "recv_window_ms": [600, 600]}]
    assert data["overlaps"] == [{"start_t": 21.1, "duration_s": 0.05, "epochs": [1, 2]}]
    assert data["orders"]["refused_late"] == 1
    json.dumps(data)


def _restarted_backend(restart_detail: str):
    """sg-1 holds epoch 1 from 10; the lock backend is killed at 20 and serves again at 21.5 (a Consul
    server takes that long; the holder rode it out on the peer lease); sg-1 signs orders at 21.0, 22.3
    and 22.7."""
    orders = [order(E1, "sg-1", at + 0.01, seq, end=39.0, client_ts=at)
              for seq, at in ((1, 10.5), (2, 21.0), (3, 22.3), (4, 22.7))]
    drill = [DrillEvent(20.0, "fault"), DrillEvent(20.0, "backend-restart", None, restart_detail),
             DrillEvent(21.5, "backend-up", None, "lock backend serving again")]
    return evidence(orders, [acquired("sg-1", E1, 10.0)], drill)


def test_a_data_losing_restart_ends_the_lease_the_release_bound_after_the_backend_serves_again():
    consul = Rules(ttl_s=0.5, lock_frees_s=1.0, failover=ALLOWED)  # Consul frees a key within 2 x ttl
    lease = check(_restarted_backend("without persistence (a dev agent, in memory)"), consul).invariant("lease")
    # 21.0 (backend down) and 22.3 (within 1.0 s of serving again) are fine; 22.7 is not.
    assert len(lease.violations) == 1 and "abc_4" in lease.violations[0], lease.violations
    assert "restarted without persistence" in lease.violations[0]
    redis = Rules(ttl_s=1.0, lock_frees_s=1.0, failover=ALLOWED)
    assert len(check(_restarted_backend("without persistence"), redis).invariant("lease").violations) == 1
    kept = check(_restarted_backend("with persistence (a server with a data directory)"), consul)
    assert kept.invariant("lease").ok
