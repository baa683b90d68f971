"""The matching engine without I/O: priority, settlement, conservation."""
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simexchange import errors
from simexchange.engine import Execution, MatchingEngine
from simexchange.symbols import make_spec
from simexchange.units import SCALE, parse_amount

U = parse_amount


def engine(fee_ppm: int = 1000) -> MatchingEngine:
    clock = itertools.count(1)
    e = MatchingEngine([make_spec("BTCUSDT")], lambda: next(clock), fee_ppm, fee_ppm)
    for key in ("a", "b", "c"):
        e.add_account(key, "secret", {"BTC": 10 * SCALE, "USDT": 1_000_000 * SCALE})
    return e


def limit(e, account, side, price, qty, tif="GTC", cid=None):
    return e.place(account, "BTCUSDT", side, "LIMIT", tif, U(price), U(qty), 0, cid or f"{account}-{e.next_order_id}")


def test_price_then_time_priority():
    e = engine()
    first = limit(e, "a", "SELL", "60010", "0.01")
    better = limit(e, "b", "SELL", "60000", "0.01")
    second = limit(e, "c", "SELL", "60010", "0.01")
    taker = limit(e, "a", "BUY", "60010", "0.025", tif="IOC")
    fills = [x.order.client_order_id for x in e.drain() if isinstance(x, Execution) and x.exec_type == "TRADE"
             and x.is_maker]
    assert fills == [better.client_order_id, second.client_order_id]  # a's own ask is skipped, not traded
    assert first.status == "EXPIRED_IN_MATCH"  # self-trade prevention: EXPIRE_MAKER
    assert (taker.status, taker.executed_qty) == ("EXPIRED", U("0.02"))


def test_limit_buy_filled_below_its_limit_refunds_the_difference():
    e = engine(fee_ppm=0)
    limit(e, "b", "SELL", "59000", "0.1")
    limit(e, "a", "BUY", "60000", "0.1")
    a = e.accounts["a"]
    assert a.free["USDT"] == U("1000000") - U("5900") and a.locked["USDT"] == 0
    assert a.free["BTC"] == U("10.1")


def test_limit_maker_and_balance_rejections_change_nothing():
    e = engine()
    limit(e, "b", "SELL", "60000", "0.1")
    before = {k: (dict(a.free), dict(a.locked)) for k, a in e.accounts.items()}
    with pytest.raises(errors.VenueError) as exc:
        e.place("a", "BTCUSDT", "BUY", "LIMIT_MAKER", "", U("60000"), U("0.01"), 0, "lm")
    assert exc.value.code == -2010
    with pytest.raises(errors.VenueError) as exc:
        limit(e, "a", "SELL", "70000", "11")
    assert exc.value.code == -2010
    assert before == {k: (dict(a.free), dict(a.locked)) for k, a in e.accounts.items()}


def test_market_buy_by_quote_amount():
    e = engine(fee_ppm=0)
    limit(e, "b", "SELL", "60000", "0.01")
    limit(e, "b", "SELL", "61000", "0.01")
    order = e.place("a", "BTCUSDT", "BUY", "MARKET", "", 0, 0, U("900"), "q")
    assert order.status == "FILLED"
    assert order.executed_qty == U("0.01") + U("0.00491")  # 600 + 299.51 of the 900 budget
    assert e.accounts["a"].locked["USDT"] == 0


def _total(e: MatchingEngine, asset: str) -> int:
    return sum(a.free.get(asset, 0) + a.locked.get(asset, 0) for a in e.accounts.values())


orders = st.lists(st.tuples(
    st.sampled_from("abc"), st.sampled_from(["BUY", "SELL"]),
    st.sampled_from(["LIMIT", "LIMIT_MAKER", "MARKET", "CANCEL"]), st.sampled_from(["GTC", "IOC", "FOK"]),
    st.integers(59_900, 60_100), st.integers(1, 400)), max_size=60)


