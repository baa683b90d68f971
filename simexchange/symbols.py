"""Tradable symbols: their status and their exchange filters (filters.py)."""
from dataclasses import dataclass

from .filters import Filters, default_wire
from .units import SCALE, parse_amount

KNOWN_QUOTES = ("USDT", "USDC", "FDUSD", "BTC", "ETH", "BNB")


# Symbol status (enums.md, "Symbol status"): what each lets an account do. Only TRADING takes new
# orders; the others refuse them with -2010 "Market is closed." (errors.md: "The symbol is not
# trading."). Cancels are allowed in all of them: CHANGELOG 2019-11-13 "Orders can be canceled via the
# API on symbols in the BREAK or HALT status", CANCEL_ONLY (2026-07-01) by its name; the docs say
# nothing of END_OF_DAY, and the sim lets its cancels through too (docs/sim-fidelity.md).
SYMBOL_STATUSES = ("TRADING", "END_OF_DAY", "HALT", "BREAK", "CANCEL_ONLY")
TRADING = "TRADING"


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    symbol: str
    base: str
    quote: str
    initial_price: int
    filters: Filters
    status: str = TRADING

    # The filters the matching engine reads most, by their old names.
    @property
    def tick_size(self) -> int:
        return self.filters.price.step if self.filters.price else 0

    @property
    def min_price(self) -> int:
        return self.filters.price.minimum if self.filters.price else 0

    @property
    def max_price(self) -> int:
        return self.filters.price.maximum if self.filters.price else 0

    @property
    def step_size(self) -> int:
        return self.filters.lot_size.step if self.filters.lot_size else 0

    @property
    def min_qty(self) -> int:
        return self.filters.lot_size.minimum if self.filters.lot_size else 0

    @property
    def max_qty(self) -> int:
        return self.filters.lot_size.maximum if self.filters.lot_size else 0

    @property
    def min_notional(self) -> int:
        return self.filters.notional.minimum if self.filters.notional else 0

    @property
    def max_notional(self) -> int:
        return self.filters.notional.maximum if self.filters.notional else 0

    @property
    def trading(self) -> bool:
        return self.status == TRADING

    def exchange_info(self) -> dict:
        # Every flag the real venue publishes (rest-api.md, "Exchange information", and the CHANGELOG's
        # otoAllowed 2024, amendAllowed 2025, pegInstructionsAllowed 2025, opoAllowed 2025-12-18), set to
        # what the sim does: a client that reads a flag learns the truth about the sim.
        return {
            "symbol": self.symbol,
            "status": self.status,
            "baseAsset": self.base,
            "baseAssetPrecision": 8,
            "quoteAsset": self.quote,
            "quotePrecision": 8,
            "quoteAssetPrecision": 8,
            "baseCommissionPrecision": 8,
            "quoteCommissionPrecision": 8,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
            "icebergAllowed": False,
            "ocoAllowed": True,  # POST /api/v3/orderList/oco (LIMIT_MAKER with STOP_LOSS or STOP_LOSS_LIMIT)
            "otoAllowed": False,
            "opoAllowed": False,
            "quoteOrderQtyMarketAllowed": True,
            "allowTrailingStop": False,
            "cancelReplaceAllowed": False,
            "amendAllowed": True,  # PUT /api/v3/order/amend/keepPriority
            "pegInstructionsAllowed": False,
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "filters": self.filters.exchange_info(),
            "permissions": [],
            "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["EXPIRE_MAKER"],
        }


# Reference prices and increments close to the real venue's, so a config
# written for Binance reads sensibly against the sim.
_PRESETS = {
    "BTCUSDT": ("60000", "0.01", "0.00001", "5"),
    "ETHUSDT": ("3000", "0.01", "0.0001", "5"),
    "BNBUSDT": ("600", "0.01", "0.001", "5"),
    "SOLUSDT": ("150", "0.01", "0.001", "5"),
    "ETHBTC": ("0.05", "0.00001", "0.0001", "0.0001"),
}


def make_spec(symbol: str) -> SymbolSpec:
    symbol = symbol.upper()
    quote = next((q for q in KNOWN_QUOTES if symbol.endswith(q) and len(symbol) > len(q)), None)
    if quote is None:
        raise ValueError(f"symbol {symbol!r} does not end in a known quote asset {KNOWN_QUOTES}")
    price, tick, step, min_notional = _PRESETS.get(symbol, ("100", "0.01", "0.001", "5"))
    wire = default_wire(tick=parse_amount(tick), step=parse_amount(step), min_notional=parse_amount(min_notional),
                        max_price=1_000_000 * SCALE, max_qty=9_000 * SCALE, market_max_qty=100 * SCALE,
                        max_notional=9_000_000 * SCALE)
    return SymbolSpec(symbol=symbol, base=symbol[: -len(quote)], quote=quote, initial_price=parse_amount(price),
                      filters=Filters.parse(wire))
