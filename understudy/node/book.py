"""The local order book, kept in sync with the venue by Binance's documented
procedure: buffer the diff stream, load a REST snapshot, drop the events it
already covers, then apply diffs whose `U` follows the last `u` exactly.
Any hole means a resync. Sans-I/O: the caller fetches snapshots and passes
`now` (monotonic seconds).
"""
from enum import Enum

from .messages import DepthSnapshot, DepthUpdate

BUFFER_LIMIT = 2_000


class BookState(Enum):
    SYNCING = "syncing"  # buffering the stream, waiting for a snapshot
    LIVE = "live"


class Applied(Enum):
    APPLIED = "applied"
    IGNORED = "ignored"  # already covered by the book
    BUFFERED = "buffered"
    GAP = "gap"  # the book was reset: fetch a snapshot


class LocalBook:
    def __init__(self, symbol: str):
        self.symbol = symbol
        self.state = BookState.SYNCING
        self.update_id = 0
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}
        self.best_bid: float | None = None
        self.best_ask: float | None = None
        self.updated_at = float("-inf")
        self.resyncs = 0
        self.crossed_events = 0
        self._buffer: list[DepthUpdate] = []

    # -- reading ---------------------------------------------------------------
    def mid(self) -> float | None:
        if self.best_bid is None or self.best_ask is None:
            return None
        return (self.best_bid + self.best_ask) / 2

    def age(self, now: float) -> float:
        return now - self.updated_at

    def is_live(self) -> bool:
        return self.state is BookState.LIVE

    # -- feeding ---------------------------------------------------------------
    def on_event(self, event: DepthUpdate, now: float) -> Applied:
        if self.state is BookState.SYNCING:
            if len(self._buffer) >= BUFFER_LIMIT:
                self._buffer.clear()  # the snapshot is late: restart buffering rather than grow
            self._buffer.append(event)
            return Applied.BUFFERED
        if event.u <= self.update_id:
            return Applied.IGNORED
        if event.U > self.update_id + 1:
            self._reset([event])
            return Applied.GAP
        self._apply(event, now)
        return Applied.APPLIED

    def on_snapshot(self, snapshot: DepthSnapshot, now: float) -> bool:
        """Loads a snapshot and replays the buffer. False: the snapshot is
        older than the buffered stream, fetch another."""
        if self._buffer and snapshot.lastUpdateId < self._buffer[0].U - 1:
            return False
        self.bids = {p: q for p, q in snapshot.bids}
        self.asks = {p: q for p, q in snapshot.asks}
        self.best_bid = max(self.bids) if self.bids else None
        self.best_ask = min(self.asks) if self.asks else None
        self.update_id = snapshot.lastUpdateId
        self.updated_at = now
        buffered, self._buffer = self._buffer, []
        self.state = BookState.LIVE
        for i, event in enumerate(buffered):
            if self.on_event(event, now) is Applied.GAP:
                # Keep what follows the hole: a later snapshot may cover it.
                self._buffer = buffered[i:]
                return False
        return True

    def reset(self) -> None:
        """The stream (re)connected: what arrives next cannot be trusted to follow."""
        self.state = BookState.SYNCING
        self._buffer = []

    def _reset(self, buffer: list[DepthUpdate]) -> None:
        self.state = BookState.SYNCING
        self.resyncs += 1
        self._buffer = buffer

    def _apply(self, event: DepthUpdate, now: float) -> None:
        bids, best_bid, rescan_bid = self.bids, self.best_bid, False
        for price, qty in event.b:
            if qty:
                bids[price] = qty
                if best_bid is None or price > best_bid:
                    best_bid = price
            elif bids.pop(price, None) is not None and price == best_bid:
                rescan_bid = True
        asks, best_ask, rescan_ask = self.asks, self.best_ask, False
        for price, qty in event.a:
            if qty:
                asks[price] = qty
                if best_ask is None or price < best_ask:
                    best_ask = price
            elif asks.pop(price, None) is not None and price == best_ask:
                rescan_ask = True
        self.best_bid = (max(bids) if bids else None) if rescan_bid else best_bid
        self.best_ask = (min(asks) if asks else None) if rescan_ask else best_ask
        if self.best_bid is not None and self.best_ask is not None and self.best_bid >= self.best_ask:
            self.crossed_events += 1
        self.update_id = event.u
        self.updated_at = now

    def top_levels(self, depth: int) -> tuple[list, list]:
        return (sorted(self.bids.items(), reverse=True)[:depth], sorted(self.asks.items())[:depth])
