"""The failsafe peer lease (DESIGN §2.4), sans-I/O: the primary's deadline
from echoes, the standby's record of what it granted, and — over random
delays, losses and reorderings — the property that matters: the primary can
never be trading on a peer lease while the standby that granted it trades."""
import heapq
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from understudy.failover.peer_lease import PeerLeaseGrants, PeerLeaseHolder

BOOT = 1_700_000_000_000


def holder(silence=1.0, drift=0.01, margin=0.05) -> PeerLeaseHolder:
    h = PeerLeaseHolder(BOOT, silence, drift, margin)
    h.begin_tenure(next_seq=1)
    return h


def test_an_echo_grants_send_time_plus_silence_less_drift_and_margin():
    h = holder()
    h.on_sent(1, now=10.0)
    h.on_sent(2, now=10.1)
    h.on_heartbeat("standby", BOOT, 1)
    assert math.isclose(h.until, 10.0 + 1.0 * 0.99 - 0.05)
    h.on_heartbeat("standby", BOOT, 2)
    assert math.isclose(h.until, 10.1 + 0.94)
    h.on_heartbeat("standby", BOOT, 1)  # a late, older echo never shortens it
    assert math.isclose(h.until, 10.1 + 0.94)
    assert math.isclose(h.time_left(10.5), 0.54)
    assert h.time_left(20.0) == 0.0


def test_echoes_that_do_not_vouch_are_ignored():
    h = holder()
    h.on_sent(1, now=10.0)
    h.on_heartbeat("candidate", BOOT, 1)  # a node that wants the lock does not vouch
    h.on_heartbeat("primary", BOOT, 1)
    h.on_heartbeat("standby", BOOT - 1, 1)  # an echo of another boot of ours
    h.on_heartbeat("standby", BOOT, 7)  # never sent
    h.on_heartbeat("standby", BOOT, 0)  # "nothing to echo"
    assert h.until == -math.inf


def test_only_heartbeats_of_the_current_tenure_count():
    h = PeerLeaseHolder(BOOT, 1.0, 0.01, 0.05)
    h.on_sent(1, now=10.0)
    h.on_heartbeat("standby", BOOT, 1)
    assert h.until == -math.inf, "no tenure: no peer lease"
    h.begin_tenure(next_seq=2)
    h.on_heartbeat("standby", BOOT, 1)
    assert h.until == -math.inf, "sent before this tenure"
    h.on_sent(2, now=10.1)
    h.on_heartbeat("standby", BOOT, 2)
    assert h.until > 10.1
    h.end_tenure()
    assert h.until == -math.inf
    h.on_heartbeat("standby", BOOT, 2)
    assert h.until == -math.inf, "after the tenure, echoes grant nothing"


def test_the_holder_forgets_old_send_times():
    h = holder()
    for seq in range(1, 1000):
        h.on_sent(seq, now=seq * 0.1)
    h.on_heartbeat("standby", BOOT, 5)
    assert h.until == -math.inf
    h.on_heartbeat("standby", BOOT, 999)
    assert h.until > 99.0


def test_a_standby_grants_until_receive_time_plus_silence():
    g = PeerLeaseGrants(silence_s=1.0)
    assert g.echo(5.0, granting=True) == (0, 0), "nothing heard, nothing echoed"
    g.on_heartbeat(BOOT, 1, "primary", now=5.0)
    assert g.echo(5.05, granting=False) == (0, 0)
    assert g.expires_at == -math.inf, "not granting grants nothing"
    assert g.echo(5.05, granting=True) == (BOOT, 1)
    assert g.expires_at == 6.0
    assert g.wait_left(5.5) == 0.5
    g.on_heartbeat(BOOT, 1, "primary", now=5.2)  # a duplicate does not move the grant
    g.echo(5.25, granting=True)
    assert g.expires_at == 6.0


def test_reordered_heartbeats_do_not_move_the_echo_back():
    g = PeerLeaseGrants(silence_s=1.0)
    g.on_heartbeat(BOOT, 5, "primary", now=5.0)
    g.on_heartbeat(BOOT, 4, "primary", now=5.1)
    assert g.echo(5.2, granting=True) == (BOOT, 5)
    assert g.expires_at == 6.0


