"""Engine objects to Binance's JSON shapes (REST replies and stream events)."""
from .engine import Amendment, Execution, ListStatus, Order, Trade
from .orderlist import OrderList
from .units import format_amount as fmt

STP_MODE = "EXPIRE_MAKER"
STOP_TYPES = ("STOP_LOSS", "STOP_LOSS_LIMIT")


def _order_core(o: Order) -> dict:
    return {
        "symbol": o.symbol,
        "orderId": o.order_id,
        "orderListId": o.order_list_id,  # "Unless it's part of an order list, value will be -1"
        "clientOrderId": o.client_order_id,
    }


def _conditional(o: Order) -> dict:
    """rest-api.md, "Conditional fields in Order Responses": `stopPrice` "Appears for STOP_LOSS.
    TAKE_PROFIT, STOP_LOSS_LIMIT and TAKE_PROFIT_LIMIT orders"."""
    return {"stopPrice": fmt(o.stop_price)} if o.type in STOP_TYPES else {}


def _order_state(o: Order) -> dict:
    return {
        "price": fmt(o.price),
        "origQty": fmt(o.orig_qty),
        "executedQty": fmt(o.executed_qty),
        "cummulativeQuoteQty": fmt(o.cum_quote),
        "status": o.status,
        "timeInForce": o.time_in_force or "GTC",
        "type": o.type,
        "side": o.side,
    }


def order_ack(o: Order) -> dict:
    return {**_order_core(o), "transactTime": o.created_ms}


def order_result(o: Order) -> dict:
    # origQuoteOrderQty: in every RESULT/FULL reply since CHANGELOG 2024-12-09.
    out = {**order_ack(o), **_order_state(o), "origQuoteOrderQty": fmt(o.quote_order_qty), **_conditional(o),
           "selfTradePreventionMode": STP_MODE}
    if o.working_ms >= 0 or o.order_list_id != -1:  # an order list's reports show a pending stop's -1
        out["workingTime"] = o.working_ms
    return out


def order_full(o: Order, fills: list[Execution]) -> dict:
    return {**order_result(o), "fills": [
        {"price": fmt(f.last_price), "qty": fmt(f.last_qty), "commission": fmt(f.commission),
         "commissionAsset": f.commission_asset, "tradeId": f.trade_id}
        for f in fills
    ]}


def order_query(o: Order) -> dict:
    return {
        **_order_core(o), **_order_state(o),
        "stopPrice": fmt(o.stop_price), "icebergQty": fmt(0),
        "time": o.created_ms, "updateTime": o.updated_ms, "isWorking": o.working_ms >= 0,
        "workingTime": o.working_ms, "origQuoteOrderQty": fmt(o.quote_order_qty),
        "selfTradePreventionMode": STP_MODE,
    }


def order_cancelled(o: Order, cancel_client_order_id: str, now_ms: int) -> dict:
    state = _order_state(o)
    return {
        "symbol": o.symbol, "origClientOrderId": o.client_order_id, "orderId": o.order_id,
        "orderListId": o.order_list_id, "clientOrderId": cancel_client_order_id, "transactTime": now_ms,
        "price": state.pop("price"), "origQty": state.pop("origQty"), "executedQty": state.pop("executedQty"),
        "origQuoteOrderQty": fmt(o.quote_order_qty), **state, **_conditional(o),
        "selfTradePreventionMode": STP_MODE,
    }


def amended(a: Amendment) -> dict:
    """rest-api.md, "Order Amend Keep Priority": the reply for a single order (its spelling of
    `cumulativeQuoteQty` and `qty` differs from the other order replies, as documented)."""
    o = a.order
    amended_order = {
        "symbol": o.symbol, "orderId": o.order_id, "orderListId": o.order_list_id,
        "origClientOrderId": a.orig_client_order_id, "clientOrderId": o.client_order_id,
        "price": fmt(o.price), "qty": fmt(o.orig_qty), "executedQty": fmt(o.executed_qty),
        "preventedQty": fmt(0), "quoteOrderQty": fmt(o.quote_order_qty), "cumulativeQuoteQty": fmt(o.cum_quote),
        "status": o.status, "timeInForce": o.time_in_force or "GTC", "type": o.type, "side": o.side,
    }
    if o.working_ms >= 0:
        amended_order["workingTime"] = o.working_ms
    amended_order["selfTradePreventionMode"] = STP_MODE
    return {"transactTime": a.transact_ms, "executionId": a.execution_id, "amendedOrder": amended_order}


