"""A standard Binance client library — Binance's own binance-connector, not
our code — trades against the sim through its documented interface."""
import asyncio

from binance.error import ClientError
from binance.spot import Spot


def _client(sim) -> Spot:
    key, secret = sim.accounts[0]
    return Spot(api_key=key, api_secret=secret, base_url=sim.base_url, timeout=5)


async def test_binance_connector_round_trip(live_sim):
    def scenario():
        client = _client(live_sim)
        assert client.ping() == {}
        info = client.exchange_info(symbol="BTCUSDT")
        filters = {f["filterType"]: f for f in info["symbols"][0]["filters"]}
        assert {"PRICE_FILTER", "LOT_SIZE", "NOTIONAL"} <= filters.keys()

        book = client.depth("BTCUSDT", limit=10)
        best_bid = float(book["bids"][0][0])
        assert book["lastUpdateId"] > 0 and float(book["asks"][0][0]) > best_bid

        # Rests well below the market, so nothing fills it.
        price = f"{round(best_bid * 0.9, 2):.2f}"
        placed = client.new_order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                                  quantity="0.01", price=price, newClientOrderId="connector-test-1")
        assert placed["status"] == "NEW" and placed["clientOrderId"] == "connector-test-1"

        open_ids = [o["orderId"] for o in client.get_open_orders(symbol="BTCUSDT")]
        assert placed["orderId"] in open_ids

        balances = {b["asset"]: b for b in client.account()["balances"]}
        assert float(balances["USDT"]["locked"]) == float(price) * 0.01

        cancelled = client.cancel_order("BTCUSDT", orderId=placed["orderId"])
        assert cancelled["status"] == "CANCELED"
        assert client.get_open_orders(symbol="BTCUSDT") == []
        assert client.get_order("BTCUSDT", origClientOrderId="connector-test-1")["status"] == "CANCELED"

        balances = {b["asset"]: b for b in client.account()["balances"]}
        assert float(balances["USDT"]["locked"]) == 0.0
        assert float(balances["BTC"]["free"]) == 10.0

    await asyncio.to_thread(scenario)


async def test_binance_connector_sees_venue_errors(quiet_sim):
    def scenario():
        client = _client(quiet_sim)
        try:
            client.cancel_order("BTCUSDT", orderId=424242)
        except ClientError as exc:
            assert (exc.status_code, exc.error_code) == (400, -2011)
        else:
            raise AssertionError("cancelling an unknown order must fail")

    await asyncio.to_thread(scenario)


async def test_binance_connector_order_list_round_trip(live_sim):
    """An OCO through the connector's own order-list calls (POST /api/v3/orderList/oco, GET
    /api/v3/openOrderList, DELETE /api/v3/orderList), against the live synthetic market."""
    def scenario():
        client = _client(live_sim)
        top = client.book_ticker(symbol="BTCUSDT")
        bid, ask = float(top["bidPrice"]), float(top["askPrice"])
        placed = client.new_oco_order(
            symbol="BTCUSDT", side="SELL", quantity="0.001", listClientOrderId="conn-oco",
            aboveType="LIMIT_MAKER", abovePrice=f"{ask * 1.05:.2f}", aboveClientOrderId="conn-oco-above",
            belowType="STOP_LOSS_LIMIT", belowStopPrice=f"{bid * 0.95:.2f}", belowPrice=f"{bid * 0.94:.2f}",
            belowTimeInForce="GTC", belowClientOrderId="conn-oco-below")
        assert placed["listOrderStatus"] == "EXECUTING"
        assert {o["clientOrderId"] for o in placed["orders"]} == {"conn-oco-above", "conn-oco-below"}
        assert [ol["orderListId"] for ol in client.get_oco_open_orders()] == [placed["orderListId"]]
        legs = {o["clientOrderId"]: o["orderListId"] for o in client.get_open_orders(symbol="BTCUSDT")}
        assert legs == {"conn-oco-above": placed["orderListId"], "conn-oco-below": placed["orderListId"]}
        cancelled = client.cancel_oco_order("BTCUSDT", orderListId=placed["orderListId"])
        assert cancelled["listOrderStatus"] == "ALL_DONE"
        assert {r["status"] for r in cancelled["orderReports"]} == {"CANCELED"}
        assert client.get_oco_open_orders() == [] and client.get_open_orders(symbol="BTCUSDT") == []
        try:
            client.cancel_oco_order("BTCUSDT", orderListId=placed["orderListId"])
        except ClientError as exc:
            assert (exc.status_code, exc.error_code) == (400, -2011)
        else:
            raise AssertionError("cancelling a finished order list must fail")

    await asyncio.to_thread(scenario)
