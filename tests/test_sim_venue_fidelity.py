"""What the sim serves as the venue serves it, point by point (the Spot API
docs' rest-api.md, web-socket-api.md, web-socket-streams.md,
user-data-stream.md and CHANGELOG), over real sockets: rateLimits in
WebSocket API replies, per-session subscription ids, eventStreamTerminated,
any /ws/<name>, the 2026 request weights, the newer exchangeInfo fields, the
query string winning over the body, and amendments."""
import asyncio
import json
import time
from urllib.parse import urlencode

import aiohttp
import pytest
import websockets

from simexchange.signing import sign, ws_api_payload
from tests.simproc import RestClient
from tests.test_sim_order_lists import assert_shape, fixture

SYMBOL = "BTCUSDT"
LIMIT_BUY = {"symbol": SYMBOL, "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.01",
             "price": "50000"}


def signed(sim, params: dict, account: int = 0) -> dict:
    key, secret = sim.accounts[account]
    params = {**params, "apiKey": key, "timestamp": time.time_ns() // 1_000_000}
    return {**params, "signature": sign(secret, ws_api_payload(params))}


async def call(ws, method: str, params: dict | None = None, request_id="r") -> dict:
    await ws.send(json.dumps({"id": request_id, "method": method, **({"params": params} if params else {})}))
    deadline = time.monotonic() + 3
    while True:  # events may come before the reply: skip them, bounded
        message = json.loads(await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic())))
        if message.get("id") == request_id:
            return message


async def next_event(ws, timeout_s: float = 3.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic())))
        if "event" in message:
            return message


@pytest.fixture
async def rest(quiet_sim):
    async with aiohttp.ClientSession() as session:
        yield RestClient(session, quiet_sim.base_url, *quiet_sim.accounts[0])


async def test_ws_api_replies_carry_rate_limits_unless_told_not_to(quiet_sim):
    async with websockets.connect(f"{quiet_sim.ws_url}/ws-api/v3") as ws:
        reply = await call(ws, "time")
        assert reply["status"] == 200 and [r["rateLimitType"] for r in reply["rateLimits"]] == ["REQUEST_WEIGHT"]
        assert set(reply["rateLimits"][0]) == {"rateLimitType", "interval", "intervalNum", "limit", "count"}
        placed = await call(ws, "order.place", signed(quiet_sim, LIMIT_BUY))
        assert placed["result"]["status"] == "NEW"
        assert [(r["rateLimitType"], r["interval"], r["count"]) for r in placed["rateLimits"]][:2] == [
            ("ORDERS", "SECOND", 1), ("ORDERS", "DAY", 1)]
        refused = await call(ws, "order.place", signed(quiet_sim, {**LIMIT_BUY, "quantity": "0.000001"}))
        assert refused["error"]["code"] == -1013 and "rateLimits" in refused  # failures carry them too
        assert "rateLimits" not in await call(ws, "ping", {"returnRateLimits": False})
    async with websockets.connect(f"{quiet_sim.ws_url}/ws-api/v3?returnRateLimits=false") as ws:
        assert "rateLimits" not in await call(ws, "ping")
        assert "rateLimits" in await call(ws, "ping", {"returnRateLimits": True})


