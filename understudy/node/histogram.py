"""A fixed-bucket histogram: one bisect and three additions to observe, so it
can sit on the hot path. The same buckets are exported to Prometheus as-is,
written to the periodic `ops stats` log line as deltas, and merged by the
daily report (`understudy/report/`), which reads its quantiles the way
Prometheus' histogram_quantile does."""
from bisect import bisect_left
from dataclasses import dataclass

LATENCY_BOUNDS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
TAKEOVER_BOUNDS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0)


@dataclass(slots=True)
class Snapshot:
    """Counts per bucket (the last one is +Inf), their sum, in one plain structure."""

    bounds: tuple[float, ...]
    counts: list[int]
    total: float = 0.0

    @property
    def count(self) -> int:
        return sum(self.counts)

    def minus(self, earlier: "Snapshot") -> "Snapshot":
        return Snapshot(self.bounds, [a - b for a, b in zip(self.counts, earlier.counts)], self.total - earlier.total)

    def plus(self, other: "Snapshot") -> "Snapshot":
        if other.bounds != self.bounds:
            raise ValueError(f"histograms with different buckets cannot be merged: {self.bounds} vs {other.bounds}")
        return Snapshot(self.bounds, [a + b for a, b in zip(self.counts, other.counts)], self.total + other.total)

    def quantile(self, q: float) -> float | None:
        """Linear interpolation inside the bucket holding the q-th observation,
        as histogram_quantile does; None with no observations. Above the last
        finite bound the answer is that bound (the histogram knows no more)."""
        n = self.count
        if n == 0:
            return None
        rank = q * n
        seen = 0
        for i, c in enumerate(self.counts):
            if c and seen + c >= rank:
                if i == len(self.bounds):
                    return self.bounds[-1]
                lower = self.bounds[i - 1] if i > 0 else 0.0
                return lower + (self.bounds[i] - lower) * (rank - seen) / c
            seen += c
        return self.bounds[-1]

    def to_json(self) -> dict:
        return {"le": list(self.bounds), "counts": list(self.counts), "sum": round(self.total, 6)}

    @classmethod
    def from_json(cls, data: dict) -> "Snapshot":
        bounds = tuple(float(b) for b in data["le"])
        counts = [int(c) for c in data["counts"]]
        if len(counts) != len(bounds) + 1:
            raise ValueError(f"a histogram needs {len(bounds) + 1} counts for {len(bounds)} bounds, got {len(counts)}")
        return cls(bounds, counts, float(data.get("sum", 0.0)))

    @classmethod
    def empty(cls, bounds: tuple[float, ...]) -> "Snapshot":
        return cls(tuple(bounds), [0] * (len(bounds) + 1), 0.0)


class Histogram:
    def __init__(self, bounds: tuple[float, ...] = LATENCY_BOUNDS_S):
        if list(bounds) != sorted(set(bounds)):
            raise ValueError("histogram bounds must be strictly increasing")
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound falls in that bucket (Prometheus' `le`).
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def snapshot(self) -> Snapshot:
        return Snapshot(self.bounds, list(self.counts), self.total)
