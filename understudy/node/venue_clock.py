"""The venue's clock as this node knows it, sans-I/O: `GET /api/v3/time`
round trips in, an estimate of the venue's time and how far off it may be
out.

The recvWindow fence (DESIGN §2.2) rests on this: every order carries the
venue-time `timestamp` at which it left and a `recvWindow` no longer than
the sender's remaining lease less this estimate's uncertainty, so the venue
itself refuses an order that arrives after its sender's lease ended. That
holds only while the uncertainty is bounded, so a node whose uncertainty is
too large, or whose last good sample is too old, does not trade at all.

The estimate maps the *monotonic* clock to venue time, never the wall
clock: a step of the local wall clock (an NTP correction) cannot move it.

A round trip sent at `t0` and answered at `t1` (monotonic) with `serverTime`
S (whole milliseconds, so the venue's true time was in [S, S + 1)) says the
venue's clock read S + 0.5 ± 0.5 ms at some instant of [t0, t1]: at the
midpoint, ± (t1 − t0)/2 more. An older sample's uncertainty grows with the
two clocks' worst-case rate difference. The best of the recent samples
(least uncertain now) is the estimate: a slow round trip does not spoil a
good one.
"""
import math
from collections import deque
from dataclasses import dataclass

SAMPLES_KEPT = 16
RESOLUTION_MS = 0.5  # serverTime is truncated to the millisecond


@dataclass(frozen=True, slots=True)
class Sample:
    at: float  # monotonic seconds, the round trip's midpoint
    offset_ms: float  # venue time in ms minus monotonic time in ms, at `at`
    uncertainty_ms: float  # half the round trip plus the venue's resolution


@dataclass(frozen=True, slots=True)
class Fence:
    timestamp_ms: int  # venue time at sending, rounded down
    window_ms: float  # recvWindow, whole microseconds
    accept_by: float  # monotonic: after this the venue can no longer accept the order


@dataclass(frozen=True, slots=True)
class Estimate:
    offset_ms: float
    uncertainty_ms: float
    age_s: float  # since the sample it rests on


class VenueClock:
    def __init__(self, max_uncertainty_ms: float, max_age_s: float, drift_ppm: float = 200.0):
        self.max_uncertainty_ms = max_uncertainty_ms
        self.max_age_s = max_age_s
        self.drift = drift_ppm * 1e-6
        self._samples: deque[Sample] = deque(maxlen=SAMPLES_KEPT)
        self.probes = 0
        self.failures = 0
        self.last_ok_at: float | None = None

    def on_round_trip(self, sent_at: float, server_time_ms: int, received_at: float) -> Sample:
        if received_at < sent_at:
            raise ValueError("a round trip cannot end before it starts")
        self.probes += 1
        midpoint = (sent_at + received_at) / 2
        sample = Sample(midpoint, server_time_ms + RESOLUTION_MS - midpoint * 1000.0,
                        (received_at - sent_at) * 500.0 + RESOLUTION_MS)
        self._samples.append(sample)
        self.last_ok_at = received_at
        return sample

    def on_failure(self) -> None:
        self.failures += 1

    def estimate(self, now: float) -> Estimate | None:
        best: Estimate | None = None
        for s in self._samples:
            u = s.uncertainty_ms + abs(now - s.at) * 1000.0 * self.drift
            if best is None or u < best.uncertainty_ms:
                best = Estimate(s.offset_ms, u, now - s.at)
        return best

    def venue_time_ms(self, now: float) -> float | None:
        est = self.estimate(now)
        return None if est is None else now * 1000.0 + est.offset_ms

    def problem(self, now: float) -> str | None:
        """Why the venue's time is not known well enough to fence orders with, or None."""
        return self._problem(now, self.estimate(now))

    def _problem(self, now: float, est: Estimate | None) -> str | None:
        if est is None:
            return "venue-clock-unknown"
        if est.uncertainty_ms > self.max_uncertainty_ms:
            return "venue-clock-uncertain"
        if self.last_ok_at is None or now - self.last_ok_at > self.max_age_s:
            return "venue-unreachable"
        return None

    def fence(self, now: float, lease_left_s: float, cap_ms: float) -> Fence | None:
        """The timestamp and recvWindow in venue milliseconds for an order
        sent now, such that the venue accepts it only before the lease
        ends; None when no such window is left or the clock is not known
        well enough. `timestamp` is rounded down and `recvWindow` down to
        the microsecond, both of which only shorten the window."""
        est = self.estimate(now)  # once: this is on every order's path
        if self._problem(now, est) is not None:
            return None
        timestamp = math.floor(now * 1000.0 + est.offset_ms)
        window_ms = min(cap_ms, lease_left_s * 1000.0 - est.uncertainty_ms)
        window_ms = math.floor(window_ms * 1000) / 1000
        if window_ms < MIN_WINDOW_MS:
            return None
        return Fence(timestamp, window_ms, now + (window_ms + est.uncertainty_ms) / 1000.0)


# Below this an order would be refused in flight anyway: not worth sending.
MIN_WINDOW_MS = 5.0


def format_window(window_ms: float) -> str:
    """recvWindow as Binance takes it: milliseconds with at most three decimals."""
    text = f"{window_ms:.3f}".rstrip("0").rstrip(".")
    return text or "0"
