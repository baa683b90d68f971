"""The lease: permission to trade until a safe deadline on the monotonic clock.

The deadline is measured from when the acquire/renew request was *sent*
(the backend starts its TTL later than that), shortened for clock-rate drift
and a safety margin, so it always falls before the backend's own expiry.
`not_before` is when a new holder may start: after every failsafe peer lease
it granted the previous holder has run out (DESIGN §2.4).
Pure code: `now` is always passed in.
"""
import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Lease:
    epoch: int
    safe_deadline: float  # monotonic seconds
    not_before: float = -math.inf

    def may_trade(self, now: float) -> bool:
        return self.not_before <= now < self.safe_deadline

    def time_left(self, now: float) -> float:
        return max(0.0, self.safe_deadline - now)

    @classmethod
    def granted(cls, epoch: int, sent_at: float, ttl_s: float, drift: float, margin_s: float,
                not_before: float = -math.inf) -> "Lease":
        return cls(epoch, sent_at + ttl_s * (1.0 - drift) - margin_s, not_before)

    @classmethod
    def solo(cls, epoch: int = 0) -> "Lease":
        """A node trading alone, with no lock backend: the lease never expires."""
        return cls(epoch, math.inf)
