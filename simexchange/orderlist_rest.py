"""Order lists over REST (rest-api.md, "Order lists" and "Query Open Order
lists"): POST /api/v3/orderList/oco, DELETE /api/v3/orderList,
GET /api/v3/orderList and GET /api/v3/openOrderList. The rules of the pair
live in orderlist.py, its life in the matching engine."""
from . import errors, render
from .engine import SIDES, TIME_IN_FORCE
from .filters import check_trailing_delta
from .orderlist import LEG_TYPES, LIMIT_MAKER, Leg
from .venue import Venue, wall_ms

# Parameters the venue does not support get the documented -2010 of a symbol without the feature
# (errors.md, "Messages for -1010 ERROR_MSG_RECEIVED, -2010 NEW_ORDER_REJECTED ...").
_UNSUPPORTED = {
    "IcebergQty": "Iceberg orders are not supported for this symbol.",
    "TrailingDelta": "Trailing stop orders are not supported for this symbol.",
    "PegPriceType": "Pegged orders are not supported for this symbol.",
}
_WITH_TIME_IN_FORCE = ("STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT")
_WITH_PRICE = (LIMIT_MAKER, "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT")
_WITH_STOP_PRICE = ("STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT")
DEFAULT_RESPONSE = "RESULT"  # the docs give no default for order lists; their example is RESULT


