"""The order lifecycle seen on REST and on the user data stream, and the
audit log that drills read."""
import asyncio
import json
import time

import aiohttp
import pytest
import websockets

from tests.simproc import RestClient, sign


class UserStream:
    """userDataStream.subscribe.signature over the WebSocket API."""

    def __init__(self, ws):
        self.ws = ws
        self.events: list[dict] = []

    @classmethod
    async def open(cls, sim, key: str, secret: str) -> "UserStream":
        ws = await websockets.connect(f"{sim.ws_url}/ws-api/v3")
        params = {"apiKey": key, "timestamp": int(time.time() * 1000)}
        payload = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
        params["signature"] = sign(secret, payload)
        await ws.send(json.dumps({"id": "sub-1", "method": "userDataStream.subscribe.signature", "params": params}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert reply["status"] == 200, reply
        stream = cls(ws)
        stream.subscription_id = reply["result"]["subscriptionId"]
        return stream

    async def until(self, predicate, timeout: float = 5.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            msg = json.loads(await asyncio.wait_for(self.ws.recv(), max(0.01, deadline - time.monotonic())))
            assert msg["subscriptionId"] == self.subscription_id
            self.events.append(msg["event"])
            if predicate(msg["event"]):
                return msg["event"]


def report(client_id: str, exec_type: str, status: str):
    return lambda e: e["e"] == "executionReport" and e["c"] == client_id and e["x"] == exec_type and e["X"] == status


@pytest.fixture
async def two_traders(quiet_sim):
    async with aiohttp.ClientSession() as session:
        yield (RestClient(session, quiet_sim.base_url, *quiet_sim.accounts[0]),
               RestClient(session, quiet_sim.base_url, *quiet_sim.accounts[1]))


async def test_partial_fills_on_rest_and_user_stream(quiet_sim, two_traders):
    maker, taker = two_traders
    stream = await UserStream.open(quiet_sim, *quiet_sim.accounts[0])
    try:
        placed = await maker.ok("POST", "/api/v3/order", {
            "symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.03",
            "price": "60000", "newClientOrderId": "mm-sell-1"}, signed=True)
        assert placed["status"] == "NEW" and placed["fills"] == []
        await stream.until(report("mm-sell-1", "NEW", "NEW"))

        taken = await taker.ok("POST", "/api/v3/order", {
            "symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "IOC", "quantity": "0.01",
            "price": "60500"}, signed=True)
        assert taken["status"] == "FILLED"
        assert taken["fills"] == [{"price": "60000.00000000", "qty": "0.01000000", "commission": "0.00001000",
                                   "commissionAsset": "BTC", "tradeId": taken["fills"][0]["tradeId"]}]

        partial = await stream.until(report("mm-sell-1", "TRADE", "PARTIALLY_FILLED"))
        assert (partial["l"], partial["z"], partial["L"], partial["m"]) == ("0.01000000", "0.01000000",
                                                                           "60000.00000000", True)
        assert partial["n"] == "0.60000000" and partial["N"] == "USDT"  # 0.1 % maker fee on 600 USDT
        position = await stream.until(lambda e: e["e"] == "outboundAccountPosition")
        assets = {b["a"]: b for b in position["B"]}
        assert assets["BTC"] == {"a": "BTC", "f": "9.97000000", "l": "0.02000000"}
        assert assets["USDT"]["f"] == "1000599.40000000"

        query = await maker.ok("GET", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "mm-sell-1"},
                               signed=True)
        assert (query["status"], query["executedQty"], query["cummulativeQuoteQty"]) == (
            "PARTIALLY_FILLED", "0.01000000", "600.00000000")

        # A market buy of more than rests takes the remainder; the rest expires.
        market = await taker.ok("POST", "/api/v3/order", {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET",
                                                          "quantity": "0.05"}, signed=True)
        assert (market["status"], market["executedQty"]) == ("EXPIRED", "0.02000000")
        await stream.until(report("mm-sell-1", "TRADE", "FILLED"))
        query = await maker.ok("GET", "/api/v3/order", {"symbol": "BTCUSDT", "orderId": placed["orderId"]},
                               signed=True)
        assert (query["status"], query["executedQty"]) == ("FILLED", "0.03000000")
        assert await maker.ok("GET", "/api/v3/openOrders", {"symbol": "BTCUSDT"}, signed=True) == []

        account = await maker.ok("GET", "/api/v3/account", {}, signed=True)
        balances = {b["asset"]: b for b in account["balances"]}
        assert balances["BTC"] == {"asset": "BTC", "free": "9.97000000", "locked": "0.00000000"}
        assert balances["USDT"]["free"] == "1001798.20000000"  # 1800 USDT less 1.8 fee
    finally:
        await stream.ws.close()


async def test_cancel_and_rejection_on_user_stream(quiet_sim, two_traders):
    trader, _ = two_traders
    stream = await UserStream.open(quiet_sim, *quiet_sim.accounts[0])
    try:
        await trader.ok("POST", "/api/v3/order", {
            "symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.01",
            "price": "50000", "newClientOrderId": "bid-1"}, signed=True)
        locked = await stream.until(lambda e: e["e"] == "outboundAccountPosition")
        assert {b["a"]: b["l"] for b in locked["B"]}["USDT"] == "500.00000000"
        cancelled = await trader.ok("DELETE", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "bid-1",
                                                                "newClientOrderId": "cxl-1"}, signed=True)
        assert (cancelled["origClientOrderId"], cancelled["clientOrderId"], cancelled["status"]) == (
            "bid-1", "cxl-1", "CANCELED")
        event = await stream.until(lambda e: e["e"] == "executionReport" and e["x"] == "CANCELED")
        assert (event["c"], event["C"], event["X"]) == ("cxl-1", "bid-1", "CANCELED")
        released = await stream.until(lambda e: e["e"] == "outboundAccountPosition")
        assert {b["a"]: b["l"] for b in released["B"]}["USDT"] == "0.00000000"

        # A FOK that cannot fill in full expires without trading.
        fok = await trader.ok("POST", "/api/v3/order", {
            "symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "FOK", "quantity": "0.01",
            "price": "70000"}, signed=True)
        assert (fok["status"], fok["executedQty"]) == ("EXPIRED", "0.00000000")
    finally:
        await stream.ws.close()


async def test_ws_api_rejects_bad_signature(quiet_sim):
    key, _ = quiet_sim.accounts[0]
    async with websockets.connect(f"{quiet_sim.ws_url}/ws-api/v3") as ws:
        params = {"apiKey": key, "timestamp": int(time.time() * 1000)}
        params["signature"] = sign("wrong-secret", f"apiKey={key}&timestamp={params['timestamp']}")
        await ws.send(json.dumps({"id": 1, "method": "userDataStream.subscribe.signature", "params": params}))
        reply = json.loads(await ws.recv())
        assert (reply["status"], reply["error"]["code"]) == (400, -1022)


async def test_audit_log_holds_one_line_per_order_request(quiet_sim, two_traders):
    trader, other = two_traders
    bid = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.01",
           "price": "50000"}
    before_us = time.time_ns() // 1000
    await trader.ok("POST", "/api/v3/order", {**bid, "newClientOrderId": "e7-sg-1-a"}, signed=True)
    await trader.ok("POST", "/api/v3/order", {**bid, "newClientOrderId": "e7-sg-1-b", "price": "49000"}, signed=True)
    status, _, _ = await trader.request("POST", "/api/v3/order", {**bid, "price": "1", "newClientOrderId": "e7-bad"},
                                        signed=True)
    assert status == 400
    await trader.ok("DELETE", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "e7-sg-1-a"}, signed=True)
    status, _, _ = await trader.request("DELETE", "/api/v3/order", {"symbol": "BTCUSDT", "orderId": 12345},
                                        signed=True)
    assert status == 400
    await trader.ok("DELETE", "/api/v3/openOrders", {"symbol": "BTCUSDT"}, signed=True)
    status, _, _ = await other.request("POST", "/api/v3/order", {**bid, "newClientOrderId": "e8-x"}, signed=True,
                                       tamper=True)
    assert status == 400
    await trader.ok("GET", "/api/v3/openOrders", {"symbol": "BTCUSDT"}, signed=True)  # not an order request

    records = quiet_sim.audit_records()
    assert [(r["action"], r["client_order_id"], r["outcome"], r.get("code")) for r in records] == [
        ("new", "e7-sg-1-a", "accepted", None),
        ("new", "e7-sg-1-b", "accepted", None),
        ("new", "e7-bad", "rejected", -1013),
        ("cancel", "e7-sg-1-a", "accepted", None),
        ("cancel", None, "rejected", -2011),
        ("cancel_all", None, "accepted", None),
        ("new", "e8-x", "rejected", -1022),
    ]
    assert records[5]["cancelled"] == ["e7-sg-1-b"]
    assert [r["api_key"] for r in records] == [trader.key] * 6 + [other.key]
    for r in records:
        assert before_us <= r["recv_us"] <= r["done_us"] <= time.time_ns() // 1000
        assert r["symbol"] == "BTCUSDT"
        assert before_us // 1000 - 1 <= r["client_ts_ms"] <= r["recv_us"] // 1000 + 1, "the sender's signing time"
    done = quiet_sim.audit_records("order_done")
    assert [(d["client_order_id"], d["status"]) for d in done] == [("e7-sg-1-a", "CANCELED"),
                                                                    ("e7-sg-1-b", "CANCELED")]
