"""The local order book, kept in sync with the venue by Binance's documented
procedure: buffer the diff stream, load a REST snapshot, drop the events it
already covers, then apply diffs whose `U` follows the last `u` exactly.
Any hole means a resync. Sans-I/O: the caller fetches snapshots and passes
`now` (monotonic seconds).

Each side also keeps its prices in a sorted list, so the best price after
the best level is deleted is a lookup, not a scan of the whole side: that
scan was the largest single cost between a depth event and the order it
causes.
"""
from bisect import bisect_left, insort
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
        self._bid_prices: list[float] = []  # ascending, as are the ask prices
        self._ask_prices: list[float] = []
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
        self.bids = {p: q for p, q in snapshot.bids if q}
        self.asks = {p: q for p, q in snapshot.asks if q}
        self._bid_prices = sorted(self.bids)
        self._ask_prices = sorted(self.asks)
        self.best_bid = self._bid_prices[-1] if self._bid_prices else None
        self.best_ask = self._ask_prices[0] if self._ask_prices else None
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
        bids, bid_prices = self.bids, self._bid_prices
        for price, qty in event.b:
            if qty:
                if bids.get(price) is None:
                    insort(bid_prices, price)
                bids[price] = qty
            elif bids.pop(price, None) is not None:
                del bid_prices[bisect_left(bid_prices, price)]
        asks, ask_prices = self.asks, self._ask_prices
        for price, qty in event.a:
            if qty:
                if asks.get(price) is None:
                    insort(ask_prices, price)
                asks[price] = qty
            elif asks.pop(price, None) is not None:
                del ask_prices[bisect_left(ask_prices, price)]
        self.best_bid = bid_prices[-1] if bid_prices else None
        self.best_ask = ask_prices[0] if ask_prices else None
        if self.best_bid is not None and self.best_ask is not None and self.best_bid >= self.best_ask:
            self.crossed_events += 1
        self.update_id = event.u
        self.updated_at = now

    def top_levels(self, depth: int) -> tuple[list, list]:
        bids, asks = self.bids, self.asks
        return ([(p, bids[p]) for p in reversed(self._bid_prices[-depth:])] if depth > 0 else [],
                [(p, asks[p]) for p in self._ask_prices[:depth]])
