"""Every trading rule Binance publishes for a symbol, and the check an
order must pass before it is sent. Sans-I/O.

The filters are Binance's own (filters.md): one struct per filter type,
decoded from `exchangeInfo` by its `filterType`, and `check()` applies each
one exactly as filters.md states it, so an order the venue would refuse
with -1013 "Filter failure: X" is refused here first, with the same filter
named, and never sent. The node itself only sends LIMIT_MAKER orders; the
checks cover every order type so that the rules are the venue's, not a
subset that happens to fit today's strategy.

Policies where the venue knows more than the node:
- PERCENT_PRICE / PERCENT_PRICE_BY_SIDE judge the price against Binance's
  reference price or its average over `avgPriceMins`. The caller passes its
  best estimate (`reference_price`: the venue's avgPrice when fetched
  recently, else the local book's mid); without one the order is refused.
- MAX_NUM_ORDERS, MAX_POSITION and the EXCHANGE_* counts are the account's:
  the caller passes what it knows (its own orders plus other clients' seen
  on the venue), a lower bound; the venue's refusal stays the backstop.
- A filter type the node does not know is kept (`unknown`), logged once and
  counted by the caller; it cannot be checked, so it does not block.
- Numbers are compared with a relative tolerance of 1e-9: the node's prices
  and quantities are built from whole ticks and steps, and a float that is
  one rounding away from a bound is on it, as its decimal text is.
"""
import math
from dataclasses import dataclass, field

import msgspec

from .messages import OrderSide, OrderType, SymbolInfo, SymbolStatus

TOLERANCE = 1e-9


class _Filter(msgspec.Struct, frozen=True, kw_only=True, tag_field="filterType"):
    pass


class PriceFilter(_Filter, tag="PRICE_FILTER"):
    minPrice: float  # 0 disables the rule
    maxPrice: float  # 0 disables the rule
    tickSize: float  # 0 disables the rule


class PercentPrice(_Filter, tag="PERCENT_PRICE"):
    multiplierUp: float
    multiplierDown: float
    avgPriceMins: int = 5


class PercentPriceBySide(_Filter, tag="PERCENT_PRICE_BY_SIDE"):
    bidMultiplierUp: float
    bidMultiplierDown: float
    askMultiplierUp: float
    askMultiplierDown: float
    avgPriceMins: int = 5


class LotSize(_Filter, tag="LOT_SIZE"):
    minQty: float
    maxQty: float
    stepSize: float


class MinNotional(_Filter, tag="MIN_NOTIONAL"):
    minNotional: float
    applyToMarket: bool = True
    avgPriceMins: int = 5


class Notional(_Filter, tag="NOTIONAL"):
    minNotional: float
    applyMinToMarket: bool = True
    maxNotional: float = 0.0  # absent: no maximum
    applyMaxToMarket: bool = False
    avgPriceMins: int = 5


class IcebergParts(_Filter, tag="ICEBERG_PARTS"):
    limit: int


class MarketLotSize(_Filter, tag="MARKET_LOT_SIZE"):
    minQty: float
    maxQty: float
    stepSize: float


class MaxNumOrders(_Filter, tag="MAX_NUM_ORDERS"):
    maxNumOrders: int


class MaxNumAlgoOrders(_Filter, tag="MAX_NUM_ALGO_ORDERS"):
    maxNumAlgoOrders: int


class MaxNumIcebergOrders(_Filter, tag="MAX_NUM_ICEBERG_ORDERS"):
    maxNumIcebergOrders: int


class MaxPosition(_Filter, tag="MAX_POSITION"):
    maxPosition: float


class TrailingDelta(_Filter, tag="TRAILING_DELTA"):
    minTrailingAboveDelta: int
    maxTrailingAboveDelta: int
    minTrailingBelowDelta: int
    maxTrailingBelowDelta: int


class MaxNumOrderAmends(_Filter, tag="MAX_NUM_ORDER_AMENDS"):
    maxNumOrderAmends: int


class MaxNumOrderLists(_Filter, tag="MAX_NUM_ORDER_LISTS"):
    maxNumOrderLists: int


class ExchangeMaxNumOrders(_Filter, tag="EXCHANGE_MAX_NUM_ORDERS"):
    maxNumOrders: int


