"""A symbol's trading rules, and prices and sizes rounded to them.

The tick, step and minimum notional the strategy rounds to come from the
venue's PRICE_FILTER, LOT_SIZE and NOTIONAL/MIN_NOTIONAL; every filter the
venue published, and the symbol's status, are kept in `rules` (filters.py),
which the order gate checks each order against before sending it.
"""
import functools
import math
from dataclasses import dataclass

from .filters import SymbolRules
from .messages import ExchangeInfo


@functools.lru_cache(maxsize=64)
def _decimals(step: float) -> int:
    text = f"{step:.8f}".rstrip("0")
    return len(text.split(".")[1]) if "." in text else 0


@dataclass(frozen=True, slots=True)
class Instrument:
    symbol: str
    base: str
    quote: str
    tick_size: float
    step_size: float
    min_qty: float
    min_notional: float
    rules: SymbolRules | None = None  # None only where a test builds an instrument by hand

    @classmethod
    def from_exchange_info(cls, info: ExchangeInfo, symbol: str) -> "Instrument":
        for s in info.symbols:
            if s.symbol == symbol:
                rules = SymbolRules.from_symbol_info(s, info.exchangeFilters)
                price, lot = rules.get("PRICE_FILTER"), rules.get("LOT_SIZE")
                if price is None or lot is None:
                    raise LookupError(f"{symbol}: the venue publishes no PRICE_FILTER or LOT_SIZE; "
                                      "orders cannot be rounded")
                notional = rules.get("NOTIONAL") or rules.get("MIN_NOTIONAL")
                return cls(symbol, s.baseAsset, s.quoteAsset, price.tickSize, lot.stepSize, lot.minQty,
                           notional.minNotional if notional is not None else 0.0, rules)
        raise LookupError(f"symbol {symbol} is not listed by the venue")

    def price_ticks(self, price: float, side: str) -> int:
        """Bids round down and asks up: rounding never moves a quote toward the market."""
        ticks = price / self.tick_size
        return math.floor(ticks + 1e-9) if side == "BUY" else math.ceil(ticks - 1e-9)

    def price_text(self, ticks: int) -> str:
        return f"{ticks * self.tick_size:.{_decimals(self.tick_size)}f}"

    def qty_steps(self, qty: float) -> int:
        return math.floor(qty / self.step_size + 1e-9)

    def qty_text(self, steps: int) -> str:
        return f"{steps * self.step_size:.{_decimals(self.step_size)}f}"