@settings(max_examples=200, deadline=None)
@given(orders)
def test_assets_are_conserved_and_locks_match_open_orders(ops):
    e = engine(fee_ppm=1000)
    fees = {"BTC": 0, "USDT": 0}
    start = {asset: _total(e, asset) for asset in fees}
    for account, side, kind, tif, price, lots in ops:
        try:
            if kind == "CANCEL":
                mine = e.orders_of(account, "BTCUSDT")
                if mine:
                    e.cancel(account, "BTCUSDT", mine[0].order_id, None, "cx")
            elif kind == "MARKET":
                e.place(account, "BTCUSDT", side, "MARKET", "", 0, lots * 1000, 0, f"m{e.next_order_id}")
            else:
                e.place(account, "BTCUSDT", side, kind, tif if kind == "LIMIT" else "", price * SCALE, lots * 1000,
                        0, f"l{e.next_order_id}")
        except errors.VenueError:
            pass
        for x in e.drain():
            if isinstance(x, Execution) and x.exec_type == "TRADE":
                fees[x.commission_asset] += x.commission
    for asset in fees:
        assert _total(e, asset) + fees[asset] == start[asset]
    for key, account in e.accounts.items():
        open_orders = e.orders_of(key, "BTCUSDT")
        assert account.locked["USDT"] == sum(o.locked for o in open_orders if o.is_buy)
        assert account.locked["BTC"] == sum(o.locked for o in open_orders if not o.is_buy)
        assert all(v >= 0 for v in account.free.values())
    book = e.books["BTCUSDT"]
    bid, _, ask, _ = book.top()
    assert bid is None or ask is None or bid < ask
    for side in (book.bids, book.asks):
        for price, queue in side.queues.items():
            assert side.totals[price] == sum(o.remaining for o in queue) > 0


# -- order lists --------------------------------------------------------------------
from simexchange.engine import ListStatus  # noqa: E402
from simexchange.orderlist import Leg  # noqa: E402


def oco(e, account, side, limit_price, stop_price, stop_limit=None, qty="0.01", tag=None):
    tag = tag or f"{account}-{e.next_order_id}"
    stop = Leg("STOP_LOSS_LIMIT" if stop_limit else "STOP_LOSS", U(stop_limit) if stop_limit else 0, U(stop_price),
               "GTC" if stop_limit else "", f"{tag}-stop")
    maker = Leg("LIMIT_MAKER", U(limit_price), 0, "", f"{tag}-maker")
    above, below = (maker, stop) if side == "SELL" else (stop, maker)
    return e.place_oco(account, "BTCUSDT", side, U(qty), above, below, f"{tag}-list")


def test_oco_stop_triggers_on_the_last_trade_and_its_sibling_expires():
    e = engine(fee_ppm=0)
    ol = oco(e, "a", "SELL", "61000", "59000", stop_limit="58900")
    stop, maker = ol.orders
    assert (stop.pending, maker.status, e.accounts["a"].locked["BTC"]) == (True, "NEW", U("0.01"))
    limit(e, "c", "BUY", "59500", "0.01")
    limit(e, "b", "SELL", "59500", "0.01")  # a trade at 59500: above the stop, nothing happens
    assert stop.pending and ol.is_open
    limit(e, "c", "BUY", "58950", "0.02")
    limit(e, "b", "SELL", "58950", "0.01")  # 58950 reaches the 59000 stop
    assert (maker.status, stop.status, stop.executed_qty, ol.list_order_status) == (
        "EXPIRED", "FILLED", U("0.01"), "ALL_DONE")
    assert e.accounts["a"].locked["BTC"] == 0 and e.accounts["a"].free["BTC"] == U("9.99")
    statuses = [(x.status_type, x.order_status) for x in e.drain() if isinstance(x, ListStatus)]
    assert statuses == [("EXEC_STARTED", "EXECUTING"), ("ALL_DONE", "ALL_DONE")]


