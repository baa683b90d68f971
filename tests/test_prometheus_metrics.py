"""The pieces of the metrics that are pure logic: the fixed-bucket histogram
(observe, quantile, deltas, exposition), the takeover reason labels read off
the role machine's own reasons, and the label values exported from zero,
which must cover every value the code can produce."""
import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from understudy.failover import roles
from understudy.failover.heartbeat import Heartbeat, HeartbeatReceiver, encode
from understudy.node.histogram import Histogram, Snapshot
from understudy.node.metrics import HEARTBEAT_REJECTIONS, TAKEOVER_REASONS, _histogram, takeover_reason
from understudy.node.risk import CHECKS

REPO = Path(__file__).resolve().parent.parent


def test_a_value_on_a_bound_falls_in_that_bucket_as_prometheus_le_says():
    h = Histogram((0.1, 0.2, 0.5))
    for v in (0.1, 0.15, 0.2, 0.7):
        h.observe(v)
    assert h.snapshot().counts == [1, 2, 0, 1]
    assert h.snapshot().total == pytest.approx(1.15)


def test_quantiles_interpolate_inside_the_bucket_like_histogram_quantile():
    h = Histogram((0.01, 0.02, 0.05))
    for _ in range(50):
        h.observe(0.005)
    for _ in range(50):
        h.observe(0.015)
    snap = h.snapshot()
    assert snap.quantile(0.5) == pytest.approx(0.01)
    assert snap.quantile(0.75) == pytest.approx(0.015)
    h.observe(9.0)  # beyond the last bound: the answer is that bound, the histogram knows no more
    assert h.snapshot().quantile(1.0) == 0.05
    assert Histogram().snapshot().quantile(0.99) is None


def test_deltas_and_sums_of_snapshots():
    h = Histogram((1.0, 2.0))
    h.observe(0.5)
    first = h.snapshot()
    h.observe(1.5)
    h.observe(1.5)
    delta = h.snapshot().minus(first)
    assert delta.counts == [0, 2, 0] and delta.total == pytest.approx(3.0)
    assert Snapshot.from_json(delta.to_json()).plus(first).counts == [1, 2, 0]
    with pytest.raises(ValueError, match="different buckets"):
        first.plus(Snapshot.empty((1.0, 3.0)))
    with pytest.raises(ValueError, match="needs 3 counts"):
        Snapshot.from_json({"le": [1.0, 2.0], "counts": [1, 2]})
    with pytest.raises(ValueError, match="strictly increasing"):
        Histogram((2.0, 1.0))


def test_the_exposition_is_cumulative_with_an_inf_bucket():
    h = Histogram((0.1, 0.2))
    for v in (0.05, 0.15, 0.15, 3.0):
        h.observe(v)

    class One:
        def collect(self):
            yield _histogram("understudy_x_seconds", "x", "sg-1", {("total",): h.snapshot()}, ["phase"])

    registry = CollectorRegistry()
    registry.register(One())
    text = generate_latest(registry).decode()
    assert 'understudy_x_seconds_bucket{le="0.1",node="sg-1",phase="total"} 1.0' in text
    assert 'understudy_x_seconds_bucket{le="0.2",node="sg-1",phase="total"} 3.0' in text
    assert 'understudy_x_seconds_bucket{le="+Inf",node="sg-1",phase="total"} 4.0' in text
    assert 'understudy_x_seconds_count{node="sg-1",phase="total"} 4.0' in text


def _candidate_reason(state: roles.State, event, settings=roles.Settings("sg-2", "sg-1")) -> str:
    state, actions = roles.step(settings, state, event)
    [transition] = [a for a in actions if isinstance(a, roles.Transition)]
    assert transition.role == "candidate"
    return transition.reason


def test_takeover_reasons_are_read_off_the_role_machines_own_words():
    settings = roles.Settings("sg-2", "sg-1")
    standby, _ = roles.step(settings, roles.State(), roles.Started(0.0))
    heard, _ = roles.step(settings, standby, roles.PeerHeard(0.1, "primary", 5, True))
    assert takeover_reason(_candidate_reason(heard, roles.Tick(1.5))) == "peer-silent"
    assert takeover_reason(_candidate_reason(standby, roles.Tick(1.5))) == "peer-silent"  # never heard
    cold, _ = roles.step(settings, standby, roles.PeerHeard(0.1, "standby", None, True))
    cold, _ = roles.step(settings, cold, roles.HealthChanged(0.2, True))
    assert takeover_reason(_candidate_reason(cold, roles.Tick(0.3))) == "no-primary"
    handed = roles.PeerHeard(0.2, "handing-over", 5, True, handover_to="sg-2")
    assert takeover_reason(_candidate_reason(heard, handed)) == "switchover"
    assert takeover_reason("something new") == "other" and "other" in TAKEOVER_REASONS


def test_every_heartbeat_rejection_reason_is_exported_from_zero():
    source = (REPO / "understudy" / "failover" / "heartbeat.py").read_text()
    assert set(re.findall(r'_reject\("([a-z-]+)"\)', source)) == set(HEARTBEAT_REJECTIONS)
    # And the receiver really counts under those names.
    key = b"k" * 32
    receiver = HeartbeatReceiver("sg-1", "sg-2", key, 2000)
    receiver.receive(b"x" * 40, 1000)
    receiver.receive(encode(Heartbeat(node="sg-2", boot=1, seq=1, sent_ms=1000, role="standby"), b"z" * 32), 1000)
    assert set(receiver.rejected) <= set(HEARTBEAT_REJECTIONS) and sum(receiver.rejected.values()) == 2


def test_every_risk_check_is_exported_from_zero():
    source = (REPO / "understudy" / "node" / "risk.py").read_text()
    body = source[source.index("def check("):source.index("def state_problems")]
    assert set(re.findall(r'return "([a-z-]+)"', body)) == set(CHECKS)


def test_two_takeovers_between_scrapes_are_both_counted_and_timed():
    from collections import deque
    from types import SimpleNamespace

    from understudy.node.metrics import _HaRecorder

    lock = SimpleNamespace(renewals=0, renew_latency_s=[])
    timings = {"detected": 10.0, "acquired": 10.1, "protective_cancel_done": 10.15, "reconciled": 10.2,
               "first_quote": 10.3}
    ha = SimpleNamespace(failovers=2, lock=lock, completed_takeovers=deque([
        ("peer sg-2 silent for 1.000 s: seizing the lock", timings),
        ("peer sg-2 hands the lock over to us", {k: v + 50 for k, v in timings.items()})]))
    recorder = _HaRecorder()
    recorder.sync(ha)
    assert recorder.takeovers["peer-silent"] == 1 and recorder.takeovers["switchover"] == 1
    assert recorder.phases["total"].snapshot().count == 2
    recorder.sync(ha)  # nothing new: nothing counted twice
    assert sum(recorder.takeovers.values()) == 2 and recorder.phases["total"].snapshot().count == 2