def _list_core(ol: OrderList) -> dict:
    return {
        "orderListId": ol.order_list_id, "contingencyType": ol.contingency_type,
        "listStatusType": ol.list_status_type, "listOrderStatus": ol.list_order_status,
        "listClientOrderId": ol.list_client_order_id, "transactionTime": ol.transaction_ms, "symbol": ol.symbol,
        "orders": [{"symbol": o.symbol, "orderId": o.order_id, "clientOrderId": o.client_order_id}
                   for o in ol.orders],
    }


def order_list(ol: OrderList, reports: list[dict] | None = None) -> dict:
    """An order list as the REST API shows it: with its legs' `orderReports` (placement, cancel), or
    without (GET /api/v3/openOrderList, GET /api/v3/orderList)."""
    out = _list_core(ol)
    if reports is not None:
        out["orderReports"] = reports
    return out


def list_status(x: ListStatus) -> dict:
    """user-data-stream.md: the `listStatus` event."""
    ol = x.order_list
    return {"e": "listStatus", "E": x.event_ms, "s": ol.symbol, "g": ol.order_list_id, "c": ol.contingency_type,
            "l": x.status_type, "L": x.order_status, "r": "NONE", "C": ol.list_client_order_id,
            "T": x.event_ms, "O": [{"s": o.symbol, "i": o.order_id, "c": o.client_order_id} for o in ol.orders]}


def execution_report(x: Execution) -> dict:
    o = x.order
    cancelled = x.exec_type == "CANCELED"
    amended = x.exec_type == "REPLACED"
    if cancelled:  # `c` is the cancel request's own id and `C` the order's
        client_id, orig_client_id = x.cancel_client_order_id, x.client_order_id
    elif amended:  # `c` is the order's id after the amendment and `C` the one before
        client_id, orig_client_id = x.client_order_id, x.cancel_client_order_id
    else:
        client_id, orig_client_id = x.client_order_id, ""
    return {
        "e": "executionReport", "E": x.event_ms, "s": o.symbol,
        "c": client_id,
        "S": o.side, "o": o.type, "f": o.time_in_force or "GTC",
        "q": fmt(x.orig_qty), "p": fmt(o.price), "P": fmt(o.stop_price), "F": fmt(0), "g": o.order_list_id,
        "C": orig_client_id,
        "x": x.exec_type, "X": x.status, "r": x.reject_reason, "i": o.order_id,
        "l": fmt(x.last_qty), "z": fmt(x.executed_qty), "L": fmt(x.last_price),
        "n": fmt(x.commission), "N": x.commission_asset, "T": x.event_ms, "t": x.trade_id,
        "v": -1, "I": 0, "w": x.working,
        "m": x.is_maker, "M": False, "O": o.created_ms, "Z": fmt(x.cum_quote),
        "Y": fmt(x.last_qty * x.last_price // 10**8), "Q": fmt(o.quote_order_qty),
        "W": o.working_ms, "V": STP_MODE,
    }


def account_position(rows: tuple, event_ms: int) -> dict:
    return {"e": "outboundAccountPosition", "E": event_ms, "u": event_ms,
            "B": [{"a": a, "f": fmt(free), "l": fmt(locked)} for a, free, locked in rows]}


def trade_event(t: Trade) -> dict:
    return {"e": "trade", "E": t.time_ms, "s": t.symbol, "t": t.trade_id, "p": fmt(t.price), "q": fmt(t.qty),
            "T": t.time_ms, "m": t.buyer_is_maker, "M": True}


def depth_update(symbol: str, event_ms: int, first: int, last: int, bids: dict, asks: dict) -> dict:
    return {"e": "depthUpdate", "E": event_ms, "s": symbol, "U": first, "u": last,
            "b": [[fmt(p), fmt(q)] for p, q in sorted(bids.items(), reverse=True)],
            "a": [[fmt(p), fmt(q)] for p, q in sorted(asks.items())]}


def book_ticker(symbol: str, update_id: int, top: tuple) -> dict:
    bid, bid_qty, ask, ask_qty = top
    return {"u": update_id, "s": symbol, "b": fmt(bid or 0), "B": fmt(bid_qty), "a": fmt(ask or 0),
            "A": fmt(ask_qty)}
