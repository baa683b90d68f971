"""Binance's serverShutdown, end to end: a node process trades against the
simulated exchange, and the sim announces `serverShutdown` on every market
stream and WebSocket API connection (the node's: it is the only client),
closing them a moment later (`POST /sim/v1/faults {"server_shutdown":
{"after_ms": N}}`). The node must have moved to new connections before the
old ones close, with no gap: the book is never resynced (the diff-depth
sequence continues on the new connection), neither stream reconnects cold,
and every fill the venue made is one the node saw on its user stream."""
import asyncio
import signal
import time
from decimal import Decimal

import aiohttp
import pytest

from tests.nodeproc import NodeProcess, node_env, node_settings, to_toml

CLOSE_AFTER_MS = 2000


@pytest.fixture
def busy_sim(start_sim):
    return start_sim("--seed", "11", "--flow-rate", "12")


async def _status(session, node) -> dict:
    async with session.get(f"{node.admin_url}/status") as resp:
        return await resp.json()


async def _post(session, url: str, body: dict) -> dict:
    async with session.post(url, json=body) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def test_server_shutdown_hands_both_streams_over_before_the_close_with_no_gap(busy_sim, tmp_path):
    config = tmp_path / "node.toml"
    config.write_text(to_toml(node_settings(busy_sim, tmp_path / "state")))
    node = NodeProcess(config, node_env(busy_sim), tmp_path / "node.log").start()
    try:
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 15
            while True:
                before = await _status(session, node)
                if before["strategy"]["quoting"] and before["fills"]["count"] >= 1:
                    break
                assert time.monotonic() < deadline, f"no quotes and fills: {before}"
                await asyncio.sleep(0.1)

            announced = await _post(session, f"{busy_sim.base_url}/sim/v1/faults",
                                    {"server_shutdown": {"after_ms": CLOSE_AFTER_MS}})
            closes_at = time.monotonic() + CLOSE_AFTER_MS / 1000
            assert announced["server_shutdown"]["connections_told"] == 2  # the node's market stream and WS API

            # Both streams on new connections before the old ones close.
            while True:
                during = await _status(session, node)
                streams = during["venue"]["streams"]
                if streams["market_handovers"] >= 1 and streams["user_handovers"] >= 1:
                    handed_over_at = time.monotonic()
                    break
                assert time.monotonic() < closes_at, f"not handed over before the close: {streams}"
                await asyncio.sleep(0.05)
            await asyncio.sleep(max(0.0, closes_at - time.monotonic()) + 0.7)  # the sim has closed the old ones

            after = await _status(session, node)
            s0, s1 = before["venue"]["streams"], after["venue"]["streams"]
            assert (s1["market_shutdown_notices"], s1["user_shutdown_notices"]) == (1, 1)
            assert (s1["market_handovers"], s1["user_handovers"]) == (1, 1)
            assert (s1["market_reconnects"], s1["user_reconnects"]) == (s0["market_reconnects"], s0["user_reconnects"])
            assert after["market"]["resyncs"] == before["market"]["resyncs"]  # the book was never resynced
            assert after["ws"] == {**after["ws"], "market": True, "user": True, "book": "live"}
            assert after["strategy"]["quoting"], after["strategy"]
            assert after["market"]["update_id"] > during["market"]["update_id"]  # fed by the new connection

            # No missed fill: with the market paused nothing more trades; every quantity the venue
            # executed for the node's orders is one the node counted from its user stream.
            await _post(session, f"{busy_sim.base_url}/sim/v1/market", {"paused": True})
            await asyncio.sleep(0.5)
            final = await _status(session, node)
            seen = Decimal(str(final["fills"]["bought"])) + Decimal(str(final["fills"]["sold"]))
            node.signal(signal.SIGTERM)
            assert node.wait(15) == 0
            await _post(session, f"{busy_sim.base_url}/sim/v1/audit/sync", {})
    finally:
        node.stop()
    done = [r for r in busy_sim.audit_records("order_done") if r["client_order_id"].startswith("e0.sg-1.")]
    executed = sum((Decimal(r["executed_qty"]) for r in done), Decimal(0))
    assert executed > 0 and abs(seen - executed) < Decimal("1e-8"), (seen, executed)
    assert handed_over_at < closes_at
    handovers = [r for r in node.log_records() if r.get("event", "").endswith("handed over to a new connection")]
    assert len(handovers) == 2 and all(not r.get("gap", False) for r in handovers), handovers
    assert not [r for r in node.log_records() if r.get("event") == "depth sequence gap, resyncing"]


async def test_a_shutdown_that_closes_at_once_costs_at_most_a_resync_and_a_reconcile(live_sim):
    """The degraded case: the venue closes right after announcing, before any new connection can be
    ready. The streams still recover on their own: the book is consistent with the venue's again
    (through a resync if events were missed) and the user stream says a reconcile is due."""
    from understudy.node.book import LocalBook
    from understudy.node.marketdata import MarketData
    from understudy.node.rest import VenueRest
    from understudy.node.userstream import UserStream

    async with aiohttp.ClientSession() as session:
        rest = VenueRest(session, live_sim.base_url, *live_sim.accounts[0])
        book = LocalBook("BTCUSDT")
        md = MarketData(book, rest, live_sim.ws_url, "100ms", 5000, lambda: None)
        resubscribed = []
        us = UserStream(f"{live_sim.ws_url}/ws-api/v3", *live_sim.accounts[0], lambda e: None, lambda e: None,
                        lambda: resubscribed.append(time.monotonic()))
        stop = asyncio.Event()
        tasks = [asyncio.create_task(md.run(stop)), asyncio.create_task(us.run(stop))]

        async def until(predicate, what: str, timeout: float = 5.0):
            deadline = time.monotonic() + timeout
            while not predicate():
                assert time.monotonic() < deadline, f"timed out waiting for {what}"
                await asyncio.sleep(0.02)

        try:
            await until(lambda: book.is_live() and us.connected, "first sync")
            await _post(session, f"{live_sim.base_url}/sim/v1/faults", {"server_shutdown": {"after_ms": 0}})
            await until(lambda: md.shutdown_notices == 1 and us.shutdown_notices == 1, "the notices")
            await until(lambda: (md.handovers + md.reconnects) >= 1 and (us.handovers + us.reconnects) >= 1,
                        "new connections")
            await until(lambda: book.is_live() and us.connected and md.connected, "streams back")
            assert len(resubscribed) == 2  # the first subscription, and the one after the gap: reconcile
            await _post(session, f"{live_sim.base_url}/sim/v1/market", {"paused": True})
            async with session.get(f"{live_sim.base_url}/sim/v1/book", params={"symbol": "BTCUSDT"}) as r:
                venue = await r.json()
            await until(lambda: book.update_id >= venue["updateId"], "catching up")
            assert book.update_id == venue["updateId"]
            assert book.bids == {float(p): float(q) for p, q in venue["bids"]}
            assert book.asks == {float(p): float(q) for p, q in venue["asks"]}
        finally:
            stop.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
