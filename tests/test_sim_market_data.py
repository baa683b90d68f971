"""Market streams over real WebSockets: depth diffs consistent with REST
snapshots, trades, book tickers, live (un)subscription and server pings."""
import asyncio
import json
import time

import aiohttp
import websockets

from tests.simproc import RestClient


class SyncedBook:
    """Binance's documented procedure for a local book: buffer the diff
    stream, take a snapshot, drop what it already covers, apply the rest, and
    treat any hole in the U/u sequence as a gap."""

    def __init__(self):
        self.update_id = 0
        self.bids: dict[str, str] = {}
        self.asks: dict[str, str] = {}

    def load(self, snapshot: dict) -> None:
        self.update_id = snapshot["lastUpdateId"]
        self.bids = {p: q for p, q in snapshot["bids"]}
        self.asks = {p: q for p, q in snapshot["asks"]}

    def apply(self, event: dict) -> None:
        if event["u"] <= self.update_id:
            return
        assert event["U"] <= self.update_id + 1, f"sequence gap: have {self.update_id}, event starts {event['U']}"
        for side, levels in ((self.bids, event["b"]), (self.asks, event["a"])):
            for price, qty in levels:
                if float(qty) == 0:
                    side.pop(price, None)
                else:
                    side[price] = qty
        self.update_id = event["u"]

    def levels(self):
        bids = sorted(([p, q] for p, q in self.bids.items()), key=lambda l: -float(l[0]))
        asks = sorted(([p, q] for p, q in self.asks.items()), key=lambda l: float(l[0]))
        return bids, asks


async def test_snapshot_plus_diffs_rebuild_the_venue_book(live_sim):
    book = SyncedBook()
    async with aiohttp.ClientSession() as session, \
            websockets.connect(f"{live_sim.ws_url}/ws/btcusdt@depth@100ms") as ws:
        rest = RestClient(session, live_sim.base_url, *live_sim.accounts[0])
        buffered = [json.loads(await ws.recv())]
        snapshot = await rest.ok("GET", "/api/v3/depth", {"symbol": "BTCUSDT", "limit": 5000})
        assert snapshot["lastUpdateId"] >= buffered[0]["U"]
        book.load(snapshot)

        # Our own orders add churn beside the synthetic market's.
        mid = (float(snapshot["bids"][0][0]) + float(snapshot["asks"][0][0])) / 2
        deadline = time.monotonic() + 2.5
        i = 0
        while time.monotonic() < deadline:
            for event in buffered:
                book.apply(event)
            buffered = []
            try:
                buffered.append(json.loads(await asyncio.wait_for(ws.recv(), 0.2)))
            except asyncio.TimeoutError:
                pass
            if i < 10:
                await rest.ok("POST", "/api/v3/order", {
                    "symbol": "BTCUSDT", "side": "BUY" if i % 2 else "SELL", "type": "LIMIT", "timeInForce": "GTC",
                    "quantity": "0.001", "price": f"{mid * (0.999 if i % 2 else 1.001):.2f}"}, signed=True)
                i += 1

        async with session.post(f"{live_sim.base_url}/sim/v1/market", json={"paused": True}) as resp:
            assert resp.status == 200
        async with session.get(f"{live_sim.base_url}/sim/v1/book", params={"symbol": "BTCUSDT"}) as resp:
            venue_book = await resp.json()
        while book.update_id < venue_book["updateId"]:
            for event in buffered:
                book.apply(event)
            buffered = [json.loads(await asyncio.wait_for(ws.recv(), 2.0))] if book.update_id < venue_book["updateId"] else []

    assert book.update_id == venue_book["updateId"]
    bids, asks = book.levels()
    assert bids == venue_book["bids"] and asks == venue_book["asks"]
    assert len(bids) > 5 and len(asks) > 5


async def test_combined_stream_subscribe_and_trades(live_sim):
    url = f"{live_sim.ws_url}/stream?streams=btcusdt@bookTicker"
    async with websockets.connect(url) as ws:
        first = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert first["stream"] == "btcusdt@bookTicker"
        assert float(first["data"]["b"]) < float(first["data"]["a"])

        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 7}))
        await ws.send(json.dumps({"method": "UNSUBSCRIBE", "params": ["btcusdt@bookTicker"], "id": 8}))
        await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 9}))
        replies, trades = {}, []
        deadline = time.monotonic() + 10
        while (len(replies) < 3 or not trades) and time.monotonic() < deadline:
            msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if "id" in msg:
                replies[msg["id"]] = msg
            elif msg["stream"] == "btcusdt@trade":
                trades.append(msg["data"])
        assert replies[7] == {"result": None, "id": 7} and replies[8] == {"result": None, "id": 8}
        assert replies[9]["result"] == ["btcusdt@trade"]
        assert trades and trades[0]["e"] == "trade" and float(trades[0]["q"]) > 0

        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["nosuch@trade"], "id": 10}))
        while True:
            msg = json.loads(await asyncio.wait_for(ws.recv(), 5))
            if msg.get("id") == 10:
                assert msg["error"]["code"] == 2
                break


async def test_server_pings(start_sim):
    sim = start_sim("--no-market", "--ws-ping-interval", "0.3")
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{sim.ws_url}/ws/btcusdt@trade", autoping=False) as ws:
            msg = await asyncio.wait_for(ws.receive(), 5)
            assert msg.type == aiohttp.WSMsgType.PING
            await ws.pong(msg.data)
