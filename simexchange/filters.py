"""Symbol filters, as Binance publishes them in exchangeInfo and enforces
them on order entry (filters.md; errors.md, "Filter failures": every refusal
is -1013 "Filter failure: <filterType>").

One source of truth: the filters in exchangeInfo's own wire form (a list of
dicts, strings for decimals as Binance sends them). `Filters.parse` turns that
list into integers of 1e-8 for the matching engine, and drills change a
filter by sending its wire form to POST /sim/v1/symbol, so what the sim
publishes and what it enforces cannot drift apart.

The defaults are the real BTCUSDT's (recorded exchangeInfo replies, and the
CHANGELOG for what changed since: MAX_NUM_ORDER_LISTS and
MAX_NUM_ORDER_AMENDS from 2025, ICEBERG_PARTS 100 from 2026-03-12).
MARKET_LOT_SIZE's maxQty moves with the venue's liquidity (recordings show
84 to 141 BTC); the sim fixes it at 100.
"""
import math
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from . import errors
from .units import format_amount, parse_amount

PPM = 1_000_000


@dataclass(frozen=True, slots=True)
class Range:
    """PRICE_FILTER, LOT_SIZE and MARKET_LOT_SIZE: a minimum, a maximum and a step; 0 turns a part off."""

    minimum: int
    maximum: int
    step: int

    def admits(self, value: int) -> bool:
        return not ((self.minimum and value < self.minimum) or (self.maximum and value > self.maximum)
                    or (self.step and value % self.step))  # documented: `quantity % stepSize == 0`


@dataclass(frozen=True, slots=True)
class PercentPriceBySide:
    bid_up_ppm: int
    bid_down_ppm: int
    ask_up_ppm: int
    ask_down_ppm: int
    avg_price_mins: int

    def admits(self, is_buy: bool, price: int, average: int) -> bool:
        up, down = (self.bid_up_ppm, self.bid_down_ppm) if is_buy else (self.ask_up_ppm, self.ask_down_ppm)
        return average * down <= price * PPM <= average * up


@dataclass(frozen=True, slots=True)
class Notional:
    minimum: int
    apply_min_to_market: bool
    maximum: int
    apply_max_to_market: bool
    avg_price_mins: int


@dataclass(frozen=True, slots=True)
class TrailingDelta:
    min_above: int
    max_above: int
    min_below: int
    max_below: int


@dataclass(frozen=True, slots=True)
class Filters:
    wire: tuple  # the exchangeInfo form, in the order published
    price: Range | None = None
    percent_price_by_side: PercentPriceBySide | None = None
    lot_size: Range | None = None
    market_lot_size: Range | None = None
    notional: Notional | None = None
    iceberg_parts: int | None = None
    trailing_delta: TrailingDelta | None = None
    max_num_orders: int | None = None
    max_num_algo_orders: int | None = None
    max_num_iceberg_orders: int | None = None
    max_num_order_lists: int | None = None
    max_num_order_amends: int | None = None
    max_position: int | None = None

    @classmethod
    def parse(cls, wire: list[dict]) -> "Filters":
        """Reads filters in exchangeInfo form; raises ValueError naming the bad field."""
        parsed: dict = {}
        seen = set()
        for entry in wire:
            if not isinstance(entry, dict) or not isinstance(entry.get("filterType"), str):
                raise ValueError("each filter must be an object with a filterType")
            kind = entry["filterType"]
            if kind in seen:
                raise ValueError(f"{kind}: listed twice")
            seen.add(kind)
            reader = _READERS.get(kind)
            if reader is None:
                raise ValueError(f"{kind}: not a filter the sim enforces; known: {', '.join(_READERS)}")
            fields = set(entry) - {"filterType"}
            if fields != set(_FIELDS[kind]):
                raise ValueError(f"{kind}: expected the fields {', '.join(_FIELDS[kind])}")
            attribute, value = reader(_Reader(kind, entry))
            parsed[attribute] = value
        return cls(wire=tuple(dict(e) for e in wire), **parsed)

    def merged(self, changes: list[dict]) -> "Filters":
        """These filters with each of `changes` (wire form, fields of one filterType) applied over the
        published one: a filter not published yet is added with the fields given, which must be all of them."""
        wire = [dict(e) for e in self.wire]
        for change in changes:
            if not isinstance(change, dict) or not isinstance(change.get("filterType"), str):
                raise ValueError("each filter change must be an object with a filterType")
            current = next((e for e in wire if e["filterType"] == change["filterType"]), None)
            if current is None:
                wire.append(dict(change))
            else:
                current.update(change)
        return Filters.parse(wire)

    def exchange_info(self) -> list[dict]:
        return [dict(e) for e in self.wire]