class ExchangeMaxNumAlgoOrders(_Filter, tag="EXCHANGE_MAX_NUM_ALGO_ORDERS"):
    maxNumAlgoOrders: int


class ExchangeMaxNumIcebergOrders(_Filter, tag="EXCHANGE_MAX_NUM_ICEBERG_ORDERS"):
    maxNumIcebergOrders: int


class ExchangeMaxNumOrderLists(_Filter, tag="EXCHANGE_MAX_NUM_ORDER_LISTS"):
    maxNumOrderLists: int


SymbolFilter = (PriceFilter | PercentPrice | PercentPriceBySide | LotSize | MinNotional | Notional | IcebergParts
                | MarketLotSize | MaxNumOrders | MaxNumAlgoOrders | MaxNumIcebergOrders | MaxPosition
                | TrailingDelta | MaxNumOrderAmends | MaxNumOrderLists)
ExchangeFilter = (ExchangeMaxNumOrders | ExchangeMaxNumAlgoOrders | ExchangeMaxNumIcebergOrders
                  | ExchangeMaxNumOrderLists)
SYMBOL_FILTER_TYPES = tuple(t.__struct_config__.tag for t in SymbolFilter.__args__)
EXCHANGE_FILTER_TYPES = tuple(t.__struct_config__.tag for t in ExchangeFilter.__args__)
_symbol_filter = msgspec.json.Decoder(SymbolFilter, strict=False)
_exchange_filter = msgspec.json.Decoder(ExchangeFilter, strict=False)
_filter_type = msgspec.json.Decoder(dict, strict=False)

ALGO_TYPES = frozenset({OrderType.STOP_LOSS, OrderType.STOP_LOSS_LIMIT, OrderType.TAKE_PROFIT,
                        OrderType.TAKE_PROFIT_LIMIT})
_PRICED_TYPES = frozenset({OrderType.LIMIT, OrderType.LIMIT_MAKER, OrderType.STOP_LOSS_LIMIT,
                           OrderType.TAKE_PROFIT_LIMIT})
# filters.md, TRAILING_DELTA: which bounds apply to which stop.
_TRAILING_ABOVE = frozenset({(OrderType.STOP_LOSS, OrderSide.BUY), (OrderType.STOP_LOSS_LIMIT, OrderSide.BUY),
                             (OrderType.TAKE_PROFIT, OrderSide.SELL), (OrderType.TAKE_PROFIT_LIMIT, OrderSide.SELL)})
# Only these statuses accept new orders (enums.md: the others are halts, breaks, cancel-only or closed).
ACCEPTS_NEW_ORDERS = frozenset({SymbolStatus.TRADING})


@dataclass(frozen=True, slots=True)
class UnknownFilter:
    filter_type: str
    raw: bytes


def decode_filters(raws, exchange: bool = False) -> tuple[list, list[UnknownFilter]]:
    """(known filters, unknown filter types). A filter of a known type that does
    not decode is a malformed reply and raises msgspec.DecodeError/ValidationError."""
    known, unknown = [], []
    decoder, types = (_exchange_filter, EXCHANGE_FILTER_TYPES) if exchange else (_symbol_filter, SYMBOL_FILTER_TYPES)
    for raw in raws:
        kind = _filter_type.decode(raw).get("filterType")
        if kind not in types:
            unknown.append(UnknownFilter(str(kind), bytes(raw)))
            continue
        known.append(decoder.decode(raw))
    return known, unknown


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """What an order would be, in the venue's terms."""

    side: OrderSide
    type: OrderType
    qty: float
    price: float | None = None  # LIMIT, LIMIT_MAKER, STOP_LOSS_LIMIT, TAKE_PROFIT_LIMIT
    stop_price: float | None = None
    iceberg_qty: float | None = None
    trailing_delta: int | None = None
    in_order_list: bool = False