def test_a_peer_that_stops_holding_renounces_what_it_was_granted():
    g = PeerLeaseGrants(silence_s=1.0)
    g.on_heartbeat(BOOT, 5, "primary", now=5.0)
    g.echo(5.0, granting=True)
    g.on_heartbeat(BOOT, 6, "handing-over", now=5.1)
    assert g.expires_at == -math.inf and g.renounced == 1
    assert g.echo(5.2, granting=True) == (0, 0), "nothing to vouch for"
    # A late, reordered beat from before the renunciation changes nothing.
    g.on_heartbeat(BOOT, 4, "primary", now=5.3)
    assert g.echo(5.3, granting=True) == (0, 0) and g.expires_at == -math.inf


def test_a_restarted_peer_renounces_its_previous_life():
    g = PeerLeaseGrants(silence_s=1.0)
    g.on_heartbeat(BOOT, 50, "primary", now=5.0)
    g.echo(5.0, granting=True)
    g.on_heartbeat(BOOT + 9000, 1, "starting", now=5.5)
    assert g.expires_at == -math.inf


# -- the property ------------------------------------------------------------------
INTERVAL = 0.1
SILENCE = 1.0


def simulate(delays_to_standby, delays_to_primary, wants_lock_at, primary_stops_at, margin=0.05):
    """Two nodes on one clock exchanging heartbeats with the given delays (None: lost).
    The standby stops granting at `wants_lock_at` and trades from its lock's not_before;
    the primary leaves its tenure at `primary_stops_at` (switchover). Returns the
    latest instant the primary could trade on the peer lease at or after the
    standby started trading, and when that was (the instant must be earlier)."""
    primary = PeerLeaseHolder(BOOT, SILENCE, 0.01, margin)
    primary.begin_tenure(next_seq=1)
    standby = PeerLeaseGrants(SILENCE)
    events = []  # (time, order, kind, payload)
    for k, delay in enumerate(delays_to_standby):
        heapq.heappush(events, (k * INTERVAL, len(events), "primary-sends", (k + 1, delay)))
    for k, delay in enumerate(delays_to_primary):
        heapq.heappush(events, (k * INTERVAL + 0.05, len(events), "standby-sends", delay))
    trades_from = None
    worst = -math.inf  # the primary's deadline as it stood whenever the standby was trading
    while events:
        now, _, kind, payload = heapq.heappop(events)
        if trades_from is None and now >= wants_lock_at:
            # It stops echoing now; the lock it acquires lets it trade from not_before.
            trades_from = max(wants_lock_at, standby.expires_at)
        holding = now < primary_stops_at
        if kind == "primary-sends":
            seq, delay = payload
            if not holding and primary.in_tenure:
                primary.end_tenure()
            primary.on_sent(seq, now)
            if delay is not None:
                role = "primary" if holding else "standby"
                heapq.heappush(events, (now + delay, len(events), "standby-receives", (seq, role)))
        elif kind == "standby-receives":
            seq, role = payload
            standby.on_heartbeat(BOOT, seq, role, now)
        elif kind == "standby-sends":
            granting = trades_from is None
            echo = standby.echo(now, granting=granting)
            if payload is not None:
                heapq.heappush(events, (now + payload, len(events), "primary-receives",
                                        ("standby" if granting else "candidate", echo)))
        elif kind == "primary-receives":
            role, (boot, seq) = payload
            primary.on_heartbeat(role, boot, seq)
        if trades_from is not None and now >= trades_from:
            worst = max(worst, primary.until)
    return trades_from, worst


delays = st.lists(st.one_of(st.none(), st.floats(0.0, 0.8)), min_size=40, max_size=40)


@settings(max_examples=300, deadline=None)
@given(delays, delays, st.floats(0.0, 4.5), st.one_of(st.just(math.inf), st.floats(0.0, 4.5)))
def test_the_primary_never_trades_on_a_peer_lease_once_the_standby_trades(to_standby, to_primary, wants_at,
                                                                          stops_at):
    trades_from, worst = simulate(to_standby, to_primary, wants_at, stops_at)
    if trades_from is not None:
        assert worst <= trades_from, f"primary's peer lease ran to {worst} but the standby traded from {trades_from}"


def test_the_property_catches_a_primary_that_overstays():
    """Negative control: a holder whose lease outlives silence is caught."""
    trades_from, worst = simulate([0.5] * 40, [0.0] * 40, wants_lock_at=2.0, primary_stops_at=math.inf,
                                  margin=-0.6)
    assert worst > trades_from
