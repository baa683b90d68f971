"""Order lists (OCO) over real HTTP and the user data stream, judged against
Binance's own documented payloads (tests/fixtures/binance): placement, the
legs in openOrders, one leg working cancels the other, stops triggering on
the last trade, cancels, the mixed reply of DELETE /api/v3/openOrders and
the audit log."""
import json
from pathlib import Path

import aiohttp
import pytest

from tests.simproc import RestClient
from tests.test_sim_orders import UserStream

FIXTURES = Path(__file__).parent / "fixtures" / "binance"
# Conditional fields the documented examples show and the sim has no cause to send
# (rest-api.md, "Conditional fields in Order Responses": `icebergQty` "Appears only if the
# parameter icebergQty was sent in the request").
NOT_SENT = {"icebergQty"}


def fixture(name: str):
    return json.loads((FIXTURES / name).read_text())


def shape(value):
    """Keys and JSON types, recursively; a list's shape is its elements'."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return type(value).__name__


def assert_shape(ours, documented, where: str = "$") -> None:
    """`ours` has `documented`'s keys (less NOT_SENT) with the same JSON types; an order report is
    compared with the documented report of its own order type."""
    if isinstance(documented, dict):
        assert isinstance(ours, dict), where
        assert set(ours) == set(documented) - NOT_SENT, (where, sorted(set(ours) ^ (set(documented) - NOT_SENT)))
        for key in ours:
            assert_shape(ours[key], documented[key], f"{where}.{key}")
    elif isinstance(documented, list):
        assert isinstance(ours, list) and documented, where
        for i, item in enumerate(ours):
            same_type = [d for d in documented if isinstance(d, dict) and isinstance(item, dict)
                         and d.get("type") == item.get("type") and "type" in d]
            assert_shape(item, (same_type or documented)[0], f"{where}[{i}]")
    else:
        assert type(ours) is type(documented), (where, ours, documented)


THREE = (("oco-a", "secret-a"), ("oco-b", "secret-b"), ("oco-c", "secret-c"))


@pytest.fixture
def sim(start_sim):
    return start_sim("--no-market", accounts=THREE)  # a quiet book: the last price is the symbol's 60000


@pytest.fixture
async def clients(sim):
    async with aiohttp.ClientSession() as session:
        yield [RestClient(session, sim.base_url, key, secret) for key, secret in THREE]


def sell_oco(tag: str, **changes) -> dict:
    """SELL: LIMIT_MAKER above the market (61000), STOP_LOSS_LIMIT below it (stop 59000, limit 58900)."""
    return {"symbol": "BTCUSDT", "side": "SELL", "quantity": "0.01", "listClientOrderId": f"{tag}-list",
            "aboveType": "LIMIT_MAKER", "abovePrice": "61000", "aboveClientOrderId": f"{tag}-above",
            "belowType": "STOP_LOSS_LIMIT", "belowStopPrice": "59000", "belowPrice": "58900",
            "belowTimeInForce": "GTC", "belowClientOrderId": f"{tag}-below", **changes}


def limit(side: str, price: str, qty: str, tif: str = "GTC", **extra) -> dict:
    return {"symbol": "BTCUSDT", "side": side, "type": "LIMIT", "timeInForce": tif, "quantity": qty,
            "price": price, **extra}


def balances(account: dict) -> dict:
    return {b["asset"]: (b["free"], b["locked"]) for b in account["balances"]}


def is_report(cid: str, exec_type: str, status: str):
    return lambda e: e["e"] == "executionReport" and e["c"] == cid and e["x"] == exec_type and e["X"] == status


def is_list_status(status: str):
    return lambda e: e["e"] == "listStatus" and e["L"] == status


async def test_oco_rests_both_legs_and_a_fill_of_one_expires_the_other(sim, clients):
    a, b, _ = clients
    stream = await UserStream.open(sim, *THREE[0])
    try:
        placed = await a.ok("POST", "/api/v3/orderList/oco", sell_oco("t1"), signed=True)
        assert_shape(placed, fixture("new_order_list_oco.json"))
        list_id = placed["orderListId"]
        assert (placed["contingencyType"], placed["listStatusType"], placed["listOrderStatus"],
                placed["listClientOrderId"]) == ("OCO", "EXEC_STARTED", "EXECUTING", "t1-list")
        # The venue lists the contingent leg first, as in every documented example.
        assert [o["clientOrderId"] for o in placed["orders"]] == ["t1-below", "t1-above"]
        stop, maker = placed["orderReports"]
        assert (stop["type"], stop["stopPrice"], stop["price"], stop["workingTime"]) == (
            "STOP_LOSS_LIMIT", "59000.00000000", "58900.00000000", -1)
        assert (maker["type"], maker["status"], maker["orderListId"]) == ("LIMIT_MAKER", "NEW", list_id)
        assert maker["workingTime"] > 0

        open_orders = await a.ok("GET", "/api/v3/openOrders", {"symbol": "BTCUSDT"}, signed=True)
        assert {o["clientOrderId"]: o["orderListId"] for o in open_orders} == {"t1-below": list_id,
                                                                              "t1-above": list_id}
        by_id = {o["clientOrderId"]: o for o in open_orders}
        assert (by_id["t1-below"]["isWorking"], by_id["t1-below"]["stopPrice"]) == (False, "59000.00000000")
        assert by_id["t1-above"]["isWorking"] is True
        lists = await a.ok("GET", "/api/v3/openOrderList", {}, signed=True)
        assert_shape(lists, fixture("open_order_list.json"))
        assert [ol["orderListId"] for ol in lists] == [list_id]
        assert balances(await a.ok("GET", "/api/v3/account", {}, signed=True))["BTC"] == ("9.99000000", "0.01000000")

        new_below = await stream.until(is_report("t1-below", "NEW", "NEW"))
        new_above = await stream.until(is_report("t1-above", "NEW", "NEW"))
        assert (new_below["g"], new_below["o"], new_below["P"], new_below["w"]) == (
            list_id, "STOP_LOSS_LIMIT", "59000.00000000", False)
        assert (new_above["g"], new_above["w"]) == (list_id, True)
        for event in (new_below, new_above):  # a NEW report: no trade yet, so `N` is null as documented
            assert_shape({"subscriptionId": stream.subscription_id, "event": event},
                         fixture("execution_report_event.json"))
        started = await stream.until(is_list_status("EXECUTING"))
        assert_shape({"subscriptionId": stream.subscription_id, "event": started}, fixture("list_status_event.json"))
        assert (started["g"], started["c"], started["l"], started["C"]) == (list_id, "OCO", "EXEC_STARTED", "t1-list")
        assert [o["c"] for o in started["O"]] == ["t1-below", "t1-above"]

        # Another account takes part of the LIMIT_MAKER: the stop leg expires, the list is done.
        taken = await b.ok("POST", "/api/v3/order", limit("BUY", "61000", "0.004", "IOC"), signed=True)
        assert (taken["status"], taken["executedQty"]) == ("FILLED", "0.00400000")
        await stream.until(is_report("t1-above", "TRADE", "PARTIALLY_FILLED"))
        expired = await stream.until(is_report("t1-below", "EXPIRED", "EXPIRED"))
        assert expired["g"] == list_id
        done = await stream.until(is_list_status("ALL_DONE"))
        assert (done["l"], done["g"]) == ("ALL_DONE", list_id)

        assert await a.ok("GET", "/api/v3/openOrderList", {}, signed=True) == []
        queried = await a.ok("GET", "/api/v3/orderList", {"orderListId": list_id}, signed=True)
        assert (queried["listStatusType"], queried["listOrderStatus"]) == ("ALL_DONE", "ALL_DONE")
        rest_of_it = await a.ok("GET", "/api/v3/openOrders", {"symbol": "BTCUSDT"}, signed=True)
        assert [(o["clientOrderId"], o["orderListId"], o["executedQty"]) for o in rest_of_it] == [
            ("t1-above", list_id, "0.00400000")]
        assert balances(await a.ok("GET", "/api/v3/account", {}, signed=True))["BTC"] == ("9.99000000", "0.00600000")
    finally:
        await stream.ws.close()


async def test_a_stop_limit_leg_triggers_on_the_last_trade_and_expires_the_limit_maker(sim, clients):
    a, b, c = clients
    stream = await UserStream.open(sim, *THREE[0])
    try:
        placed = await a.ok("POST", "/api/v3/orderList/oco", sell_oco("t2"), signed=True)
        await c.ok("POST", "/api/v3/order", limit("BUY", "58950", "0.02"), signed=True)
        # A trade at 58950 (B sells into C's bid) reaches the 59000 stop.
        await b.ok("POST", "/api/v3/order", {"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET",
                                             "quantity": "0.01"}, signed=True)
        filled = await stream.until(is_report("t2-below", "TRADE", "FILLED"))
        assert (filled["L"], filled["l"], filled["g"]) == ("58950.00000000", "0.01000000", placed["orderListId"])
        seen = stream.events
        expired = next(e for e in seen if is_report("t2-above", "EXPIRED", "EXPIRED")(e))
        assert expired["g"] == placed["orderListId"]
        reports = [e for e in seen if is_report("t2-below", "NEW", "NEW")(e)]
        assert [r["w"] for r in reports] == [False, True], "placed off the book; working once triggered"
        assert reports[1]["W"] > 0
        assert any(is_list_status("ALL_DONE")(e) for e in seen)
        assert await a.ok("GET", "/api/v3/openOrders", {"symbol": "BTCUSDT"}, signed=True) == []
        btc = balances(await a.ok("GET", "/api/v3/account", {}, signed=True))["BTC"]
        assert btc == ("9.99000000", "0.00000000")
    finally:
        await stream.ws.close()


async def test_a_buy_oco_with_a_stop_loss_leg_buys_at_market_when_triggered(sim, clients):
    a, b, c = clients
    params = {"symbol": "BTCUSDT", "side": "BUY", "quantity": "0.01", "listClientOrderId": "t3-list",
              "aboveType": "STOP_LOSS", "aboveStopPrice": "61000", "aboveClientOrderId": "t3-above",
              "belowType": "LIMIT_MAKER", "belowPrice": "59000", "belowClientOrderId": "t3-below"}
    placed = await a.ok("POST", "/api/v3/orderList/oco", params, signed=True)
    assert [r["type"] for r in placed["orderReports"]] == ["STOP_LOSS", "LIMIT_MAKER"]
    # Funds held once, for the dearer leg: 0.01 at the 61000 stop.
    assert balances(await a.ok("GET", "/api/v3/account", {}, signed=True))["USDT"][1] == "610.00000000"
    await c.ok("POST", "/api/v3/order", limit("SELL", "61000", "0.02"), signed=True)
    await b.ok("POST", "/api/v3/order", {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET",
                                         "quantity": "0.01"}, signed=True)
    stop = await a.ok("GET", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "t3-above"}, signed=True)
    maker = await a.ok("GET", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "t3-below"}, signed=True)
    assert (stop["status"], stop["executedQty"], stop["cummulativeQuoteQty"]) == ("FILLED", "0.01000000",
                                                                                  "610.00000000")
    assert maker["status"] == "EXPIRED"
    usdt_free, usdt_locked = balances(await a.ok("GET", "/api/v3/account", {}, signed=True))["USDT"]
    assert (usdt_free, usdt_locked) == ("999390.00000000", "0.00000000")


async def test_cancelling_one_leg_or_the_list(sim, clients):
    a, _, _ = clients
    stream = await UserStream.open(sim, *THREE[0])
    try:
        first = await a.ok("POST", "/api/v3/orderList/oco", sell_oco("t4"), signed=True)
        reply = await a.ok("DELETE", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "t4-above",
                                                       "newClientOrderId": "t4-cxl"}, signed=True)
        assert (reply["origClientOrderId"], reply["orderListId"], reply["status"]) == (
            "t4-above", first["orderListId"], "CANCELED")
        for cid in ("t4-below", "t4-above"):
            cancelled = await stream.until(lambda e, cid=cid: e["e"] == "executionReport" and e["C"] == cid)
            assert (cancelled["x"], cancelled["c"]) == ("CANCELED", "t4-cxl")
        await stream.until(is_list_status("ALL_DONE"))
        assert await a.ok("GET", "/api/v3/openOrders", {"symbol": "BTCUSDT"}, signed=True) == []

        # The same list client id may be used again once the first list is done.
        second = await a.ok("POST", "/api/v3/orderList/oco", sell_oco("t4"), signed=True)
        cancelled = await a.ok("DELETE", "/api/v3/orderList", {"symbol": "BTCUSDT", "listClientOrderId": "t4-list",
                                                               "newClientOrderId": "t4-cxl-2"}, signed=True)
        assert_shape(cancelled, fixture("cancel_order_list.json"))
        assert cancelled["orderListId"] == second["orderListId"] != first["orderListId"]
        assert (cancelled["listStatusType"], cancelled["listOrderStatus"]) == ("ALL_DONE", "ALL_DONE")
        assert [(r["origClientOrderId"], r["clientOrderId"], r["status"]) for r in cancelled["orderReports"]] == [
            ("t4-below", "t4-cxl-2", "CANCELED"), ("t4-above", "t4-cxl-2", "CANCELED")]
        assert balances(await a.ok("GET", "/api/v3/account", {}, signed=True))["BTC"] == ("10.00000000", "0.00000000")

        status, body, _ = await a.request("DELETE", "/api/v3/orderList", {"symbol": "BTCUSDT",
                                                                          "orderListId": second["orderListId"]},
                                          signed=True)
        assert (status, body) == (400, {"code": -2011, "msg": "Unknown order list sent."})
        status, body, _ = await a.request("GET", "/api/v3/orderList", {"orderListId": 999}, signed=True)
        assert (status, body) == (400, {"code": -2013, "msg": "Order list does not exist."})
        status, body, _ = await a.request("DELETE", "/api/v3/orderList", {"symbol": "BTCUSDT"}, signed=True)
        assert (status, body["code"]) == (400, -1102)
    finally:
        await stream.ws.close()


async def test_cancel_all_reply_has_binances_documented_shape(sim, clients):
    a, _, _ = clients
    await a.ok("POST", "/api/v3/order", limit("BUY", "50000", "0.01", newClientOrderId="plain-1"), signed=True)
    placed = await a.ok("POST", "/api/v3/orderList/oco", sell_oco("t5"), signed=True)
    await a.ok("POST", "/api/v3/order", limit("BUY", "49000", "0.01", newClientOrderId="plain-2"), signed=True)
    reply = await a.ok("DELETE", "/api/v3/openOrders", {"symbol": "BTCUSDT"}, signed=True)

    documented = fixture("delete_open_orders.json")
    plain_doc = next(e for e in documented if "contingencyType" not in e)
    list_doc = next(e for e in documented if "contingencyType" in e)
    plain = [e for e in reply if "contingencyType" not in e]
    lists = [e for e in reply if "contingencyType" in e]
    assert [e["origClientOrderId"] for e in plain] == ["plain-1", "plain-2"]
    assert len(lists) == 1
    for entry in plain:
        assert_shape(entry, plain_doc)
    assert_shape(lists[0], list_doc)
    assert shape(lists[0])["orderReports"][0].keys() == shape(list_doc)["orderReports"][0].keys() - NOT_SENT
    assert (lists[0]["orderListId"], lists[0]["listStatusType"], lists[0]["listOrderStatus"]) == (
        placed["orderListId"], "ALL_DONE", "ALL_DONE")
    assert [r["origClientOrderId"] for r in lists[0]["orderReports"]] == ["t5-below", "t5-above"]
    cancel_ids = {e["clientOrderId"] for e in plain + lists[0]["orderReports"]}
    assert len(cancel_ids) == 1, "one cancel id for the whole request, as in the documented example"
    assert await a.ok("GET", "/api/v3/openOrderList", {}, signed=True) == []


async def test_audit_log_has_one_line_per_order_list_request_and_the_legs_lives(sim, clients):
    a, b, _ = clients
    await a.ok("POST", "/api/v3/orderList/oco", sell_oco("t6"), signed=True)
    status, _, _ = await a.request("POST", "/api/v3/orderList/oco", sell_oco("t6"), signed=True)
    assert status == 400  # a duplicate list client id while the first is open
    await a.ok("DELETE", "/api/v3/orderList", {"symbol": "BTCUSDT", "listClientOrderId": "t6-list"}, signed=True)
    await a.ok("GET", "/api/v3/openOrderList", {}, signed=True)  # not an order request

    records = [r for r in sim.audit_records() if r["action"] in ("new_order_list", "cancel_order_list")]
    assert [(r["action"], r["client_order_id"], r["outcome"], r.get("code")) for r in records] == [
        ("new_order_list", "t6-list", "accepted", None),
        ("new_order_list", "t6-list", "rejected", -2010),
        ("cancel_order_list", "t6-list", "accepted", None),
    ]
    placed, duplicate, cancelled = records
    assert placed["leg_client_order_ids"] == ["t6-below", "t6-above"] and placed["order_list_id"] >= 1
    assert duplicate["leg_client_order_ids"] == ["t6-above", "t6-below"], "as requested: above, below"
    assert cancelled["cancelled"] == ["t6-below", "t6-above"]
    for r in records:
        assert r["api_key"] == a.key and r["symbol"] == "BTCUSDT" and r["recv_window_ms"] == 5000.0
        assert r["client_ts_ms"] and r["forwarded_us"] >= r["recv_us"]
    done = [d for d in sim.audit_records("order_done") if d["client_order_id"].startswith("t6-")]
    assert [(d["client_order_id"], d["status"], d["order_list_id"]) for d in done] == [
        ("t6-below", "CANCELED", placed["order_list_id"]), ("t6-above", "CANCELED", placed["order_list_id"])]


@pytest.mark.parametrize("changes, code, msg", [
    ({"aboveType": "LIMIT"}, -1158, "Order type not supported in OCO."),
    ({"belowType": "LIMIT_MAKER", "belowPrice": "59000", "belowStopPrice": None, "belowTimeInForce": None},
     -1168, "At least one OCO order must be contingent."),
    ({"aboveType": "STOP_LOSS", "abovePrice": None, "aboveStopPrice": "61000",
      "belowType": "LIMIT_MAKER", "belowPrice": "59000", "belowStopPrice": None, "belowTimeInForce": None},
     -1166, "A limit order in a sell OCO must be above."),
    ({"aboveType": "STOP_LOSS", "abovePrice": None, "aboveStopPrice": "61000"},
     -1197, "A stop loss order in a sell OCO must be below."),
    ({"side": "BUY"}, -1165, "A limit order in a buy OCO must be below."),
    ({"abovePrice": "59500"}, -2010, "The relationship of the prices for the orders is not correct."),
    ({"belowStopPrice": "60500"}, -2010, "The relationship of the prices for the orders is not correct."),
    ({"aboveType": "TAKE_PROFIT_LIMIT", "aboveStopPrice": "61000", "aboveTimeInForce": "GTC"},
     -2010, "Take profit limit orders are not supported for this symbol."),
    ({"aboveIcebergQty": "0.001"}, -2010, "Iceberg orders are not supported for this symbol."),
    ({"belowTimeInForce": None}, -1102, "Mandatory parameter 'belowTimeInForce' was not sent, was empty/null, "
                                        "or malformed."),
    ({"belowStopPrice": None}, -1102, "Param 'belowStopPrice' or 'belowTrailingDelta' must be sent, "
                                      "but both were empty/null!"),
    ({"aboveTimeInForce": "GTC"}, -1106, "Parameter 'aboveTimeInForce' sent when not required."),
    ({"belowTimeInForce": "DAY"}, -1115, "Invalid timeInForce."),
    ({"abovePrice": "61000.001"}, -1013, "Filter failure: PRICE_FILTER"),
    ({"quantity": "100"}, -2010, "Account has insufficient balance for requested action."),
    ({"aboveClientOrderId": "same", "belowClientOrderId": "same"}, -2010, "Duplicate order sent."),
    ({"listClientOrderId": "bad id"}, -1100, "Illegal characters found in parameter 'listClientOrderId'; "
                                             "legal range is '^[\\.A-Z\\:/a-z0-9_-]{1,36}$'."),
])
async def test_order_list_rejections(sim, clients, changes, code, msg):
    a, _, _ = clients
    params = {k: v for k, v in sell_oco("bad", **changes).items() if v is not None}
    status, body, _ = await a.request("POST", "/api/v3/orderList/oco", params, signed=True)
    assert (status, body) == (400, {"code": code, "msg": msg})
    assert await a.ok("GET", "/api/v3/openOrders", {"symbol": "BTCUSDT"}, signed=True) == []
    assert balances(await a.ok("GET", "/api/v3/account", {}, signed=True))["BTC"] == ("10.00000000", "0.00000000")
