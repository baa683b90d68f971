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
