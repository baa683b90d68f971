"""What the venue's own record says about epochs side by side (pure): the
stretches in which orders of two epochs were live at once, older-epoch orders
the venue accepted after a newer epoch had begun trading, and the venue's
refusals of orders that arrived too late (the recvWindow fence, DESIGN §2.2).

The checker turns these into invariants and facts; the report shows them.
Every time is the venue's: when it received a request (`recv`), when an
order entered and left its book.
"""
from dataclasses import dataclass
from typing import Iterable

from .evidence import OrderLife, OrderRequest

# Binance: "Timestamp for this request is outside of the recvWindow." (also sent, with another
# message, for a timestamp too far ahead of the venue's clock; see `is_late_refusal`).
OUTSIDE_RECV_WINDOW = -1021


@dataclass(frozen=True)
class Overlap:
    """A stretch in which orders of two or more epochs were live on the venue at once."""

    start: float
    stop: float
    epochs: tuple  # the epochs with live orders during it, oldest first

    @property
    def duration(self) -> float:
        return self.stop - self.start


def overlap_instants(lives: Iterable[OrderLife], end: float) -> list[Overlap]:
    """Every stretch in which orders of two or more epochs were live (an order still resting when the
    evidence was taken counts as live until `end`)."""
    points = []
    for life in lives:
        stop = life.end if life.end is not None else end
        points.append((life.start, 1, life.epoch))
        points.append((stop, -1, life.epoch))
    points.sort(key=lambda p: (p[0], p[1]))  # ends before starts at the same instant: touching is no overlap
    live: dict = {}
    out: list[Overlap] = []
    opened, seen = None, set()
    for t, delta, epoch in points:
        live[epoch] = live.get(epoch, 0) + delta
        if live[epoch] == 0:
            del live[epoch]
        if len(live) >= 2:
            if opened is None:
                opened, seen = t, set()
            seen |= set(live)
        elif opened is not None:
            out.append(Overlap(opened, t, tuple(sorted(seen, key=lambda e: e or 0))))
            opened = None
    return out


def first_accepted(orders: Iterable[OrderRequest]) -> dict[int, OrderRequest]:
    """Each epoch's first order the venue accepted (by receive time)."""
    firsts: dict[int, OrderRequest] = {}
    for o in orders:
        if o.accepted and o.epoch is not None and (o.epoch not in firsts or o.recv < firsts[o.epoch].recv):
            firsts[o.epoch] = o
    return firsts


def newer_first(firsts: dict[int, OrderRequest], epoch: int) -> OrderRequest | None:
    """The earliest first accepted order of any epoch newer than `epoch` (a handful of epochs a drill)."""
    candidates = [o for e, o in firsts.items() if e > epoch]
    return min(candidates, key=lambda o: o.recv) if candidates else None


@dataclass(frozen=True)
class StaleAcceptance:
    """An order of an older epoch the venue accepted after a newer epoch's first accepted order."""

    order: OrderRequest
    newer: OrderRequest  # the newer epoch's first accepted order

    @property
    def after_s(self) -> float:
        return self.order.recv - self.newer.recv


def stale_acceptances(orders: list[OrderRequest]) -> list[StaleAcceptance]:
    firsts = first_accepted(orders)
    out = []
    for o in orders:
        if not o.accepted or o.epoch is None:
            continue
        first = newer_first(firsts, o.epoch)
        if first is not None and o.recv > first.recv:
            out.append(StaleAcceptance(o, first))
    return out


def is_late_refusal(o: OrderRequest) -> bool:
    """Refused for arriving after `timestamp + recvWindow`. The same code refuses a timestamp ahead
    of the venue's clock; such a request was signed *after* the venue received it by the venue's
    clock, which a late one never is."""
    return (not o.accepted and o.code == OUTSIDE_RECV_WINDOW
            and (o.client_ts is None or o.client_ts <= o.recv))


def lateness(o: OrderRequest) -> float | None:
    """How long after `timestamp + recvWindow` the venue received it, when both were audited."""
    if o.client_ts is None or o.recv_window is None:
        return None
    return o.recv - (o.client_ts + o.recv_window)


@dataclass(frozen=True)
class LateRefusals:
    """The venue's refusals of one node's late orders of one epoch."""

    node: str | None
    epoch: int | None
    count: int
    first: float  # received, the first and the last of them
    last: float
    after_newer: int  # of them, received after a newer epoch's first accepted order
    max_late_s: float | None  # the latest arrival past its timestamp + recvWindow, when audited
    recv_windows_s: tuple[float, float] | None  # the smallest and largest recvWindow they carried


def late_refusals(orders: list[OrderRequest]) -> list[LateRefusals]:
    firsts = first_accepted(orders)
    groups: dict[tuple, list[OrderRequest]] = {}
    for o in orders:
        if is_late_refusal(o):
            groups.setdefault((o.node, o.epoch), []).append(o)
    out = []
    for (node, epoch), refused in groups.items():
        first = newer_first(firsts, epoch) if epoch is not None else None
        late = [x for x in map(lateness, refused) if x is not None]
        windows = [o.recv_window for o in refused if o.recv_window is not None]
        out.append(LateRefusals(node, epoch, len(refused), min(o.recv for o in refused),
                                max(o.recv for o in refused),
                                sum(1 for o in refused if first is not None and o.recv > first.recv),
                                max(late) if late else None,
                                (min(windows), max(windows)) if windows else None))
    out.sort(key=lambda r: r.first)
    return out