@dataclass(frozen=True, slots=True)
class AccountContext:
    """What the account holds at the venue, as well as the node knows it."""

    open_orders: int = 0  # on this symbol, every client's
    open_algo_orders: int = 0
    open_iceberg_orders: int = 0
    open_order_lists: int = 0
    open_orders_exchange: int = 0  # on every symbol (the node sees its own symbol only: a lower bound)
    base_held: float = 0.0  # free + locked base asset
    open_buy_qty: float = 0.0  # the unfilled quantity of every open BUY order on the symbol
    reference_price: float | None = None  # the venue's average price, or the best estimate of it


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why the venue would refuse an order, before it is sent."""

    filter: str  # the filter type, as in the venue's "Filter failure: X"; or a symbol-level rule
    detail: str

    @property
    def reason(self) -> str:
        """The counted reason: `filter-<TYPE>` (one label value per filter type)."""
        return f"filter-{self.filter}"


def _le(a: float, b: float) -> bool:
    return a <= b + TOLERANCE * max(1.0, abs(b))


def _multiple(value: float, step: float) -> bool:
    """value % step == 0, for floats built from whole steps (a ratio up to ~1e9 is off by < 1e-6)."""
    ratio = value / step
    return abs(ratio - round(ratio)) <= 1e-6


@dataclass(frozen=True)
class SymbolRules:
    """One symbol's status, permissions and filters, as `exchangeInfo` published them."""

    symbol: str
    status: SymbolStatus
    base: str
    quote: str
    order_types: frozenset = frozenset()
    spot_allowed: bool = True
    iceberg_allowed: bool = False
    trailing_allowed: bool = False
    filters: dict = field(default_factory=dict)  # filter type -> its struct
    exchange_filters: dict = field(default_factory=dict)
    unknown: tuple = ()  # UnknownFilter, symbol and exchange filters alike

    @classmethod
    def from_symbol_info(cls, info: SymbolInfo, exchange_filters=()) -> "SymbolRules":
        known, unknown = decode_filters(info.filters)
        ex_known, ex_unknown = decode_filters(exchange_filters, exchange=True)
        return cls(info.symbol, info.status, info.baseAsset, info.quoteAsset, frozenset(info.orderTypes),
                   info.isSpotTradingAllowed, info.icebergAllowed, info.allowTrailingStop,
                   {type(f).__struct_config__.tag: f for f in known},
                   {type(f).__struct_config__.tag: f for f in ex_known}, tuple(unknown + ex_unknown))

    def get(self, filter_type: str):
        return self.filters.get(filter_type)

    @property
    def accepts_new_orders(self) -> bool:
        return self.status in ACCEPTS_NEW_ORDERS

    def check(self, intent: OrderIntent, account: AccountContext = AccountContext()) -> Refusal | None:
        """None when the venue's published rules let the order through; otherwise the first rule it breaks."""
        return _check(self, intent, account)

    def check_amend(self, amends_done: int) -> Refusal | None:
        """MAX_NUM_ORDER_AMENDS: one more amendment of an order amended `amends_done` times already."""
        f = self.filters.get("MAX_NUM_ORDER_AMENDS")
        if f is not None and amends_done + 1 > f.maxNumOrderAmends:
            return Refusal("MAX_NUM_ORDER_AMENDS", f"order already amended {amends_done} times; at most "
                                                   f"{f.maxNumOrderAmends}")
        return None