async def test_subscription_ids_are_per_session_and_unsubscribing_ends_the_stream(quiet_sim):
    async with websockets.connect(f"{quiet_sim.ws_url}/ws-api/v3") as first, \
            websockets.connect(f"{quiet_sim.ws_url}/ws-api/v3") as second:
        method = "userDataStream.subscribe.signature"
        assert (await call(first, method, signed(quiet_sim, {})))["result"] == {"subscriptionId": 0}
        assert (await call(second, method, signed(quiet_sim, {})))["result"] == {"subscriptionId": 0}
        assert (await call(second, method, signed(quiet_sim, {}, account=1)))["result"] == {"subscriptionId": 1}
        duplicate = await call(first, method, signed(quiet_sim, {}))
        assert duplicate["error"] == {"code": -2035, "msg": "User Data Stream subscription already active."}
        assert (await call(second, "session.subscriptions"))["result"] == [{"subscriptionId": 0},
                                                                           {"subscriptionId": 1}]

        # The subscription's last event, then the reply: a client still routing its events sees it.
        await second.send(json.dumps({"id": "u", "method": "userDataStream.unsubscribe",
                                      "params": {"subscriptionId": 0}}))
        terminated, reply = [json.loads(await asyncio.wait_for(second.recv(), 3)) for _ in range(2)]
        assert terminated["subscriptionId"] == 0 and terminated["event"]["e"] == "eventStreamTerminated"
        assert (reply["id"], reply["result"]) == ("u", {})
        missing = await call(second, "userDataStream.unsubscribe", {"subscriptionId": 0})
        assert missing["error"]["code"] == -2036

        await call(second, "order.place", signed(quiet_sim, LIMIT_BUY))  # account 0's order, sent on `second`
        event = await next_event(first)  # the first session still gets account 0's events
        assert event["subscriptionId"] == 0 and event["event"]["e"] in ("executionReport", "outboundAccountPosition")
        assert (await call(second, "session.status"))["result"]["userDataStream"] is True  # account 1's remains


async def test_any_ws_name_connects_then_subscribes(live_sim):
    async with websockets.connect(f"{live_sim.ws_url}/ws/0") as ws:
        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@depth@100ms"], "id": 7}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 3)) == {"result": None, "id": 7}
        assert json.loads(await asyncio.wait_for(ws.recv(), 3))["e"] == "depthUpdate"


async def test_2026_request_weights(rest):
    async def weight(method, path, params=None, signed=False):
        _, _, headers = await rest.request(method, path, params, signed)
        return int(headers["X-MBX-USED-WEIGHT-1M"])

    base = await weight("GET", "/api/v3/ping")
    # Order entry is free when it succeeds and charged its documented weight when it fails (CHANGELOG 2026-03-27).
    assert await weight("POST", "/api/v3/order", LIMIT_BUY, signed=True) == base
    assert await weight("POST", "/api/v3/order", {**LIMIT_BUY, "quantity": "0.000001"}, signed=True) == base + 1
    assert await weight("GET", "/api/v3/ticker/price", {"symbol": SYMBOL}) == base + 3
    assert await weight("GET", "/api/v3/ticker/price") == base + 7  # 4 without `symbol`
    assert await weight("GET", "/api/v3/openOrders", signed=True) == base + 87  # 80 without `symbol`


async def test_exchange_info_has_the_newer_fields_and_rate_limits(rest):
    info = await rest.ok("GET", "/api/v3/exchangeInfo", {"symbol": SYMBOL})
    symbol = info["symbols"][0]
    for flag in ("otoAllowed", "opoAllowed", "amendAllowed", "pegInstructionsAllowed", "allowTrailingStop",
                 "cancelReplaceAllowed", "isSpotTradingAllowed"):
        assert isinstance(symbol[flag], bool), flag
    assert {(r["rateLimitType"], r["interval"], r["intervalNum"]) for r in info["rateLimits"]} == {
        ("REQUEST_WEIGHT", "MINUTE", 1), ("ORDERS", "SECOND", 10), ("ORDERS", "DAY", 1), ("RAW_REQUESTS", "MINUTE", 5)}


