"""Binance's `serverShutdown` notice (web-socket-streams.md and web-socket-api.md, "Server
Shutdown"), injected with POST /sim/v1/faults {"server_shutdown": {"after_ms": N}}: every open
market-stream and WebSocket API connection is told at once, keeps being served for N ms, then
closes; a connection opened after the notice stays."""
import asyncio
import json
import time

import aiohttp
import websockets

from tests.test_sim_order_lists import assert_shape, fixture

ANNOUNCE_TO_CLOSE_MS = 600


async def _until(ws, predicate, timeout_s: float = 3.0) -> dict:
    """The first JSON message satisfying predicate (bounded: fails after timeout_s)."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        assert left > 0, "no such message in time"
        message = json.loads(await asyncio.wait_for(ws.recv(), left))
        if predicate(message):
            return message


async def test_server_shutdown_is_announced_everywhere_then_the_sockets_close(live_sim):
    base, ws_base = live_sim.base_url, live_sim.ws_url
    async with aiohttp.ClientSession() as session, \
            websockets.connect(f"{ws_base}/ws/btcusdt@trade") as raw, \
            websockets.connect(f"{ws_base}/stream?streams=btcusdt@depth@100ms") as combined, \
            websockets.connect(f"{ws_base}/ws-api/v3") as api:
        await api.send(json.dumps({"id": "p", "method": "ping"}))
        assert json.loads(await api.recv())["status"] == 200  # the WebSocket API session is up

        async with session.post(f"{base}/sim/v1/faults",
                                json={"server_shutdown": {"after_ms": ANNOUNCE_TO_CLOSE_MS}}) as resp:
            assert resp.status == 200
            reply = await resp.json()
        announced_at = time.monotonic()
        assert reply["server_shutdown"] == {"after_ms": ANNOUNCE_TO_CLOSE_MS, "connections_told": 3}

        raw_notice = await _until(raw, lambda m: m.get("e") == "serverShutdown")
        assert_shape(raw_notice, fixture("server_shutdown_stream_raw.json"))
        assert abs(raw_notice["E"] - time.time() * 1000) < 5000
        combined_notice = await _until(combined, lambda m: m.get("stream") == "!serverShutdown")
        assert_shape(combined_notice, fixture("server_shutdown_stream_combined.json"))
        assert combined_notice["data"]["e"] == "serverShutdown"
        api_notice = await _until(api, lambda m: "event" in m)
        assert_shape(api_notice, fixture("server_shutdown_ws_api.json"))
        assert api_notice["event"]["e"] == "serverShutdown"

        # Told, not yet cut off: the old connection keeps its market data and its API.
        diff = await _until(combined, lambda m: m.get("stream") == "btcusdt@depth@100ms")
        assert diff["data"]["e"] == "depthUpdate"
        await api.send(json.dumps({"id": "t", "method": "time"}))
        assert (await _until(api, lambda m: m.get("id") == "t"))["status"] == 200

        async with websockets.connect(f"{ws_base}/ws/btcusdt@depth@100ms") as successor:
            for ws in (raw, combined, api):
                await asyncio.wait_for(ws.wait_closed(), ANNOUNCE_TO_CLOSE_MS / 1000 + 3)
                assert ws.close_code == 1001
            closed_after_s = time.monotonic() - announced_at
            assert closed_after_s >= ANNOUNCE_TO_CLOSE_MS / 1000 - 0.05
            # The connection opened after the notice is the new server's: it stays, and is not told.
            message = await _until(successor, lambda m: True)
            assert message["e"] == "depthUpdate"


async def test_server_shutdown_refuses_a_malformed_request(quiet_sim):
    async with aiohttp.ClientSession() as session:
        for body in ({"server_shutdown": {}}, {"server_shutdown": {"after_ms": -1}},
                     {"server_shutdown": {"after_ms": "5"}}, {"server_shutdown": 5}):
            async with session.post(f"{quiet_sim.base_url}/sim/v1/faults", json=body) as resp:
                assert resp.status == 400, body
