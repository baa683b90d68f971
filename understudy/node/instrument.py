"""A symbol's trading rules, and prices and sizes rounded to them."""
import functools
import math
from dataclasses import dataclass

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

    @classmethod
    def from_exchange_info(cls, info: ExchangeInfo, symbol: str) -> "Instrument":
        for s in info.symbols:
            if s.symbol == symbol:
                f = {flt["filterType"]: flt for flt in s.filters}
                notional = f.get("NOTIONAL") or f.get("MIN_NOTIONAL") or {}
                return cls(symbol, s.baseAsset, s.quoteAsset, float(f["PRICE_FILTER"]["tickSize"]),
                           float(f["LOT_SIZE"]["stepSize"]), float(f["LOT_SIZE"]["minQty"]),
                           float(notional.get("minNotional", 0.0)))
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
