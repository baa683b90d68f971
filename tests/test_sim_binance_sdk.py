"""Binance's current official Python SDK (binance-sdk-spot), not our code,
trades against the sim through its documented interface: REST, the WebSocket
API with the SDK's default settings (rateLimits on every reply, which the SDK
reads), and market streams. The sim runs as a subprocess; the test process is
held to loopback, so an SDK call that left for the real venue would fail."""
import asyncio
import time

from binance_common.configuration import (
    ConfigurationRestAPI,
    ConfigurationWebSocketAPI,
    ConfigurationWebSocketStreams,
)
from binance_sdk_spot.spot import Spot

from tests.loopback_guard import loopback_only

SYMBOL = "BTCUSDT"


def _spot(sim) -> Spot:
    key, secret = sim.accounts[0]
    return Spot(
        config_rest_api=ConfigurationRestAPI(api_key=key, api_secret=secret, base_path=sim.base_url),
        # Everything else at the SDK's defaults (single connection, return_rate_limits, re-logon ...).
        config_ws_api=ConfigurationWebSocketAPI(api_key=key, api_secret=secret, stream_url=f"{sim.ws_url}/ws-api/v3"),
        config_ws_streams=ConfigurationWebSocketStreams(stream_url=sim.ws_url),
    )


async def _until(predicate, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "not in time"
        await asyncio.sleep(0.05)


async def test_official_sdk_rest_round_trip(live_sim):
    def scenario():
        rest = _spot(live_sim).rest_api
        info = rest.exchange_info(symbol=SYMBOL).data()
        symbol = info.symbols[0]
        assert symbol.symbol == SYMBOL and symbol.status == "TRADING"
        filter_types = {f.actual_instance.filter_type for f in symbol.filters}
        assert {"PRICE_FILTER", "LOT_SIZE", "NOTIONAL", "PERCENT_PRICE_BY_SIDE", "MAX_NUM_ORDERS"} <= filter_types

        book = rest.depth(SYMBOL, limit=5).data()
        best_bid = float(book.bids[0][0])
        assert book.last_update_id > 0 and float(book.asks[0][0]) > best_bid

        placed = rest.new_order(symbol=SYMBOL, side="BUY", type="LIMIT", time_in_force="GTC", quantity=0.001,
                                price=round(best_bid * 0.98, 2), new_client_order_id="sdk-rest-1").data()
        assert placed.status == "NEW" and placed.client_order_id == "sdk-rest-1"
        assert rest.get_order(SYMBOL, order_id=placed.order_id).data().status == "NEW"
        assert [o.order_id for o in rest.get_open_orders(symbol=SYMBOL).data()] == [placed.order_id]
        usdt = next(b for b in rest.get_account().data().balances if b.asset == "USDT")
        assert round(float(usdt.locked), 8) == round(round(best_bid * 0.98, 2) * 0.001, 8)

        assert rest.delete_order(SYMBOL, order_id=placed.order_id).data().status == "CANCELED"
        assert rest.get_open_orders(symbol=SYMBOL).data() == []

    with loopback_only() as refused:
        await asyncio.to_thread(scenario)
    assert refused == []


async def test_official_sdk_websocket_api_trades_and_streams_user_data(live_sim):
    with loopback_only() as refused:
        spot = _spot(live_sim)
        connection = await spot.websocket_api.create_connection()
        try:
            reply = await connection.time()
            assert reply.data().status == 200
            assert [r.rateLimitType for r in reply.rate_limits] == ["REQUEST_WEIGHT"]

            subscription = await connection.user_data_stream_subscribe_signature()
            events = []
            subscription.stream.on("message", events.append)

            book = (await connection.depth(symbol=SYMBOL, limit=5)).data().result
            price = round(float(book.bids[0][0]) * 0.97, 2)
            placed = await connection.order_place(symbol=SYMBOL, side="BUY", type="LIMIT", time_in_force="GTC",
                                                  quantity=0.001, price=price, new_client_order_id="sdk-ws-1")
            order = placed.data().result
            assert order.status == "NEW" and order.client_order_id == "sdk-ws-1"
            assert {(r.rateLimitType, r.interval) for r in placed.rate_limits} == {
                ("ORDERS", "SECOND"), ("ORDERS", "DAY"), ("REQUEST_WEIGHT", "MINUTE")}

            status = (await connection.order_status(symbol=SYMBOL, order_id=order.order_id)).data().result
            assert status.status == "NEW"
            open_orders = (await connection.open_orders_status(symbol=SYMBOL)).data().result
            assert [o.order_id for o in open_orders] == [order.order_id]
            balances = (await connection.account_status()).data().result.balances
            assert round(float(next(b for b in balances if b.asset == "USDT").locked), 8) == round(price * 0.001, 8)
            cancelled = (await connection.order_cancel(symbol=SYMBOL, order_id=order.order_id)).data().result
            assert cancelled.status == "CANCELED"

            def reports():
                return [e.actual_instance for e in events
                        if type(e.actual_instance).__name__ == "ExecutionReport"]
            await _until(lambda: [r.x for r in reports()] == ["NEW", "CANCELED"])
            assert {r.i for r in reports()} == {order.order_id}
            assert any(type(e.actual_instance).__name__ == "OutboundAccountPosition" for e in events)
        finally:
            await connection.close_connection()
    assert refused == []


async def test_official_sdk_market_streams(live_sim):
    with loopback_only() as refused:
        connection = await _spot(live_sim).websocket_streams.create_connection()
        try:
            diffs, trades = [], []
            depth_stream = await connection.diff_book_depth(symbol="btcusdt", update_speed="100ms")
            depth_stream.on("message", diffs.append)
            trade_stream = await connection.trade(symbol="btcusdt")
            trade_stream.on("message", trades.append)
            await _until(lambda: len(diffs) >= 3 and trades)
            assert diffs[0].e == "depthUpdate" and diffs[0].s == SYMBOL
            assert all(b.u >= a.u for a, b in zip(diffs, diffs[1:]))  # in sequence
            assert trades[0].e == "trade" and float(trades[0].p) > 0
        finally:
            await connection.close_connection()
    assert refused == []
