"""The node's venue-facing parts against the simulated exchange over real
sockets: book sync and resync, and the order path through the lease gate."""
import asyncio
import dataclasses
import msgspec
import math
import time

import aiohttp
import pytest

from understudy.coordinator.lease import Lease
from understudy.node import venue_errors as ve
from understudy.node.book import LocalBook
from understudy.node.filters import AccountContext
from understudy.node.client_ids import ClientIdFactory
from understudy.node.instrument import Instrument
from understudy.node.marketdata import MarketData
from understudy.node.oms import ManagedOrder, Oms, Status
from understudy.node.venue_clock import VenueClock
from understudy.node.order_gate import NotPermitted, OrderGate
from understudy.node.rest import VenueRest
from understudy.node.risk import RiskView
from understudy.node.userstream import UserStream
from tests.nodeproc import node_settings, to_config
from tests.simproc import RestClient


async def _until(predicate, timeout: float = 5.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def test_book_resyncs_after_a_sequence_gap(live_sim):
    async with aiohttp.ClientSession() as session:
        rest = VenueRest(session, live_sim.base_url, *live_sim.accounts[0])
        book = LocalBook("BTCUSDT")
        updates = []
        md = MarketData(book, rest, live_sim.ws_url, "100ms", 5000, lambda: updates.append(1))
        stop = asyncio.Event()
        task = asyncio.create_task(md.run(stop))
        try:
            await _until(book.is_live, what="first sync")
            assert book.resyncs == 0
            async with session.post(f"{live_sim.base_url}/sim/v1/faults", json={"drop_depth_events": 2}) as r:
                assert r.status == 200
            await _until(lambda: book.resyncs >= 1, what="gap detection")
            await _until(book.is_live, what="resync")

            async with session.post(f"{live_sim.base_url}/sim/v1/market", json={"paused": True}):
                pass
            async with session.get(f"{live_sim.base_url}/sim/v1/book", params={"symbol": "BTCUSDT"}) as r:
                venue = await r.json()
            await _until(lambda: book.update_id >= venue["updateId"], what="catching up")
            assert book.update_id == venue["updateId"]
            assert book.bids == {float(p): float(q) for p, q in venue["bids"]}
            assert book.asks == {float(p): float(q) for p, q in venue["asks"]}
            assert book.best_bid == float(venue["bids"][0][0]) and book.best_ask == float(venue["asks"][0][0])
            assert md.malformed == 0 and updates
        finally:
            stop.set()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


class Harness:
    """The node's order path, wired as the engine wires it, with the risk
    view and the lease under the test's control."""

    def __init__(self, sim, session, tmp_path):
        self.config = to_config(node_settings(sim, tmp_path))
        self.rest = VenueRest(session, sim.base_url, *sim.accounts[0])
        self.oms = Oms("sg-1")
        self.ids = ClientIdFactory("sg-1", 1)
        self.lease: Lease | None = Lease.solo(3)
        self.view = RiskView(mid=60000.0, book_age_s=0.1, position=0.0, open_orders=0, open_buy_qty=0.0,
                             open_sell_qty=0.0, daily_pnl=0.0, panic=False)
        self.fills = []
        self.stream = UserStream(f"{sim.ws_url}/ws-api/v3", *sim.accounts[0], self._on_execution, lambda e: None,
                                 lambda: None)
        self.stop = asyncio.Event()

    def account(self) -> AccountContext:
        """What the engine would tell the gate: its own open orders, and the book's mid as the
        reference price of PERCENT_PRICE_BY_SIDE."""
        open_orders, buy_qty, _ = self.oms.exposure()
        return AccountContext(open_orders=open_orders, base_held=10.0, open_buy_qty=buy_qty,
                              reference_price=self.view.mid)

    def _on_execution(self, report):
        fill = self.oms.on_execution(report, time.monotonic())
        if fill:
            self.fills.append(fill)

    async def start(self):
        self.instrument = Instrument.from_exchange_info(await self.rest.exchange_info("BTCUSDT"), "BTCUSDT")
        self.venue_clock = VenueClock(max_uncertainty_ms=50, max_age_s=60)
        sent_at = time.monotonic()
        server_ms = await self.rest.server_time()
        self.venue_clock.on_round_trip(sent_at, server_ms, time.monotonic())
        self.gate = OrderGate(self.rest, self.instrument, self.oms, self.config.risk, lambda: self.lease,
                              lambda: self.view, 80, self.venue_clock, 5000, account_context=self.account)
        self.task = asyncio.create_task(self.stream.run(self.stop))
        await asyncio.wait_for(self.stream.subscribed.wait(), 5)
        return self

    async def close(self):
        self.stop.set()
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)

    def order(self, side: str, price: float, qty: float, epoch: int = 3) -> ManagedOrder:
        ticks, steps = self.instrument.price_ticks(price, side), self.instrument.qty_steps(qty)
        return ManagedOrder(self.ids.next(epoch), side, ticks, steps, ticks * self.instrument.tick_size,
                            steps * self.instrument.step_size, epoch, 0, time.monotonic())


