"""ccxt, the most widely used multi-exchange client, trades against the sim as
its `binance` exchange: REST (load_markets, order book, place, see, cancel,
balances) and its streaming API ccxt.pro (order book, trades, orders,
balances; it connects to /ws/<n> and then subscribes, and takes user data
through the WebSocket API's signature subscription). Every URL ccxt knows is
pointed at the sim, and the test process is held to loopback."""
import asyncio
from urllib.parse import urlsplit

import ccxt
import ccxt.pro

from tests.loopback_guard import loopback_only

MARKET = "BTC/USDT"
# Spot only, no margin pairs, no currency list (a wallet endpoint the sim does not serve): what a spot
# market maker configures.
OPTIONS = {"fetchMarkets": {"types": ["spot"]}, "fetchMargins": False, "fetchCurrencies": False}


def _pointed_at(exchange, sim):
    """Every REST base ccxt has for Binance becomes the sim's base URL with the same path; the
    streams and the WebSocket API become the sim's."""
    api = exchange.urls["api"]
    for name, url in list(api.items()):
        if isinstance(url, str):
            api[name] = sim.base_url + urlsplit(url).path
    api["ws"] = {"spot": f"{sim.ws_url}/ws", "ws-api": {"spot": f"{sim.ws_url}/ws-api/v3"}}
    return exchange


def _binance(module, sim):
    key, secret = sim.accounts[0]
    return _pointed_at(module.binance({"apiKey": key, "secret": secret, "options": dict(OPTIONS)}), sim)


async def test_ccxt_rest_round_trip(live_sim):
    def scenario():
        exchange = _binance(ccxt, live_sim)
        markets = exchange.load_markets()
        assert markets[MARKET]["id"] == "BTCUSDT" and markets[MARKET]["active"]
        assert markets[MARKET]["limits"]["cost"]["min"] == 5.0  # NOTIONAL's minNotional, as ccxt reads it

        book = exchange.fetch_order_book(MARKET, 5)
        best_bid = book["bids"][0][0]
        assert book["asks"][0][0] > best_bid

        price = round(best_bid * 0.98, 2)
        placed = exchange.create_order(MARKET, "limit", "buy", 0.001, price, {"newClientOrderId": "ccxt-rest-1"})
        assert placed["status"] == "open" and placed["clientOrderId"] == "ccxt-rest-1"
        assert exchange.fetch_order(placed["id"], MARKET)["status"] == "open"
        assert [o["id"] for o in exchange.fetch_open_orders(MARKET)] == [placed["id"]]
        assert round(exchange.fetch_balance()["USDT"]["used"], 8) == round(price * 0.001, 8)

        assert exchange.cancel_order(placed["id"], MARKET)["status"] == "canceled"
        assert exchange.fetch_open_orders(MARKET) == []
        assert exchange.fetch_balance()["USDT"]["used"] == 0

    with loopback_only() as refused:
        await asyncio.to_thread(scenario)
    assert refused == []


async def test_ccxt_pro_streams_book_trades_orders_and_balances(live_sim):
    with loopback_only() as refused:
        exchange = _binance(ccxt.pro, live_sim)
        try:
            await exchange.load_markets()
            book = await asyncio.wait_for(exchange.watch_order_book(MARKET), 10)
            assert book["bids"] and book["asks"] and book["bids"][0][0] < book["asks"][0][0]
            assert book["nonce"] > 0  # synced from the REST snapshot and the diff stream's update ids
            trades = await asyncio.wait_for(exchange.watch_trades(MARKET), 10)
            assert trades and trades[0]["price"] > 0

            orders = asyncio.create_task(exchange.watch_orders(MARKET))
            balance = asyncio.create_task(exchange.watch_balance())
            await asyncio.sleep(0.5)  # both subscribed (one WebSocket API signature subscription) before the order
            price = round(book["bids"][0][0] * 0.97, 2)
            placed = await exchange.create_order(MARKET, "limit", "buy", 0.001, price)
            seen = await asyncio.wait_for(orders, 10)
            assert [(o["id"], o["status"]) for o in seen] == [(placed["id"], "open")]
            usdt = (await asyncio.wait_for(balance, 10))["USDT"]
            assert round(usdt["used"], 8) == round(price * 0.001, 8)
            await exchange.cancel_order(placed["id"], MARKET)
        finally:
            await exchange.close()
    assert refused == []