def test_a_fill_of_the_limit_leg_expires_the_stop_and_the_rest_keeps_working():
    e = engine(fee_ppm=0)
    ol = oco(e, "a", "BUY", "59000", "61000")
    stop, maker = ol.orders
    assert e.accounts["a"].locked["USDT"] == U("610")  # the dearer leg: 0.01 at the 61000 stop
    limit(e, "b", "SELL", "59000", "0.004")
    assert (stop.status, maker.status, ol.is_open) == ("EXPIRED", "PARTIALLY_FILLED", False)
    assert e.pending_stops["BTCUSDT"] == []
    limit(e, "b", "SELL", "61000", "0.01")
    limit(e, "c", "BUY", "61000", "0.01")  # the expired stop does not come back
    assert stop.executed_qty == 0
    e.cancel("a", "BTCUSDT", maker.order_id, None, "cx")
    assert e.accounts["a"].locked["USDT"] == 0


def test_cancelling_one_leg_cancels_its_list():
    e = engine()
    ol = oco(e, "a", "SELL", "61000", "59000")
    e.cancel("a", "BTCUSDT", None, ol.orders[1].client_order_id, "cx")
    assert [o.status for o in ol.orders] == ["CANCELED", "CANCELED"] and not ol.is_open
    assert e.pending_stops["BTCUSDT"] == [] and e.accounts["a"].locked["BTC"] == 0
    with pytest.raises(errors.VenueError) as exc:
        e.cancel_order_list("a", "BTCUSDT", ol.order_list_id, None, "cx")
    assert exc.value.code == -2011


oco_ops = st.lists(st.tuples(
    st.sampled_from("abc"), st.sampled_from(["BUY", "SELL"]),
    st.sampled_from(["LIMIT", "MARKET", "OCO", "OCO_LIMIT", "CANCEL", "CANCEL_ALL"]),
    st.integers(59_000, 61_000), st.integers(1, 400)), max_size=60)


@settings(max_examples=150, deadline=None)
@given(oco_ops)
def test_with_order_lists_assets_are_conserved_and_locks_match_open_orders(ops):
    e = engine(fee_ppm=1000)
    fees = {"BTC": 0, "USDT": 0}
    start = {asset: _total(e, asset) for asset in fees}
    for account, side, kind, price, lots in ops:
        try:
            if kind == "CANCEL":
                mine = e.orders_of(account, "BTCUSDT")
                if mine:
                    e.cancel(account, "BTCUSDT", mine[-1].order_id, None, "cx")
            elif kind == "CANCEL_ALL":
                e.cancel_all(account, "BTCUSDT", lambda: "cx")
            elif kind == "MARKET":
                e.place(account, "BTCUSDT", side, "MARKET", "", 0, lots * 1000, 0, f"m{e.next_order_id}")
            elif kind == "LIMIT":
                e.place(account, "BTCUSDT", side, "LIMIT", "GTC", price * SCALE, lots * 1000, 0, f"l{e.next_order_id}")
            else:
                last = e.last_price.get("BTCUSDT", 60_000 * SCALE) // SCALE
                away = price % 500 + 1
                maker, stop = (last + away, last - away) if side == "SELL" else (last - away, last + away)
                oco(e, account, side, str(maker), str(stop), qty=f"{lots / 100_000:.5f}",
                    stop_limit=str(stop - 10 if side == "SELL" else stop + 10) if kind == "OCO_LIMIT" else None)
        except errors.VenueError:
            pass
        for x in e.drain():
            if isinstance(x, Execution) and x.exec_type == "TRADE":
                fees[x.commission_asset] += x.commission
    for asset in fees:
        assert _total(e, asset) + fees[asset] == start[asset]
    for key, account in e.accounts.items():
        open_orders = e.orders_of(key, "BTCUSDT")
        assert account.locked["USDT"] == sum(o.locked for o in open_orders if o.is_buy)
        assert account.locked["BTC"] == sum(o.locked for o in open_orders if not o.is_buy)
        assert all(v >= 0 for v in account.free.values())
    for ol in e.order_lists.values():
        legs_open = [o.is_open for o in ol.orders]
        # An open list has both legs open; a finished one at most the leg that started working.
        assert legs_open == [True, True] if ol.is_open else sum(legs_open) <= 1
        assert ol.is_open or not any(o.pending for o in ol.orders)
    assert all(o.pending and o.is_open for o in e.pending_stops["BTCUSDT"])
    bid, _, ask, _ = e.books["BTCUSDT"].top()
    assert bid is None or ask is None or bid < ask