@pytest.fixture
async def harness(quiet_sim, tmp_path):
    async with aiohttp.ClientSession() as session:
        h = await Harness(quiet_sim, session, tmp_path).start()
        try:
            yield h
        finally:
            await h.close()


async def test_order_lifecycle_with_partial_fills(harness, quiet_sim):
    taker = RestClient(harness.rest._session, quiet_sim.base_url, *quiet_sim.accounts[1])
    order = harness.order("SELL", 60000.0, 0.003)
    await harness.gate.send(order)
    assert order.status is Status.NEW and order.order_id is not None
    assert order.client_id.startswith("e3.sg-1.")

    await taker.ok("POST", "/api/v3/order", {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT",
                                             "timeInForce": "IOC", "quantity": "0.001", "price": "60000"}, signed=True)
    await _until(lambda: order.status is Status.PARTIALLY_FILLED, what="partial fill")
    assert math.isclose(order.filled, 0.001) and len(harness.fills) == 1
    assert (harness.fills[0].price, harness.fills[0].is_maker) == (60000.0, True)

    await taker.ok("POST", "/api/v3/order", {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET",
                                             "quantity": "0.0015"}, signed=True)
    await _until(lambda: math.isclose(order.filled, 0.0025), what="second fill")
    assert order.status is Status.PARTIALLY_FILLED

    harness.oms.on_cancel_sent(order.client_id, time.monotonic())
    reply = await harness.rest.cancel_order("BTCUSDT", order.client_id)
    harness.oms.on_cancelled(order.client_id, reply.executedQty, time.monotonic())
    assert order.status is Status.CANCELED and harness.oms.get(order.client_id) is None
    with pytest.raises(ve.UnknownOrder):  # a repeated cancel is harmless, and says so
        await harness.rest.cancel_order("BTCUSDT", order.client_id)


async def test_venue_rejections_reach_the_oms(harness, quiet_sim):
    other = RestClient(harness.rest._session, quiet_sim.base_url, *quiet_sim.accounts[1])
    await other.ok("POST", "/api/v3/order", {"symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT",
                                             "timeInForce": "GTC", "quantity": "0.001", "price": "60010"}, signed=True)
    crossing = harness.order("BUY", 60010.0, 0.001)
    with pytest.raises(ve.OrderRejected) as exc:
        await harness.gate.send(crossing)  # LIMIT_MAKER: a quote must never take
    assert exc.value.code == -2010 and crossing.status is Status.REJECTED

    too_small = harness.order("BUY", 59950.0, 0.00001)  # 0.60 USDT: under the NOTIONAL filter
    with pytest.raises(NotPermitted, match="filter-NOTIONAL"):
        await harness.gate.send(too_small)  # the node knows the venue's filters: refused before sending
    # With the node's own check out of the way, the venue's refusal still reaches the OMS (the backstop).
    harness.gate.set_instrument(dataclasses.replace(harness.instrument, rules=None))
    too_small = harness.order("BUY", 59950.0, 0.00001)
    with pytest.raises(ve.FilterFailure):
        await harness.gate.send(too_small)
    assert too_small.status is Status.REJECTED
    assert harness.oms.outcomes == {"REJECTED": 2}


