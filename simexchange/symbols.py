"""Tradable symbols and their exchange filters."""
from dataclasses import dataclass

from .units import SCALE, parse_amount

KNOWN_QUOTES = ("USDT", "USDC", "FDUSD", "BTC", "ETH", "BNB")


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    symbol: str
    base: str
    quote: str
    tick_size: int
    min_price: int
    max_price: int
    step_size: int
    min_qty: int
    max_qty: int
    min_notional: int
    max_notional: int
    initial_price: int

    def exchange_info(self) -> dict:
        from .units import format_amount as f

        return {
            "symbol": self.symbol,
            "status": "TRADING",
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
            "quoteOrderQtyMarketAllowed": True,
            "allowTrailingStop": False,
            "cancelReplaceAllowed": False,
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": f(self.min_price), "maxPrice": f(self.max_price),
                 "tickSize": f(self.tick_size)},
                {"filterType": "LOT_SIZE", "minQty": f(self.min_qty), "maxQty": f(self.max_qty),
                 "stepSize": f(self.step_size)},
                {"filterType": "NOTIONAL", "minNotional": f(self.min_notional), "applyMinToMarket": True,
                 "maxNotional": f(self.max_notional), "applyMaxToMarket": False, "avgPriceMins": 5},
            ],
            "permissions": [],
            "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["NONE", "EXPIRE_MAKER"],
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
    return SymbolSpec(
        symbol=symbol,
        base=symbol[: -len(quote)],
        quote=quote,
        tick_size=parse_amount(tick),
        min_price=parse_amount(tick),
        max_price=1_000_000 * SCALE,
        step_size=parse_amount(step),
        min_qty=parse_amount(step),
        max_qty=9_000 * SCALE,
        min_notional=parse_amount(min_notional),
        max_notional=9_000_000 * SCALE,
        initial_price=parse_amount(price),
    )