class _Reader:
    def __init__(self, kind: str, entry: dict):
        self.kind, self.entry = kind, entry

    def amount(self, name: str) -> int:
        value = self.entry[name]
        try:
            if not isinstance(value, str):
                raise ValueError
            amount = parse_amount(value)
        except ValueError:
            raise ValueError(f"{self.kind}.{name}: expected a decimal string of at most 8 decimals") from None
        if amount < 0:
            raise ValueError(f"{self.kind}.{name}: must not be negative")
        return amount

    def ratio_ppm(self, name: str) -> int:
        value = self.entry[name]
        try:
            ratio = Decimal(value) if isinstance(value, str) else None
        except InvalidOperation:
            ratio = None
        if ratio is None or not ratio.is_finite() or ratio < 0 or (ratio * PPM) % 1:
            raise ValueError(f"{self.kind}.{name}: expected a decimal string of at most 6 decimals")
        return int(ratio * PPM)

    def count(self, name: str) -> int:
        value = self.entry[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{self.kind}.{name}: expected a non-negative integer")
        return value

    def flag(self, name: str) -> bool:
        value = self.entry[name]
        if not isinstance(value, bool):
            raise ValueError(f"{self.kind}.{name}: expected true or false")
        return value


def _range(r: _Reader, lo: str, hi: str, step: str) -> Range:
    return Range(r.amount(lo), r.amount(hi), r.amount(step))


_FIELDS = {
    "PRICE_FILTER": ("minPrice", "maxPrice", "tickSize"),
    "LOT_SIZE": ("minQty", "maxQty", "stepSize"),
    "ICEBERG_PARTS": ("limit",),
    "MARKET_LOT_SIZE": ("minQty", "maxQty", "stepSize"),
    "TRAILING_DELTA": ("minTrailingAboveDelta", "maxTrailingAboveDelta", "minTrailingBelowDelta",
                       "maxTrailingBelowDelta"),
    "PERCENT_PRICE_BY_SIDE": ("bidMultiplierUp", "bidMultiplierDown", "askMultiplierUp", "askMultiplierDown",
                              "avgPriceMins"),
    "NOTIONAL": ("minNotional", "applyMinToMarket", "maxNotional", "applyMaxToMarket", "avgPriceMins"),
    "MAX_NUM_ORDERS": ("maxNumOrders",),
    "MAX_NUM_ORDER_LISTS": ("maxNumOrderLists",),
    "MAX_NUM_ALGO_ORDERS": ("maxNumAlgoOrders",),
    "MAX_NUM_ICEBERG_ORDERS": ("maxNumIcebergOrders",),
    "MAX_NUM_ORDER_AMENDS": ("maxNumOrderAmends",),
    "MAX_POSITION": ("maxPosition",),
}
_READERS = {
    "PRICE_FILTER": lambda r: ("price", _range(r, "minPrice", "maxPrice", "tickSize")),
    "LOT_SIZE": lambda r: ("lot_size", _range(r, "minQty", "maxQty", "stepSize")),
    "ICEBERG_PARTS": lambda r: ("iceberg_parts", r.count("limit")),
    "MARKET_LOT_SIZE": lambda r: ("market_lot_size", _range(r, "minQty", "maxQty", "stepSize")),
    "TRAILING_DELTA": lambda r: ("trailing_delta", TrailingDelta(
        r.count("minTrailingAboveDelta"), r.count("maxTrailingAboveDelta"),
        r.count("minTrailingBelowDelta"), r.count("maxTrailingBelowDelta"))),
    "PERCENT_PRICE_BY_SIDE": lambda r: ("percent_price_by_side", PercentPriceBySide(
        r.ratio_ppm("bidMultiplierUp"), r.ratio_ppm("bidMultiplierDown"),
        r.ratio_ppm("askMultiplierUp"), r.ratio_ppm("askMultiplierDown"), r.count("avgPriceMins"))),
    "NOTIONAL": lambda r: ("notional", Notional(
        r.amount("minNotional"), r.flag("applyMinToMarket"), r.amount("maxNotional"), r.flag("applyMaxToMarket"),
        r.count("avgPriceMins"))),
    "MAX_NUM_ORDERS": lambda r: ("max_num_orders", r.count("maxNumOrders")),
    "MAX_NUM_ORDER_LISTS": lambda r: ("max_num_order_lists", r.count("maxNumOrderLists")),
    "MAX_NUM_ALGO_ORDERS": lambda r: ("max_num_algo_orders", r.count("maxNumAlgoOrders")),
    "MAX_NUM_ICEBERG_ORDERS": lambda r: ("max_num_iceberg_orders", r.count("maxNumIcebergOrders")),
    "MAX_NUM_ORDER_AMENDS": lambda r: ("max_num_order_amends", r.count("maxNumOrderAmends")),
    "MAX_POSITION": lambda r: ("max_position", r.amount("maxPosition")),
}


def default_wire(tick: int, step: int, min_notional: int, max_price: int, max_qty: int,
                 market_max_qty: int, max_notional: int) -> list[dict]:
    """BTCUSDT's filters as the real venue lists them (recorded order), with one symbol's increments."""
    f = format_amount
    return [
        {"filterType": "PRICE_FILTER", "minPrice": f(tick), "maxPrice": f(max_price), "tickSize": f(tick)},
        {"filterType": "LOT_SIZE", "minQty": f(step), "maxQty": f(max_qty), "stepSize": f(step)},
        {"filterType": "ICEBERG_PARTS", "limit": 100},
        {"filterType": "MARKET_LOT_SIZE", "minQty": f(0), "maxQty": f(market_max_qty), "stepSize": f(0)},
        {"filterType": "TRAILING_DELTA", "minTrailingAboveDelta": 10, "maxTrailingAboveDelta": 2000,
         "minTrailingBelowDelta": 10, "maxTrailingBelowDelta": 2000},
        # The venue sends these multipliers unpadded, unlike every other decimal here.
        {"filterType": "PERCENT_PRICE_BY_SIDE", "bidMultiplierUp": "5", "bidMultiplierDown": "0.2",
         "askMultiplierUp": "5", "askMultiplierDown": "0.2", "avgPriceMins": 5},
        {"filterType": "NOTIONAL", "minNotional": f(min_notional), "applyMinToMarket": True,
         "maxNotional": f(max_notional), "applyMaxToMarket": False, "avgPriceMins": 5},
        {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
        {"filterType": "MAX_NUM_ORDER_LISTS", "maxNumOrderLists": 20},
        {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
        {"filterType": "MAX_NUM_ORDER_AMENDS", "maxNumOrderAmends": 10},
    ]


def trailing_delta_is_above(side: str, order_type: str) -> bool:
    """filters.md, TRAILING_DELTA: which pair of bounds a trailing stop's delta must meet."""
    return (side == "BUY") == order_type.startswith("STOP_LOSS")


def check_trailing_delta(filters: Filters, side: str, order_type: str, delta: int) -> None:
    bounds = filters.trailing_delta
    if bounds is None:
        return
    low, high = ((bounds.min_above, bounds.max_above) if trailing_delta_is_above(side, order_type)
                 else (bounds.min_below, bounds.max_below))
    if not low <= delta <= high:
        raise errors.filter_failure("TRAILING_DELTA")


def iceberg_parts(qty: int, iceberg_qty: int) -> int:
    """filters.md: "The number of ICEBERG_PARTS is defined as CEIL(qty / icebergQty)"."""
    return math.ceil(qty / iceberg_qty)