async def test_the_gate_refuses_without_a_valid_lease(harness, quiet_sim):
    now = time.monotonic()
    harness.lease = Lease(3, now - 0.001)  # the safe deadline has just passed
    expired = harness.order("BUY", 59950.0, 0.001)
    with pytest.raises(NotPermitted, match="lease-expired"):
        await harness.gate.send(expired)

    harness.lease = Lease.solo(4)
    stale = harness.order("BUY", 59950.0, 0.001, epoch=3)
    with pytest.raises(NotPermitted, match="stale-epoch"):
        await harness.gate.send(stale)

    harness.lease = None
    with pytest.raises(NotPermitted, match="no-lease"):
        await harness.gate.send(harness.order("BUY", 59950.0, 0.001))

    harness.lease = Lease.solo(3)
    harness.view = msgspec.structs.replace(harness.view, panic=True)
    with pytest.raises(NotPermitted, match="panic-stop"):
        await harness.gate.send(harness.order("BUY", 59950.0, 0.001))

    assert harness.gate.refusals == {"lease-expired": 1, "stale-epoch": 1, "no-lease": 1, "panic-stop": 1}
    assert harness.gate.sent == 0 and not harness.oms.live
    assert quiet_sim.audit_records() == []  # nothing reached the venue


def test_only_the_gate_sends_orders():
    """Every order-creating request passes one gate: no other module may call
    the unguarded send, and no module but rest.py may name the order endpoint
    with POST."""
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1] / "understudy"
    callers = sorted(str(p.relative_to(root)) for p in root.rglob("*.py")
                     if "_post_order_unguarded(" in p.read_text() and p.name != "rest.py")
    assert callers == ["node/order_gate.py"]
    posting = sorted(str(p.relative_to(root)) for p in root.rglob("*.py")
                     if '"POST", "/api/v3/order"' in p.read_text())
    assert posting == ["node/rest.py"]


# (limit, risk view change, order side, price, qty): each breaks exactly one limit of node_settings():
# max_position 0.01, max_order_notional 500, max_open_orders 6, price_band_bps 50, max_book_age_s 2,
# daily_loss_limit 500.
RISK_CASES = [
    ("stale-book", {"book_age_s": 2.5}, "BUY", 59950.0, 0.001),
    ("stale-book", {"mid": None}, "BUY", 59950.0, 0.001),
    ("daily-loss-limit", {"daily_pnl": -500.0}, "BUY", 59950.0, 0.001),
    ("max-order-notional", {}, "BUY", 59950.0, 0.0084),
    ("max-open-orders", {"open_orders": 6}, "BUY", 59950.0, 0.001),
    ("price-band", {}, "BUY", 59690.0, 0.001),
    ("price-band", {}, "SELL", 60310.0, 0.001),
    ("max-position", {"position": 0.009, "open_buy_qty": 0.0005}, "BUY", 59950.0, 0.001),
    ("max-position", {"position": -0.0095}, "SELL", 60050.0, 0.001),
]


@pytest.mark.parametrize("limit, change, side, price, qty", RISK_CASES)
async def test_every_risk_limit_refuses_at_the_gate(harness, quiet_sim, limit, change, side, price, qty):
    harness.view = msgspec.structs.replace(harness.view, **change)
    refused = harness.order(side, price, qty)
    with pytest.raises(NotPermitted) as exc:
        await harness.gate.send(refused)
    assert exc.value.reason == limit
    assert quiet_sim.audit_records() == []
    assert harness.oms.get(refused.client_id) is None

    # The same order just inside the limit goes through to the venue.
    harness.view = RiskView(mid=60000.0, book_age_s=0.1, position=0.0, open_orders=0, open_buy_qty=0.0,
                            open_sell_qty=0.0, daily_pnl=0.0, panic=False)
    inside_price = {"price-band": 60000.0 * (1 - 0.0049) if side == "BUY" else 60000.0 * (1 + 0.0049)}.get(limit, price)
    inside_qty = 0.008 if limit == "max-order-notional" else qty
    accepted = harness.order(side, inside_price, inside_qty)
    await harness.gate.send(accepted)
    assert accepted.status is Status.NEW
    assert [r["client_order_id"] for r in quiet_sim.audit_records()] == [accepted.client_id]


# -- the recvWindow fence: the venue itself refuses an order that outlives its lease -------
async def _matching_delay(harness, sim, ms: int) -> None:
    async with harness.rest._session.post(f"{sim.base_url}/sim/v1/faults", json={"matching_delay_ms": ms}) as resp:
        assert resp.status == 200, await resp.text()