def _check(rules: SymbolRules, o: OrderIntent, acct: AccountContext) -> Refusal | None:
    if not o.type.known or o.type not in rules.order_types and rules.order_types:
        return Refusal("ORDER_TYPE", f"{o.type.value} orders are not allowed on {rules.symbol}")
    if not rules.spot_allowed:
        return Refusal("SPOT_TRADING", f"spot trading is not allowed on {rules.symbol}")
    if o.iceberg_qty and not rules.iceberg_allowed:
        return Refusal("ICEBERG", f"iceberg orders are not allowed on {rules.symbol}")
    if o.trailing_delta is not None and not rules.trailing_allowed:
        return Refusal("TRAILING_STOP", f"trailing stops are not allowed on {rules.symbol}")
    f = rules.filters
    is_market = o.type is OrderType.MARKET
    price = o.price if o.type in _PRICED_TYPES else None

    pf = f.get("PRICE_FILTER")
    if pf is not None:
        for name, value in (("price", price), ("stopPrice", o.stop_price)):
            if value is None:
                continue
            if pf.minPrice and not _le(pf.minPrice, value):
                return Refusal("PRICE_FILTER", f"{name} {value} is under minPrice {pf.minPrice}")
            if pf.maxPrice and not _le(value, pf.maxPrice):
                return Refusal("PRICE_FILTER", f"{name} {value} is over maxPrice {pf.maxPrice}")
            if pf.tickSize and not _multiple(value, pf.tickSize):
                return Refusal("PRICE_FILTER", f"{name} {value} is not a multiple of tickSize {pf.tickSize}")

    for kind in ("PERCENT_PRICE", "PERCENT_PRICE_BY_SIDE"):
        pp = f.get(kind)
        if pp is None or price is None:
            continue
        ref = acct.reference_price
        if ref is None or ref <= 0:
            return Refusal(kind, "no reference price to judge the order's price against")
        if kind == "PERCENT_PRICE":
            up, down = pp.multiplierUp, pp.multiplierDown
        elif o.side is OrderSide.BUY:
            up, down = pp.bidMultiplierUp, pp.bidMultiplierDown
        else:
            up, down = pp.askMultiplierUp, pp.askMultiplierDown
        if not _le(price, ref * up):
            return Refusal(kind, f"price {price} is over {up} x the average price {ref}")
        if not _le(ref * down, price):
            return Refusal(kind, f"price {price} is under {down} x the average price {ref}")

    lot = f.get("LOT_SIZE")
    if lot is not None:
        for name, value in (("quantity", o.qty), ("icebergQty", o.iceberg_qty)):
            if value is None or (name == "quantity" and is_market and o.qty <= 0):
                continue
            if not _le(lot.minQty, value):
                return Refusal("LOT_SIZE", f"{name} {value} is under minQty {lot.minQty}")
            if lot.maxQty and not _le(value, lot.maxQty):
                return Refusal("LOT_SIZE", f"{name} {value} is over maxQty {lot.maxQty}")
            if lot.stepSize and not _multiple(value, lot.stepSize):
                return Refusal("LOT_SIZE", f"{name} {value} is not a multiple of stepSize {lot.stepSize}")

    mls = f.get("MARKET_LOT_SIZE")
    if mls is not None and is_market:
        if mls.minQty and not _le(mls.minQty, o.qty):
            return Refusal("MARKET_LOT_SIZE", f"quantity {o.qty} is under minQty {mls.minQty}")
        if mls.maxQty and not _le(o.qty, mls.maxQty):
            return Refusal("MARKET_LOT_SIZE", f"quantity {o.qty} is over maxQty {mls.maxQty}")
        if mls.stepSize and not _multiple(o.qty, mls.stepSize):
            return Refusal("MARKET_LOT_SIZE", f"quantity {o.qty} is not a multiple of stepSize {mls.stepSize}")

    # Notional: price x quantity, a MARKET order's at the average price.
    notional_price = acct.reference_price if is_market else price
    mn = f.get("MIN_NOTIONAL")
    if mn is not None and (not is_market or mn.applyToMarket) and (price is not None or is_market):
        if notional_price is None:
            return Refusal("MIN_NOTIONAL", "no average price to value the market order at")
        if not _le(mn.minNotional, notional_price * o.qty):
            return Refusal("MIN_NOTIONAL", f"notional {notional_price * o.qty:.8f} is under minNotional "
                                           f"{mn.minNotional}")
    nf = f.get("NOTIONAL")
    if nf is not None and (price is not None or is_market):
        check_min = not is_market or nf.applyMinToMarket
        check_max = bool(nf.maxNotional) and (not is_market or nf.applyMaxToMarket)
        if (check_min or check_max) and notional_price is None:
            return Refusal("NOTIONAL", "no average price to value the market order at")
        value = (notional_price or 0.0) * o.qty
        if check_min and not _le(nf.minNotional, value):
            return Refusal("NOTIONAL", f"notional {value:.8f} is under minNotional {nf.minNotional}")
        if check_max and not _le(value, nf.maxNotional):
            return Refusal("NOTIONAL", f"notional {value:.8f} is over maxNotional {nf.maxNotional}")

    ip = f.get("ICEBERG_PARTS")
    if ip is not None and o.iceberg_qty:
        parts = math.ceil(o.qty / o.iceberg_qty - TOLERANCE)
        if parts > ip.limit:
            return Refusal("ICEBERG_PARTS", f"{parts} parts (quantity / icebergQty) exceed the limit {ip.limit}")

    td = f.get("TRAILING_DELTA")
    if td is not None and o.trailing_delta is not None:
        if (o.type, o.side) in _TRAILING_ABOVE:
            low, high = td.minTrailingAboveDelta, td.maxTrailingAboveDelta
        else:
            low, high = td.minTrailingBelowDelta, td.maxTrailingBelowDelta
        if not low <= o.trailing_delta <= high:
            return Refusal("TRAILING_DELTA", f"trailingDelta {o.trailing_delta} is outside [{low}, {high}]")

    # Counts of what the account has open. Every order counts toward MAX_NUM_ORDERS;
    # an order list's legs do too (the list also counts toward MAX_NUM_ORDER_LISTS).
    mo = f.get("MAX_NUM_ORDERS")
    if mo is not None and acct.open_orders + 1 > mo.maxNumOrders:
        return Refusal("MAX_NUM_ORDERS", f"{acct.open_orders} orders open on {rules.symbol}; at most "
                                         f"{mo.maxNumOrders}")
    algo = o.type in ALGO_TYPES
    ma = f.get("MAX_NUM_ALGO_ORDERS")
    if ma is not None and algo and acct.open_algo_orders + 1 > ma.maxNumAlgoOrders:
        return Refusal("MAX_NUM_ALGO_ORDERS", f"{acct.open_algo_orders} algo orders open; at most "
                                              f"{ma.maxNumAlgoOrders}")
    mi = f.get("MAX_NUM_ICEBERG_ORDERS")
    if mi is not None and o.iceberg_qty and acct.open_iceberg_orders + 1 > mi.maxNumIcebergOrders:
        return Refusal("MAX_NUM_ICEBERG_ORDERS", f"{acct.open_iceberg_orders} iceberg orders open; at most "
                                                 f"{mi.maxNumIcebergOrders}")
    ml = f.get("MAX_NUM_ORDER_LISTS")
    if ml is not None and o.in_order_list and acct.open_order_lists + 1 > ml.maxNumOrderLists:
        return Refusal("MAX_NUM_ORDER_LISTS", f"{acct.open_order_lists} order lists open; at most "
                                              f"{ml.maxNumOrderLists}")
    mp = f.get("MAX_POSITION")
    if mp is not None and o.side is OrderSide.BUY:
        position = acct.base_held + acct.open_buy_qty + o.qty
        if not _le(position, mp.maxPosition):
            return Refusal("MAX_POSITION", f"position {position:.8f} (base held, open buys and this order) "
                                           f"would exceed maxPosition {mp.maxPosition}")

    ex = rules.exchange_filters
    emo = ex.get("EXCHANGE_MAX_NUM_ORDERS")
    if emo is not None and max(acct.open_orders_exchange, acct.open_orders) + 1 > emo.maxNumOrders:
        return Refusal("EXCHANGE_MAX_NUM_ORDERS", f"at most {emo.maxNumOrders} orders open on the exchange")
    ema = ex.get("EXCHANGE_MAX_NUM_ALGO_ORDERS")
    if ema is not None and algo and acct.open_algo_orders + 1 > ema.maxNumAlgoOrders:
        return Refusal("EXCHANGE_MAX_NUM_ALGO_ORDERS", f"at most {ema.maxNumAlgoOrders} algo orders on the exchange")
    emi = ex.get("EXCHANGE_MAX_NUM_ICEBERG_ORDERS")
    if emi is not None and o.iceberg_qty and acct.open_iceberg_orders + 1 > emi.maxNumIcebergOrders:
        return Refusal("EXCHANGE_MAX_NUM_ICEBERG_ORDERS", f"at most {emi.maxNumIcebergOrders} iceberg orders "
                                                          "on the exchange")
    eml = ex.get("EXCHANGE_MAX_NUM_ORDER_LISTS")
    if eml is not None and o.in_order_list and acct.open_order_lists + 1 > eml.maxNumOrderLists:
        return Refusal("EXCHANGE_MAX_NUM_ORDER_LISTS", f"at most {eml.maxNumOrderLists} order lists on the exchange")
    return None


def symbol_refusal(status: SymbolStatus) -> str | None:
    """The counted reason an order is refused for the symbol's state, or None when it trades.
    A status the node does not know is not TRADING: `symbol-UNKNOWN`."""
    if status is SymbolStatus.TRADING:
        return None
    return f"symbol-{status.name}"