async def test_a_parameter_in_query_and_body_takes_the_query_s_value(quiet_sim):
    """rest-api.md: "If a parameter sent in both the query string and request body, the query string
    parameter will be used." Signed over query then body, as sent."""
    key, secret = quiet_sim.accounts[0]
    query = urlencode({**LIMIT_BUY, "newClientOrderId": "from-query"})
    body = urlencode({"newClientOrderId": "from-body", "timestamp": time.time_ns() // 1_000_000})
    body += "&signature=" + sign(secret, query + body)
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{quiet_sim.base_url}/api/v3/order?{query}", data=body,
                                headers={"X-MBX-APIKEY": key,
                                         "Content-Type": "application/x-www-form-urlencoded"}) as resp:
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["clientOrderId"] == "from-query"


async def test_amend_keeps_priority_and_reports_replaced(quiet_sim):
    a = quiet_sim.accounts[0]
    async with aiohttp.ClientSession() as session, websockets.connect(f"{quiet_sim.ws_url}/ws-api/v3") as ws:
        ra, rb = RestClient(session, quiet_sim.base_url, *a), RestClient(session, quiet_sim.base_url,
                                                                          *quiet_sim.accounts[1])
        await call(ws, "userDataStream.subscribe.signature", signed(quiet_sim, {}))
        first = await ra.ok("POST", "/api/v3/order", {**LIMIT_BUY, "newClientOrderId": "first"}, signed=True)
        await rb.ok("POST", "/api/v3/order", {**LIMIT_BUY, "newClientOrderId": "second"}, signed=True)
        amended = await ra.ok("PUT", "/api/v3/order/amend/keepPriority",
                              {"symbol": SYMBOL, "orderId": first["orderId"], "newQty": "0.004",
                               "newClientOrderId": "first-amended"}, signed=True)
        assert amended["amendedOrder"]["origClientOrderId"] == "first"
        assert (amended["amendedOrder"]["clientOrderId"], amended["amendedOrder"]["qty"]) == ("first-amended",
                                                                                                "0.00400000")
        reports = []
        while len(reports) < 2:  # NEW, then REPLACED (balance updates between are skipped)
            event = (await next_event(ws))["event"]
            if event["e"] == "executionReport":
                reports.append(event)
        assert [(r["x"], r["c"], r["C"], r["q"]) for r in reports] == [
            ("NEW", "first", "", "0.01000000"), ("REPLACED", "first-amended", "first", "0.00400000")]
        # Still first in the queue at 50000: a sell of 0.004 fills the amended order, not the other.
        await rb.ok("POST", "/api/v3/order", {"symbol": SYMBOL, "side": "SELL", "type": "LIMIT", "timeInForce": "IOC",
                                              "quantity": "0.004", "price": "50000"}, signed=True)
        assert (await ra.ok("GET", "/api/v3/order", {"symbol": SYMBOL, "orderId": first["orderId"]},
                            signed=True))["status"] == "FILLED"
        too_big = await ra.request("PUT", "/api/v3/order/amend/keepPriority",
                                   {"symbol": SYMBOL, "origClientOrderId": "second", "newQty": "0.02"}, signed=True)
        assert too_big[:2] == (400, {"code": -2038, "msg": "Unknown order sent."})  # another account's order


async def test_replies_have_the_documented_shapes(quiet_sim):
    """The sim's WebSocket API replies, an amendment and eventStreamTerminated against Binance's own
    examples (tests/fixtures/binance), key for key and type for type."""
    async with aiohttp.ClientSession() as session, websockets.connect(f"{quiet_sim.ws_url}/ws-api/v3") as ws:
        await ws.send(json.dumps({"id": "7069b743-f477-4ae3-81db-db9b8df085d2", "method": "time"}))
        assert_shape(json.loads(await ws.recv()), fixture("ws_api_time_response.json"))

        placed = await call(ws, "order.place", signed(quiet_sim, {**LIMIT_BUY, "newOrderRespType": "RESULT"}),
                            request_id="e2a85d9f-07a5-4f94-8d5f-789dc3deb097")
        documented = fixture("ws_api_order_place_response.json")
        assert_shape(placed["result"], documented["result"], "$.result")
        assert [r["rateLimitType"] for r in placed["rateLimits"]] == [r["rateLimitType"]
                                                                     for r in documented["rateLimits"]]

        rest = RestClient(session, quiet_sim.base_url, *quiet_sim.accounts[0])
        amended = await rest.ok("PUT", "/api/v3/order/amend/keepPriority",
                                {"symbol": SYMBOL, "orderId": placed["result"]["orderId"], "newQty": "0.005"},
                                signed=True)
        assert_shape(amended, fixture("amend_keep_priority.json"))

        await call(ws, "userDataStream.subscribe.signature", signed(quiet_sim, {}))
        await ws.send(json.dumps({"id": "u", "method": "userDataStream.unsubscribe"}))
        assert_shape(json.loads(await asyncio.wait_for(ws.recv(), 3)), fixture("event_stream_terminated_event.json"))