async def test_an_order_reaching_the_matching_engine_after_its_lease_is_refused_by_the_venue(harness, quiet_sim):
    await _matching_delay(harness, quiet_sim, 400)
    harness.lease = Lease(3, time.monotonic() + 0.25)  # ends while the order waits for the matching engine
    order = harness.order("SELL", 60100.0, 0.001)
    with pytest.raises(ve.TimestampRejected) as refused:
        await harness.gate.send(order)
    assert refused.value.code == -1021
    assert order.status is Status.REJECTED
    records = [r for r in quiet_sim.audit_records(None) if r.get("client_order_id") == order.client_id]
    assert [(r["outcome"], r["code"]) for r in records] == [("rejected", -1021)]
    assert float(records[0]["recv_window_ms"]) <= 250.0

    # The same delay with a lease that outlasts it: accepted.
    harness.lease = Lease(3, time.monotonic() + 2.0)
    order = harness.order("SELL", 60100.0, 0.001)
    await harness.gate.send(order)
    assert order.status is Status.NEW
    await _matching_delay(harness, quiet_sim, 0)


async def test_no_order_leaves_without_a_venue_clock_or_with_too_little_lease_left(harness):
    harness.lease = Lease(3, time.monotonic() + 0.003)  # under the fence's minimum window
    with pytest.raises(NotPermitted, match="lease-too-short"):
        await harness.gate.send(harness.order("SELL", 60100.0, 0.001))
    harness.lease = Lease.solo(3)
    harness.venue_clock._samples.clear()
    with pytest.raises(NotPermitted, match="venue-clock-unknown"):
        await harness.gate.send(harness.order("SELL", 60100.0, 0.001))
    assert harness.gate.sent == 0


async def test_an_order_amended_at_the_venue_takes_its_new_quantity_and_its_new_client_id(harness, quiet_sim):
    """Someone (an operator's tool) reduces one of the node's orders with order amend keep priority:
    the REPLACED report sets the order's quantity, and the amendment's new client id (the venue gives
    one unless told otherwise) is how the OMS knows the order from then on."""
    order = harness.order("SELL", 60100.0, 0.004)
    original_id = order.client_id
    await harness.gate.send(order)
    amender = RestClient(harness.rest._session, quiet_sim.base_url, *quiet_sim.accounts[0])
    status, body, _ = await amender.request("PUT", "/api/v3/order/amend/keepPriority",
                                            {"symbol": "BTCUSDT", "origClientOrderId": order.client_id,
                                             "newQty": "0.0025"}, signed=True)
    assert status == 200, body
    renamed = body["amendedOrder"]["clientOrderId"]
    assert renamed != order.client_id
    await _until(lambda: harness.oms.get(renamed) is not None, what="the REPLACED report")
    assert harness.oms.get(original_id) is None and order.client_id == renamed
    assert math.isclose(order.qty, 0.0025) and order.qty_steps == 250 and harness.oms.amendments == 1
    assert math.isclose(harness.oms.exposure().sell_qty, 0.0025)


async def test_the_order_count_limit_holds_back_new_orders_only(start_sim):
    """The bug: a -1015 (the account's order-count limit, Retry-After up to 10 s) blocked every request,
    the venue clock's probes too: a throttled primary's venue went "unreachable", it halted and handed
    the lock over. Now only new orders wait; time, cancels and queries go on, as on Binance."""
    sim = start_sim("--no-market", "--orders-per-10s", "3")
    order = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.01",
             "price": "50000"}
    async with aiohttp.ClientSession() as session:
        rest = VenueRest(session, sim.base_url, *sim.accounts[0])
        into = time.time() % 10  # the sim counts in fixed 10 s windows: start well inside one
        if into > 9:
            await asyncio.sleep(10 - into + 0.05)
        for i in range(3):
            await rest._post_order_unguarded({**order, "newClientOrderId": f"limit{i}"})
        with pytest.raises(ve.RateLimited) as refused:
            await rest._post_order_unguarded({**order, "newClientOrderId": "limit3"})
        assert refused.value.code == -1015 and refused.value.retry_after_s >= 1
        sent = rest.requests_sent
        with pytest.raises(ve.RateLimited):  # held back here, not sent again into the limit
            await rest._post_order_unguarded({**order, "newClientOrderId": "limit4"})
        assert rest.requests_sent == sent
        assert await rest.server_time() > 0
        assert (await rest.cancel_order("BTCUSDT", "limit0")).clientOrderId is not None
        assert rest.blocked_until <= time.monotonic() < rest.orders_blocked_until
