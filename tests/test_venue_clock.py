"""The recvWindow fence's arithmetic, sans-I/O: the venue clock estimate
from round trips, and the (timestamp, recvWindow) it stamps on an order so
that the venue accepts it only before its sender's lease ends."""
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from understudy.node.venue_clock import MIN_WINDOW_MS, VenueClock, format_window


def clock_with(offset_ms: float, rtt_s: float, at: float = 100.0, **kw) -> VenueClock:
    """One round trip around monotonic `at`, to a venue whose clock reads mono*1000 + offset."""
    c = VenueClock(kw.pop("max_uncertainty_ms", 50.0), kw.pop("max_age_s", 1.5), **kw)
    sent, received = at - rtt_s / 2, at + rtt_s / 2
    server_ms = math.floor(at * 1000 + offset_ms)  # the venue answered at some instant of the trip
    c.on_round_trip(sent, server_ms, received)
    return c


def test_the_estimate_is_the_round_trip_midpoint_within_half_the_trip():
    c = clock_with(offset_ms=12_345.0, rtt_s=0.010)
    est = c.estimate(100.0)
    assert abs(est.offset_ms - 12_345.0) <= est.uncertainty_ms
    assert math.isclose(est.uncertainty_ms, 5.5)  # half of 10 ms, plus the venue's millisecond resolution


def test_the_best_recent_sample_wins_and_old_ones_grow_less_certain():
    c = clock_with(0.0, 0.080)
    c.on_round_trip(100.5, int(100_502), 100.504)
    assert c.estimate(100.6).uncertainty_ms < 3.0
    later = c.estimate(100.6 + 100)
    assert later.uncertainty_ms > c.estimate(100.6).uncertainty_ms  # drift accrues with age


def test_no_trading_without_a_good_enough_recent_estimate():
    assert VenueClock(50, 1.5).problem(0.0) == "venue-clock-unknown"
    assert clock_with(0.0, 0.200).problem(100.0) == "venue-clock-uncertain"  # ±100 ms > 50 ms
    c = clock_with(0.0, 0.002)
    assert c.problem(100.5) is None
    assert c.problem(102.0) == "venue-unreachable"  # no good probe for 1.5 s: the REST path is down
    assert c.fence(102.0, 1.0, 5000) is None


def test_the_window_is_the_lease_left_less_the_uncertainty_and_never_over_the_cap():
    c = clock_with(offset_ms=-3_000.0, rtt_s=0.004)
    fence = c.fence(100.0, lease_left_s=0.8, cap_ms=5000)
    u = c.estimate(100.0).uncertainty_ms
    assert math.isclose(fence.window_ms, 800 - u, abs_tol=0.001)
    assert fence.timestamp_ms == math.floor(100_000 - 3_000.0 + c.estimate(100.0).offset_ms + 3_000.0)
    assert c.fence(100.0, lease_left_s=math.inf, cap_ms=5000).window_ms == 5000
    assert c.fence(100.0, lease_left_s=(MIN_WINDOW_MS - 1 + u) / 1000, cap_ms=5000) is None  # too short to bother


def test_recv_window_text_has_at_most_three_decimals():
    assert format_window(5000) == "5000"
    assert format_window(797.4999) == "797.5"
    assert format_window(12.3456) == "12.346"
    assert format_window(799.0004) == "799"


@settings(max_examples=400, deadline=None)
@given(offset_ms=st.floats(-1e7, 1e7), rtt_s=st.floats(0.0001, 0.09), answer_at=st.floats(0, 1),
       lease_left_s=st.floats(0.01, 2.0), sent_after_s=st.floats(0, 1.0), rate_error_ppm=st.floats(-150, 150))
def test_a_fenced_order_cannot_be_accepted_after_its_senders_lease(offset_ms, rtt_s, answer_at, lease_left_s,
                                                                  sent_after_s, rate_error_ppm):
    """Whatever the true offset, wherever within the round trip the venue read its clock, and with
    the two clocks' rates apart by up to 150 ppm: timestamp + recvWindow, the last venue instant at
    which the venue accepts the order, falls before the lease's end in venue time."""
    rate = 1 + rate_error_ppm * 1e-6

    def venue_ms(mono: float) -> float:
        return mono * 1000 * rate + offset_ms

    c = VenueClock(50, 5.0)
    sent, received = 100.0, 100.0 + rtt_s
    c.on_round_trip(sent, math.floor(venue_ms(sent + answer_at * rtt_s)), received)
    now = received + sent_after_s
    fence = c.fence(now, lease_left_s, 60_000)
    if fence is None:
        return
    assert fence.timestamp_ms + fence.window_ms <= venue_ms(now + lease_left_s) + 1e-6
    assert fence.accept_by <= now + lease_left_s + 1e-9
    # The venue's own first check (timestamp < serverTime + 1000) passes on arrival.
    assert fence.timestamp_ms < venue_ms(now) + 1000
