"""Order lists: the OCO pair and the rules its legs must meet.

Source: Binance Spot API docs, rest-api.md "New Order list - OCO (TRADE)"
(`POST /api/v3/orderList/oco`):

* "An OCO has 2 orders called the above order and below order."
* "One of the orders must be a LIMIT_MAKER/TAKE_PROFIT/TAKE_PROFIT_LIMIT order
  and the other must be STOP_LOSS or STOP_LOSS_LIMIT order."
* "If the OCO is on the SELL side: LIMIT_MAKER/TAKE_PROFIT_LIMIT price > Last
  Traded Price > STOP_LOSS/STOP_LOSS_LIMIT stopPrice"; "If the OCO is on the
  BUY side: LIMIT_MAKER/TAKE_PROFIT_LIMIT price < Last Traded Price < stopPrice".

The venue supports LIMIT_MAKER with STOP_LOSS or STOP_LOSS_LIMIT, each for
real (the stop triggers on the last trade price). TAKE_PROFIT legs get the
documented -2010 "Take profit (limit) orders are not supported for this
symbol." The docs' table omits LIMIT_MAKER from `belowType`, but their own
BUY example (web-socket-api.md, `orderList.place.oco`) sends
`belowType=LIMIT_MAKER`, as the BUY price rule requires: it is accepted.
"""
from dataclasses import dataclass

from . import errors

LIMIT_MAKER = "LIMIT_MAKER"
STOP_TYPES = ("STOP_LOSS", "STOP_LOSS_LIMIT")
TAKE_PROFIT_TYPES = ("TAKE_PROFIT", "TAKE_PROFIT_LIMIT")
LEG_TYPES = (LIMIT_MAKER, *STOP_TYPES, *TAKE_PROFIT_TYPES)  # aboveType/belowType's documented values

EXEC_STARTED, ALL_DONE, EXECUTING = "EXEC_STARTED", "ALL_DONE", "EXECUTING"


@dataclass(frozen=True, slots=True)
class Leg:
    """One leg as requested (prices in 1e-8 units, 0 when not sent)."""

    type: str
    price: int = 0
    stop_price: int = 0
    time_in_force: str = ""
    client_order_id: str = ""


@dataclass(slots=True, eq=False)
class OrderList:
    order_list_id: int
    list_client_order_id: str
    account: str
    symbol: str
    orders: list  # the legs' Orders, the contingent (stop) leg first, as Binance lists them
    transaction_ms: int
    contingency_type: str = "OCO"
    list_status_type: str = EXEC_STARTED
    list_order_status: str = EXECUTING

    @property
    def is_open(self) -> bool:
        return self.list_order_status == EXECUTING


def oco_legs(side: str, above: Leg, below: Leg) -> tuple[Leg, Leg]:
    """(stop leg, limit leg) of a valid pair; raises the documented error otherwise."""
    for leg in (above, below):
        if leg.type not in LEG_TYPES:
            raise errors.order_type_not_in_oco()
    for leg in (above, below):
        if leg.type in TAKE_PROFIT_TYPES:
            raise errors.rejected(errors.TAKE_PROFIT_UNSUPPORTED if leg.type == "TAKE_PROFIT"
                                  else errors.TAKE_PROFIT_LIMIT_UNSUPPORTED)
    if above.type == LIMIT_MAKER and below.type == LIMIT_MAKER:
        raise errors.oco_needs_a_contingent_order()
    if above.type in STOP_TYPES and below.type in STOP_TYPES:
        # Neither leg is the LIMIT_MAKER: the one sitting on the wrong side says so.
        raise errors.sell_oco_stop_loss_must_be_below() if side == "SELL" else errors.buy_oco_stop_loss_must_be_above()
    if side == "SELL":
        if below.type == LIMIT_MAKER:
            raise errors.sell_oco_limit_must_be_above()
        return below, above
    if above.type == LIMIT_MAKER:
        raise errors.buy_oco_limit_must_be_below()
    return above, below


def check_prices(side: str, stop: Leg, limit: Leg, last_price: int) -> None:
    """SELL: limit price > last > stopPrice; BUY: limit price < last < stopPrice (-2010 OCO_BAD_PRICES)."""
    if side == "SELL":
        ok = limit.price > last_price > stop.stop_price
    else:
        ok = limit.price < last_price < stop.stop_price
    if not ok:
        raise errors.rejected(errors.OCO_BAD_PRICES)


def triggered(is_buy: bool, stop_price: int, last_price: int) -> bool:
    """A stop-loss works once the market reaches it: a sell at or below its stopPrice, a buy at or above
    (rest-api.md: "Price above market price: STOP_LOSS BUY"; "Price below market price: STOP_LOSS SELL")."""
    return last_price >= stop_price if is_buy else last_price <= stop_price
