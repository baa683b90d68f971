"""The drill invariant checker, sans-I/O: evidence built by hand (the records
the venue's audit log and the nodes' logs produce), each invariant shown to
pass on a safe history and to catch the unsafe variant of it."""
import json

import pytest

from understudy.chaos.checker import ALLOWED, FORBIDDEN, REQUIRED, Rules, check
from understudy.chaos.evidence import (DrillEvent, Evidence, NodeEvent, OrderLife, OrderRequest, read_audit,
                                       read_node_log)
from understudy.node.client_ids import base36

E1, E2 = 1_700_000_000_000, 1_700_000_011_000


def cid(epoch: int, node: str, seq: int) -> str:
    return f"e{base36(epoch)}.{node}.abc_{base36(seq)}"


def order(epoch, node, recv, seq=1, accepted=True, end=None, client_ts=None):
    """An order request and, if accepted, its life at the venue."""
    c = cid(epoch, node, seq)
    request = OrderRequest(c, node, epoch, recv, recv + 0.002, accepted, client_ts=client_ts)
    life = OrderLife(c, node, epoch, recv, end) if accepted else None
    return request, life


def evidence(orders=(), node_events=(), drill_events=(), ended=40.0) -> Evidence:
    requests = [o[0] for o in orders]
    lives = [o[1] for o in orders if o[1] is not None]
    return Evidence(requests, lives, [], sorted(node_events, key=lambda e: e.at),
                    sorted(drill_events, key=lambda e: e.at), 0.0, ended)


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
