"""One symbol's limit order book: price levels with FIFO queues.

Every change to a level's total quantity bumps the book's update id, the
number Binance calls `lastUpdateId` in depth snapshots and `U`/`u` in diff
events; diff trackers collect the changed levels between two flushes.
"""
from bisect import bisect_left, insort
from collections import deque
from dataclasses import dataclass, field


class BookSide:
    """Keys are stored negated for bids, so index 0 is always the best level."""

    def __init__(self, is_bid: bool):
        self.is_bid = is_bid
        self._keys: list[int] = []
        self.queues: dict[int, deque] = {}
        self.totals: dict[int, int] = {}

    def _key(self, price: int) -> int:
        return -price if self.is_bid else price

    def best_price(self) -> int | None:
        if not self._keys:
            return None
        key = self._keys[0]
        return -key if self.is_bid else key

    def prices(self, limit: int | None = None) -> list[int]:
        keys = self._keys if limit is None else self._keys[:limit]
        return [-k for k in keys] if self.is_bid else list(keys)

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, price: int, order) -> None:
        queue = self.queues.get(price)
        if queue is None:
            queue = self.queues[price] = deque()
            self.totals[price] = 0
            insort(self._keys, self._key(price))
        queue.append(order)

    def remove(self, price: int, order) -> None:
        queue = self.queues[price]
        queue.remove(order)
        if not queue:
            del self.queues[price]
            del self.totals[price]
            key = self._key(price)
            del self._keys[bisect_left(self._keys, key)]


@dataclass(slots=True)
class DiffTracker:
    """Levels changed since the last flush, for one depth stream cadence."""

    first_update_id: int = 0
    last_update_id: int = 0
    bids: dict = field(default_factory=dict)
    asks: dict = field(default_factory=dict)

    def record(self, is_bid: bool, price: int, qty: int, update_id: int) -> None:
        if not self.first_update_id:
            self.first_update_id = update_id
        self.last_update_id = update_id
        (self.bids if is_bid else self.asks)[price] = qty

    def flush(self):
        """(U, u, bids, asks) of what changed, or None; then starts afresh."""
        if not self.first_update_id:
            return None
        out = (self.first_update_id, self.last_update_id, self.bids, self.asks)
        self.first_update_id = self.last_update_id = 0
        self.bids, self.asks = {}, {}
        return out


class OrderBook:
    def __init__(self, symbol: str):
        self.symbol = symbol
        self.bids = BookSide(True)
        self.asks = BookSide(False)
        self.update_id = 1
        self.trackers: list[DiffTracker] = []

    def side(self, is_bid: bool) -> BookSide:
        return self.bids if is_bid else self.asks

    def change_level(self, is_bid: bool, price: int, delta: int) -> None:
        side = self.side(is_bid)
        total = side.totals[price] + delta
        side.totals[price] = total
        self.update_id += 1
        for tracker in self.trackers:
            tracker.record(is_bid, price, total, self.update_id)

    def top(self) -> tuple[int | None, int, int | None, int]:
        bid, ask = self.bids.best_price(), self.asks.best_price()
        return (bid, self.bids.totals[bid] if bid is not None else 0,
                ask, self.asks.totals[ask] if ask is not None else 0)

    def snapshot(self, limit: int) -> tuple[int, list[tuple[int, int]], list[tuple[int, int]]]:
        return (
            self.update_id,
            [(p, self.bids.totals[p]) for p in self.bids.prices(limit)],
            [(p, self.asks.totals[p]) for p in self.asks.prices(limit)],
        )