class OrderListApi:
    def __init__(self, venue: Venue, symbol_of):
        self.venue = venue
        self.engine = venue.engine
        self._symbol = symbol_of

    async def new_oco(self, call):
        symbol = self._symbol(call)
        side = call.need("side").upper()
        if side not in SIDES:
            raise errors.VenueError(-1117, "Invalid side.")
        call.need("quantity")
        qty = call.amount("quantity")
        list_client_order_id = call.client_id("listClientOrderId")
        above, below = self._leg(call, "above"), self._leg(call, "below")
        resp_type = (call.get("newOrderRespType") or DEFAULT_RESPONSE).upper()
        if resp_type not in ("ACK", "RESULT", "FULL"):
            raise errors.VenueError(-1177, "Invalid newOrderRespType.")
        order_list = self.engine.place_oco(call.account.api_key, symbol, side, qty, above, below,
                                           list_client_order_id, not_after_us=call.deadline_us)
        if resp_type == "ACK":
            reports = [render.order_ack(o) for o in order_list.orders]
        elif resp_type == "RESULT":
            reports = [render.order_result(o) for o in order_list.orders]
        else:  # neither leg can trade as the pair is placed: a LIMIT_MAKER never takes, the stop waits
            reports = [{**render.order_result(o), "fills": []} for o in order_list.orders]
        return render.order_list(order_list, reports)

    def _leg(self, call, prefix: str) -> Leg:
        """One leg's `above*`/`below*` parameters, each required or refused as the docs' table says."""
        leg_type = call.need(f"{prefix}Type").upper()
        if leg_type not in LEG_TYPES:
            raise errors.order_type_not_in_oco()
        delta = call.get(f"{prefix}TrailingDelta")
        if delta is not None and leg_type in _WITH_STOP_PRICE:
            # The sim has no trailing stops (allowTrailingStop false), but the TRAILING_DELTA filter is
            # enforced first, so a delta the venue would refuse is refused the venue's way.
            trailing = call.integer(f"{prefix}TrailingDelta")
            check_trailing_delta(self.engine.spec(self._symbol(call)).filters, (call.get("side") or "").upper(),
                                 leg_type, trailing)
        for suffix, msg in _UNSUPPORTED.items():
            if call.get(prefix + suffix) is not None:
                raise errors.rejected(msg)
        tif = (call.get(f"{prefix}TimeInForce") or "").upper()
        if leg_type in _WITH_TIME_IN_FORCE:
            call.need(f"{prefix}TimeInForce")
            if tif not in TIME_IN_FORCE:
                raise errors.VenueError(-1115, "Invalid timeInForce.")
        elif tif:
            raise errors.VenueError(-1106, f"Parameter '{prefix}TimeInForce' sent when not required.")
        if leg_type in _WITH_PRICE:
            call.need(f"{prefix}Price")
        elif call.get(f"{prefix}Price") is not None:
            raise errors.VenueError(-1106, f"Parameter '{prefix}Price' sent when not required.")
        if leg_type in _WITH_STOP_PRICE:
            if call.get(f"{prefix}StopPrice") is None:
                raise errors.VenueError(-1102, f"Param '{prefix}StopPrice' or '{prefix}TrailingDelta' must be sent, "
                                               "but both were empty/null!")
        elif call.get(f"{prefix}StopPrice") is not None:
            raise errors.VenueError(-1106, f"Parameter '{prefix}StopPrice' sent when not required.")
        return Leg(leg_type, call.amount(f"{prefix}Price"), call.amount(f"{prefix}StopPrice"), tif,
                   call.client_id(f"{prefix}ClientOrderId"))

    def _list_ref(self, call, client_id_param: str) -> tuple[int | None, str | None]:
        order_list_id, client_id = call.integer("orderListId"), call.get(client_id_param)
        if order_list_id is None and client_id is None:
            raise errors.VenueError(-1102, f"Param 'orderListId' or '{client_id_param}' must be sent, "
                                           "but both were empty/null!")
        return order_list_id, client_id

    async def cancel(self, call):
        """DELETE /api/v3/orderList: the whole list; the reply carries each leg's cancel report."""
        symbol = self._symbol(call)
        order_list_id, client_id = self._list_ref(call, "listClientOrderId")
        cancel_id = call.get("newClientOrderId") or self.venue.new_client_order_id()
        order_list = self.engine.cancel_order_list(call.account.api_key, symbol, order_list_id, client_id,
                                                   cancel_id, not_after_us=call.deadline_us)
        now = wall_ms()
        return render.order_list(order_list, [render.order_cancelled(o, cancel_id, now) for o in order_list.orders])

    async def query(self, call):
        """GET /api/v3/orderList (weight 4): by `orderListId` or `origClientOrderId` (the list's client id)."""
        order_list_id, client_id = self._list_ref(call, "origClientOrderId")
        return render.order_list(self.engine.find_order_list(call.account.api_key, order_list_id, client_id))

    async def open_lists(self, call):
        """GET /api/v3/openOrderList (weight 6): the account's order lists still executing."""
        return [render.order_list(ol) for ol in self.engine.open_order_lists(call.account.api_key)]

    # -- the audit log --------------------------------------------------------------
    @staticmethod
    def audit_request(action: str, p: dict, record: dict) -> None:
        """What an order-list request asked for; `client_order_id` is the list's own client id."""
        record["client_order_id"] = p.get("listClientOrderId")
        if action == "new_order_list":
            record.update(contingency_type="OCO", side=p.get("side"), qty=p.get("quantity"),
                          leg_client_order_ids=[p.get("aboveClientOrderId"), p.get("belowClientOrderId")],
                          legs=[{"type": p.get(f"{leg}Type"), "price": p.get(f"{leg}Price"),
                                 "stop_price": p.get(f"{leg}StopPrice")} for leg in ("above", "below")])
        else:
            record["order_list_id"] = p.get("orderListId")

    @staticmethod
    def audit_result(action: str, result: dict, record: dict) -> None:
        """What the venue did: the list's ids and its legs' ids (the legs' lives follow as order_done)."""
        record.update(client_order_id=result["listClientOrderId"], order_list_id=result["orderListId"],
                      leg_client_order_ids=[o["clientOrderId"] for o in result["orders"]],
                      leg_order_ids=[o["orderId"] for o in result["orders"]])
        if action == "cancel_order_list":
            record["cancelled"] = record["leg_client_order_ids"]
