"""Symbol status, end to end: the node's engine trading against the simulated
exchange (a real subprocess) while a drill changes the symbol's status with
`POST /sim/v1/symbol`. In any status but TRADING the node cancels its own
orders and stays halted, naming the status; a venue refusal that says the
market is closed halts it at once, before exchangeInfo is read again.

The engine runs in the test's loop (no process: what is shown is the
engine's reaction, and a node process adds only start-up time); the
periodic exchangeInfo read is set an hour apart so that what halts the node
first is the venue's own refusal.
"""
import asyncio
import time

import aiohttp
import pytest

from tests.nodeproc import node_settings, to_config
from tests.simproc import RestClient
from understudy.config import Secrets
from understudy.node.engine import NodeEngine


async def _until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def _set_status(session, sim, status: str) -> None:
    async with session.post(f"{sim.base_url}/sim/v1/symbol", json={"symbol": "BTCUSDT", "status": status}) as r:
        assert r.status == 200, await r.text()
        assert (await r.json())["status"] == status


@pytest.fixture
def flowing_sim(start_sim):
    return start_sim("--seed", "11", "--flow-rate", "12")


async def test_the_node_halts_and_cancels_outside_trading_and_resumes_when_the_venue_trades_again(
        flowing_sim, tmp_path):
    key, secret = flowing_sim.accounts[0]
    settings = node_settings(flowing_sim, tmp_path / "state", market={"exchange_info_interval_s": 3600.0})
    engine = NodeEngine(to_config(settings), Secrets(key, secret, "admin-token"))
    async with aiohttp.ClientSession() as session:
        venue = RestClient(session, flowing_sim.base_url, key, secret)

        async def own_open_orders() -> list[str]:
            listed = await venue.ok("GET", "/api/v3/openOrders", {"symbol": "BTCUSDT"}, signed=True)
            return [o["clientOrderId"] for o in listed if o["clientOrderId"].startswith("e0.sg-1.")]

        await engine.start()
        try:
            await _until(lambda: engine.quoting and len(engine.oms.working()) == 4, 10, "four quotes")

            # HALT: the venue refuses the next new order with -2010 "Market is closed."; the node halts on
            # that refusal (no exchangeInfo read is due for an hour), reads exchangeInfo at once, and
            # cancels its own orders (the venue lets cancels through in every status).
            await _set_status(session, flowing_sim, "HALT")
            halted_at = time.monotonic()
            await _until(lambda: engine.market_closed_refusals >= 1, 10, "a 'Market is closed.' refusal")
            await _until(lambda: engine.halt_reasons == ["symbol-HALT"], 2, "exchangeInfo read after the refusal")
            await _until(lambda: not engine.oms.live, 3, "own orders cancelled")
            assert await own_open_orders() == []
            assert not engine.quoting and engine.status()["venue"]["symbol_status"] == "HALT"
            refused_new = [r for r in flowing_sim.audit_records()
                           if r["action"] == "new" and r["outcome"] != "accepted" and r.get("code") == -2010]
            assert 1 <= len(refused_new) <= 4, refused_new  # the sends already under way when it halted, no more
            detection_s = time.monotonic() - halted_at
            await asyncio.sleep(0.5)  # the book keeps moving: nothing more is sent
            sent = engine.gate.sent
            await asyncio.sleep(0.5)
            assert engine.gate.sent == sent and await own_open_orders() == []

            # TRADING again: the next exchangeInfo read (here asked for at once, as the periodic loop would)
            # lifts the halt.
            await _set_status(session, flowing_sim, "TRADING")
            engine.rules_refresh.set()
            await _until(lambda: engine.quoting and len(engine.oms.working()) == 4, 5, "quotes again")

            # Every other status halts the same way, found by the periodic read alone.
            for status in ("BREAK", "CANCEL_ONLY", "END_OF_DAY"):
                await _set_status(session, flowing_sim, status)
                engine.rules_refresh.set()
                await _until(lambda: engine.halt_reasons == [f"symbol-{status}"] and not engine.oms.live, 5,
                             f"halted and cancelled in {status}")
                assert await own_open_orders() == []
                await _set_status(session, flowing_sim, "TRADING")
                engine.rules_refresh.set()
                await _until(lambda: engine.quoting and len(engine.oms.working()) == 4, 5, f"quotes after {status}")
        finally:
            await engine.stop()
    assert detection_s < 5.0
