"""A synthetic market: a random-walk fair price, a liquidity provider that
keeps a ladder resting around it, and marketable flow that takes from the top
of the book, so a market maker's quotes really get filled.

The participants are internal accounts trading through the same matching
engine as API clients; they skip signing, rate limits and the audit log.
"""
import math
import random
from dataclasses import dataclass

from . import errors
from .engine import MatchingEngine
from .symbols import SymbolSpec
from .units import SCALE

LIQUIDITY_ACCOUNT = "sim-liquidity"
FLOW_ACCOUNT = "sim-flow"
_BOTTOMLESS = 10**12 * SCALE


@dataclass(frozen=True, slots=True)
class MarketParams:
    volatility_bps_per_sqrt_s: float = 3.0  # random-walk step of the fair price
    ladder_levels: int = 10
    ladder_offset_bps: float = 5.0  # distance of the first rung from fair
    ladder_gap_bps: float = 2.0
    rung_notional: float = 3_000.0  # quote value resting per rung, on average
    flow_rate_per_s: float = 4.0  # marketable orders per second
    flow_notional: float = 400.0  # quote value per marketable order, on average


def install_participants(engine: MatchingEngine) -> None:
    assets = {a for s in engine.specs.values() for a in (s.base, s.quote)}
    for key in (LIQUIDITY_ACCOUNT, FLOW_ACCOUNT):
        engine.add_account(key, "", {a: _BOTTOMLESS for a in assets}, internal=True)


class SyntheticMarket:
    def __init__(self, engine: MatchingEngine, spec: SymbolSpec, rng: random.Random, params: MarketParams):
        self.engine = engine
        self.symbol = spec.symbol
        self.rng = rng
        self.params = params
        self.fair = float(spec.initial_price)
        # Fixed at start: a grid that moved with the price would re-post every rung.
        self.gap = max(spec.tick_size, self._round_to_tick(self.fair * params.ladder_gap_bps / 1e4, up=True))
        self._client_ids = 0

    @property
    def spec(self) -> SymbolSpec:
        """The symbol as it is now: a drill may change its status or filters (POST /sim/v1/symbol)."""
        return self.engine.specs[self.symbol]

    def _next_client_id(self) -> str:
        self._client_ids += 1
        return f"sim-{self.spec.symbol}-{self._client_ids}"

    def _round_to_tick(self, price: float, up: bool) -> int:
        tick = self.spec.tick_size
        ticks = math.ceil(price / tick) if up else math.floor(price / tick)
        return max(ticks, 1) * tick

    def _size(self, quote_value: float, price: int) -> int:
        step = self.spec.step_size
        qty = int(quote_value * SCALE * SCALE / price)
        return max(qty - qty % step, self.spec.min_qty)

    def ladder(self) -> tuple[list[int], list[int]]:
        """Target rung prices. Snapped to a grid so a small move of the fair
        price does not re-post the whole ladder."""
        p, gap = self.params, self.gap
        first_bid = self.fair * (1 - p.ladder_offset_bps / 1e4)
        first_ask = self.fair * (1 + p.ladder_offset_bps / 1e4)
        top_bid = math.floor(first_bid / gap) * gap
        top_ask = math.ceil(first_ask / gap) * gap
        bids = [top_bid - k * gap for k in range(p.ladder_levels) if top_bid - k * gap > 0]
        asks = [top_ask + k * gap for k in range(p.ladder_levels)]
        return bids, asks

    def step(self, dt: float) -> None:
        if not self.spec.trading:
            return  # a halted symbol's book stands still: nobody may trade or post on it
        sigma = self.params.volatility_bps_per_sqrt_s / 1e4
        self.fair *= math.exp(sigma * math.sqrt(dt) * self.rng.gauss(0.0, 1.0))
        self._refresh_ladder()
        arrivals = self._poisson(self.params.flow_rate_per_s * dt)
        for _ in range(arrivals):
            self._send_flow()

    def _poisson(self, mean: float) -> int:
        limit, k, product = math.exp(-mean), 0, self.rng.random()
        while product > limit:
            k += 1
            product *= self.rng.random()
        return k

    def _refresh_ladder(self) -> None:
        bids, asks = self.ladder()
        wanted = {("BUY", p) for p in bids} | {("SELL", p) for p in asks}
        have = set()
        for order in self.engine.orders_of(LIQUIDITY_ACCOUNT, self.spec.symbol):
            key = (order.side, order.price)
            if key in wanted and key not in have:
                have.add(key)
            else:
                self.engine.cancel(LIQUIDITY_ACCOUNT, self.spec.symbol, order.order_id, None, self._next_client_id())
        # Real liquidity never sits still: one rung is re-sized every step,
        # so the book (and its diff stream) changes every 100 ms.
        if have:
            side, price = self.rng.choice(sorted(have))
            for order in self.engine.orders_of(LIQUIDITY_ACCOUNT, self.spec.symbol):
                if (order.side, order.price) == (side, price):
                    self.engine.cancel(LIQUIDITY_ACCOUNT, self.spec.symbol, order.order_id, None,
                                       self._next_client_id())
                    have.discard((side, price))
                    break
        for side, price in sorted(wanted - have):
            qty = self._size(self.params.rung_notional * self.rng.uniform(0.5, 1.5), price)
            try:
                self.engine.place(LIQUIDITY_ACCOUNT, self.spec.symbol, side, "LIMIT", "GTC", price, qty, 0,
                                  self._next_client_id())
            except errors.VenueError:
                pass  # e.g. a rung priced off the filters at an extreme fair price: skip it this step

    def _send_flow(self) -> None:
        book = self.engine.books[self.spec.symbol]
        bid, _, ask, _ = book.top()
        if bid is None or ask is None:
            return
        mid = (bid + ask) / 2
        # Lean the flow toward the fair price so the book follows the walk.
        p_buy = min(0.9, max(0.1, 0.5 + (self.fair - mid) / max(mid * 5e-4, 1)))
        side = "BUY" if self.rng.random() < p_buy else "SELL"
        qty = self._size(self.rng.expovariate(1 / self.params.flow_notional), int(mid))
        try:
            self.engine.place(FLOW_ACCOUNT, self.spec.symbol, side, "MARKET", "", 0, qty, 0, self._next_client_id())
        except errors.VenueError:
            pass
