"""Unit tests for the node's pure, sans-I/O logic: the local order book, the
strategy, pre-trade risk, the OMS state machine, client order ids, the
account state and the lease arithmetic. No network, no sleeps, no clocks:
every `now` is passed in.
"""
import math
import re

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from understudy.config import RiskSection, StrategySection
from understudy.coordinator.lease import Lease
from understudy.node import client_ids
from understudy.node.account import AccountState, DayReference
from understudy.node.book import BUFFER_LIMIT, Applied, BookState, LocalBook
from understudy.node.client_ids import MAX_EPOCH, ClientIdFactory, base36, parse
from understudy.node.instrument import Instrument
from understudy.node.messages import (AccountInfo, AccountPosition, Balance, BalanceRow, DepthSnapshot,
                                      DepthUpdate, ExecutionReport, ExecutionType, OpenOrder, OrderReply,
                                      OrderSide, OrderStatus, OrderType)
from understudy.node.oms import FINISHED_KEPT, TERMINAL, ManagedOrder, Oms, Status
from understudy.node.risk import OrderIntent, RiskView, check, state_problems
from understudy.node.strategy import Quote, desired_quotes, stale_quotes

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ==============================================================================
# helpers
# ==============================================================================
def upd(U: int, u: int, b=(), a=(), symbol: str = "BTCUSDT") -> DepthUpdate:
    return DepthUpdate(e="depthUpdate", E=1_700_000_000_000 + u, s=symbol, U=U, u=u, b=list(b), a=list(a))


def snap(last: int, bids=(), asks=()) -> DepthSnapshot:
    return DepthSnapshot(lastUpdateId=last, bids=list(bids), asks=list(asks))


def live_book(last: int = 100, bids=((100.0, 1.0), (99.0, 2.0)), asks=((101.0, 1.0), (102.0, 2.0)),
              now: float = 0.0) -> LocalBook:
    book = LocalBook("BTCUSDT")
    assert book.on_snapshot(snap(last, bids, asks), now) is True
    assert book.state is BookState.LIVE
    return book


BTC = Instrument("BTCUSDT", "BTC", "USDT", 0.01, 0.00001, 0.00001, 5.0)


def strategy_cfg(**over) -> StrategySection:
    raw = {"half_spread_bps": 5.0, "levels": 1, "level_gap_bps": 5.0, "order_qty": 0.001,
           "inventory_skew_bps": 10.0, "requote_tolerance_bps": 2.0}
    raw.update(over)
    return msgspec.convert(raw, StrategySection)


def risk_cfg(**over) -> RiskSection:
    raw = {"max_position": 0.01, "max_order_notional": 1000.0, "max_open_orders": 4, "price_band_bps": 100.0,
           "max_book_age_s": 2.0, "daily_loss_limit": 50.0}
    raw.update(over)
    return msgspec.convert(raw, RiskSection)


def view(**over) -> RiskView:
    raw = dict(mid=100.0, book_age_s=0.5, position=0.0, open_orders=0, open_buy_qty=0.0, open_sell_qty=0.0,
               daily_pnl=0.0, panic=False)
    raw.update(over)
    return RiskView(**raw)


NODE = "node-a"


def cid(seq: int, epoch: int = 3, node: str = NODE, boot: str = "lq2x9k0") -> str:
    return f"e{epoch}.{node}.{boot}_{base36(seq)}"


def order(client_id: str, side: str = "BUY", level: int | None = 0, qty: float = 1.0, price: float = 100.0,
          sent_at: float = 0.0, epoch: int = 3) -> ManagedOrder:
    return ManagedOrder(client_id, side, int(round(price / 0.01)), int(round(qty / 0.00001)), price, qty, epoch,
                        level, sent_at)


def report(c: str, x: str, X: str, *, i: int = 1, z: float = 0.0, l: float = 0.0, L: float = 0.0,  # noqa: E741
           t: int = -1, C: str = "", n: float = 0.0, N: str | None = None, m: bool = False,
           side: str = "BUY") -> ExecutionReport:
    return ExecutionReport(e="executionReport", E=1, s="BTCUSDT", c=c, S=OrderSide(side), o=OrderType.LIMIT_MAKER,
                           q=1.0, p=100.0, C=C, x=ExecutionType(x), X=OrderStatus(X), i=i, l=l, z=z, L=L, n=n, N=N,
                           T=1, t=t, m=m)


def reply(client_id: str, status: str = "NEW", order_id: int = 11, executed: float = 0.0) -> OrderReply:
    return OrderReply(symbol="BTCUSDT", orderId=order_id, clientOrderId=client_id, price=100.0, origQty=1.0,
                      executedQty=executed, status=OrderStatus(status))


def open_order(client_id: str, order_id: int = 77, side: str = "SELL", price: float = 101.5, qty: float = 0.5,
               executed: float = 0.0, status: str = "NEW") -> OpenOrder:
    return OpenOrder(symbol="BTCUSDT", orderId=order_id, clientOrderId=client_id, price=price, origQty=qty,
                     executedQty=executed, status=OrderStatus(status), side=OrderSide(side), type=OrderType.LIMIT_MAKER)


# ==============================================================================
# LocalBook: the snapshot + diff procedure
# ==============================================================================
class TestBookSync:
    def test_new_book_is_syncing_and_empty(self):
        book = LocalBook("BTCUSDT")
        assert book.state is BookState.SYNCING
        assert not book.is_live()
        assert book.mid() is None
        assert book.best_bid is None and book.best_ask is None
        assert book.age(123.0) == math.inf
        assert book.resyncs == 0

    def test_events_are_buffered_while_syncing(self):
        book = LocalBook("BTCUSDT")
        assert book.on_event(upd(10, 12, b=[(100.0, 1.0)]), 1.0) is Applied.BUFFERED
        assert book.on_event(upd(13, 14, a=[(101.0, 1.0)]), 1.0) is Applied.BUFFERED
        # nothing applied yet
        assert book.bids == {} and book.asks == {}
        assert book.update_id == 0
        assert book.state is BookState.SYNCING

    def test_snapshot_older_than_buffer_is_refused(self):
        book = LocalBook("BTCUSDT")
        book.on_event(upd(101, 103, b=[(100.0, 1.0)]), 1.0)
        # 99 + 1 = 100 < 101: update 100 would be missing
        assert book.on_snapshot(snap(99, [(99.0, 1.0)], [(101.0, 1.0)]), 2.0) is False
        assert book.state is BookState.SYNCING
        assert book.bids == {} and book.update_id == 0
        assert book.resyncs == 0
        # the buffer is kept: a snapshot at exactly U - 1 is accepted and the event applied
        assert book.on_snapshot(snap(100, [(99.0, 1.0)], [(101.0, 1.0)]), 3.0) is True
        assert book.state is BookState.LIVE
        assert book.update_id == 103
        assert book.bids == {99.0: 1.0, 100.0: 1.0}
        assert book.best_bid == 100.0 and book.best_ask == 101.0

    def test_snapshot_with_empty_buffer_is_accepted(self):
        book = LocalBook("BTCUSDT")
        assert book.on_snapshot(snap(500, [(10.0, 1.0), (9.0, 3.0)], [(11.0, 2.0)]), 7.0) is True
        assert book.is_live()
        assert book.update_id == 500
        assert book.bids == {10.0: 1.0, 9.0: 3.0}
        assert book.asks == {11.0: 2.0}
        assert (book.best_bid, book.best_ask) == (10.0, 11.0)
        assert book.mid() == 10.5
        assert book.updated_at == 7.0
        assert book.age(9.5) == 2.5

    def test_snapshot_drops_covered_events_and_applies_the_rest(self):
        book = LocalBook("BTCUSDT")
        book.on_event(upd(95, 97, b=[(50.0, 9.0)]), 1.0)  # fully covered: must not be applied
        book.on_event(upd(98, 101, b=[(99.5, 1.0)]), 1.0)  # straddles lastUpdateId + 1 = 101
        book.on_event(upd(102, 103, a=[(101.0, 0.0), (100.5, 4.0)]), 1.0)
        assert book.on_snapshot(snap(100, [(99.0, 1.0)], [(101.0, 1.0), (102.0, 1.0)]), 2.0) is True
        assert book.update_id == 103
        assert book.bids == {99.0: 1.0, 99.5: 1.0}
        assert 50.0 not in book.bids
        assert book.asks == {100.5: 4.0, 102.0: 1.0}
        assert (book.best_bid, book.best_ask) == (99.5, 100.5)
        assert book.resyncs == 0

    def test_snapshot_newer_than_every_buffered_event(self):
        book = LocalBook("BTCUSDT")
        book.on_event(upd(10, 11, b=[(1.0, 1.0)]), 1.0)
        book.on_event(upd(12, 13, b=[(2.0, 1.0)]), 1.0)
        assert book.on_snapshot(snap(20, [(5.0, 1.0)], [(6.0, 1.0)]), 2.0) is True
        assert book.update_id == 20
        assert book.bids == {5.0: 1.0}
        # the stream continues at 21
        assert book.on_event(upd(21, 21, b=[(5.5, 1.0)]), 3.0) is Applied.APPLIED
        assert book.best_bid == 5.5

    def test_live_event_sequencing(self):
        book = live_book(100)
        assert book.on_event(upd(95, 100, b=[(1.0, 1.0)]), 1.0) is Applied.IGNORED  # u <= 100
        assert 1.0 not in book.bids
        assert book.on_event(upd(101, 105, b=[(100.5, 1.0)]), 2.0) is Applied.APPLIED
        assert book.update_id == 105 and book.best_bid == 100.5 and book.updated_at == 2.0
        # overlapping event (U <= last + 1 <= u) is applied
        assert book.on_event(upd(103, 107, a=[(100.9, 1.0)]), 3.0) is Applied.APPLIED
        assert book.update_id == 107 and book.best_ask == 100.9
        assert book.resyncs == 0 and book.is_live()

    def test_skipped_event_is_a_gap_and_a_fresh_snapshot_recovers(self):
        book = live_book(100)
        assert book.on_event(upd(101, 101, b=[(100.2, 1.0)]), 1.0) is Applied.APPLIED
        # update 102 is lost
        assert book.on_event(upd(103, 104, b=[(100.4, 1.0)]), 2.0) is Applied.GAP
        assert book.state is BookState.SYNCING
        assert book.resyncs == 1
        assert book.on_event(upd(105, 105, a=[(100.8, 2.0)]), 2.5) is Applied.BUFFERED
        # a snapshot older than the first buffered event (103) is refused
        assert book.on_snapshot(snap(101, [(100.2, 1.0)], [(101.0, 1.0)]), 3.0) is False
        assert book.state is BookState.SYNCING
        # a fresh snapshot that covers 102 recovers, and the buffered events are replayed
        fresh = snap(102, [(100.3, 7.0), (99.0, 1.0)], [(101.0, 1.0)])
        assert book.on_snapshot(fresh, 4.0) is True
        assert book.is_live()
        assert book.update_id == 105
        assert book.bids == {100.3: 7.0, 99.0: 1.0, 100.4: 1.0}
        assert book.asks == {101.0: 1.0, 100.8: 2.0}
        assert (book.best_bid, book.best_ask) == (100.4, 100.8)
        assert book.resyncs == 1
        assert book.on_event(upd(106, 106, b=[(100.4, 0.0)]), 5.0) is Applied.APPLIED
        assert book.best_bid == 100.3

    def test_gap_inside_the_buffer_fails_the_snapshot(self):
        book = LocalBook("BTCUSDT")
        book.on_event(upd(101, 101, b=[(1.0, 1.0)]), 1.0)
        book.on_event(upd(103, 103, b=[(2.0, 1.0)]), 1.0)  # 102 missing
        assert book.on_snapshot(snap(100, [(0.5, 1.0)], [(3.0, 1.0)]), 2.0) is False
        assert book.state is BookState.SYNCING
        assert book.resyncs == 1

    def test_gap_during_replay_keeps_the_rest_of_the_buffer(self):
        book = LocalBook("BTCUSDT")
        book.on_event(upd(10, 10, b=[(1.0, 1.0)]), 1.0)
        book.on_event(upd(12, 12, b=[(2.0, 1.0)]), 1.0)  # 11 missing from the stream
        book.on_event(upd(13, 13, b=[(3.0, 1.0)]), 1.0)
        book.on_event(upd(14, 14, b=[(4.0, 1.0)]), 1.0)
        assert book.on_snapshot(snap(9, [(0.5, 1.0)], [(9.0, 1.0)]), 2.0) is False  # gap at 12
        # a snapshot at 12 covers the hole; events 13 and 14 were received and must be replayed
        assert book.on_snapshot(snap(12, [(0.5, 1.0), (2.0, 1.0)], [(9.0, 1.0)]), 3.0) is True
        assert book.update_id == 14
        assert book.bids == {0.5: 1.0, 2.0: 1.0, 3.0: 1.0, 4.0: 1.0}
        assert book.on_event(upd(15, 15, b=[(5.0, 1.0)]), 4.0) is Applied.APPLIED

    def test_reset_returns_to_syncing_without_counting_a_resync(self):
        book = live_book(100)
        book.reset()
        assert book.state is BookState.SYNCING
        assert book.resyncs == 0
        assert book.on_event(upd(500, 501), 1.0) is Applied.BUFFERED
        book.reset()  # the buffer is dropped too: any snapshot is accepted
        assert book.on_snapshot(snap(50, [(1.0, 1.0)], [(2.0, 1.0)]), 2.0) is True
        assert book.update_id == 50

    def test_buffer_limit_restarts_buffering(self):
        book = LocalBook("BTCUSDT")
        for n in range(1, BUFFER_LIMIT + 1):
            book.on_event(upd(n, n), 0.0)
        assert len(book._buffer) == BUFFER_LIMIT
        assert book.on_event(upd(BUFFER_LIMIT + 1, BUFFER_LIMIT + 1, b=[(1.0, 1.0)]), 0.0) is Applied.BUFFERED
        assert len(book._buffer) == 1
        # the buffer now starts at BUFFER_LIMIT + 1, so a snapshot at 1 is too old
        assert book.on_snapshot(snap(1), 1.0) is False
        assert book.on_snapshot(snap(BUFFER_LIMIT), 1.0) is True
        assert book.update_id == BUFFER_LIMIT + 1
        assert book.bids == {1.0: 1.0}


class TestBookLevels:
    def test_adding_a_better_level_moves_best(self):
        book = live_book()
        book.on_event(upd(101, 101, b=[(100.5, 1.0)], a=[(100.7, 1.0)]), 1.0)
        assert (book.best_bid, book.best_ask) == (100.5, 100.7)
        assert book.mid() == pytest.approx(100.6)

    def test_worse_level_does_not_move_best(self):
        book = live_book()
        book.on_event(upd(101, 101, b=[(98.0, 5.0)], a=[(103.0, 5.0)]), 1.0)
        assert (book.best_bid, book.best_ask) == (100.0, 101.0)
        assert book.bids[98.0] == 5.0 and book.asks[103.0] == 5.0

    def test_deleting_best_rescans(self):
        book = live_book()
        book.on_event(upd(101, 101, b=[(100.0, 0.0)], a=[(101.0, 0.0)]), 1.0)
        assert (book.best_bid, book.best_ask) == (99.0, 102.0)
        assert 100.0 not in book.bids and 101.0 not in book.asks

    def test_delete_best_then_add_lower_in_one_event(self):
        book = live_book()
        book.on_event(upd(101, 101, b=[(100.0, 0.0), (99.5, 1.0)], a=[(101.0, 0.0), (101.5, 1.0)]), 1.0)
        assert (book.best_bid, book.best_ask) == (99.5, 101.5)

    def test_add_then_delete_same_level_in_one_event(self):
        book = live_book()
        book.on_event(upd(101, 101, b=[(100.9, 1.0), (100.9, 0.0)], a=[(100.1, 1.0), (100.1, 0.0)]), 1.0)
        assert (book.best_bid, book.best_ask) == (100.0, 101.0)
        assert 100.9 not in book.bids and 100.1 not in book.asks

    def test_deleting_an_absent_level_changes_nothing(self):
        book = live_book()
        book.on_event(upd(101, 101, b=[(42.0, 0.0)], a=[(420.0, 0.0)]), 1.0)
        assert book.bids == {100.0: 1.0, 99.0: 2.0}
        assert book.asks == {101.0: 1.0, 102.0: 2.0}
        assert book.update_id == 101

    def test_quantity_change_at_best_keeps_best(self):
        book = live_book()
        book.on_event(upd(101, 101, b=[(100.0, 7.0)]), 1.0)
        assert book.best_bid == 100.0 and book.bids[100.0] == 7.0

    def test_emptying_a_side_clears_best_and_mid(self):
        book = live_book()
        book.on_event(upd(101, 101, b=[(100.0, 0.0), (99.0, 0.0)]), 1.0)
        assert book.best_bid is None and book.bids == {}
        assert book.mid() is None
        book.on_event(upd(102, 102, b=[(98.0, 1.0)]), 2.0)
        assert book.best_bid == 98.0 and book.mid() == 99.5

    def test_crossed_book_is_counted(self):
        book = live_book()
        assert book.crossed_events == 0
        book.on_event(upd(101, 101, b=[(101.0, 1.0)]), 1.0)  # bid == ask: crossed (locked)
        assert book.crossed_events == 1
        book.on_event(upd(102, 102, b=[(101.0, 0.0)]), 1.0)
        assert book.crossed_events == 1
        assert book.best_bid == 100.0

    def test_top_levels(self):
        book = live_book(bids=((100.0, 1.0), (99.0, 2.0), (98.0, 3.0)), asks=((101.0, 1.0), (103.0, 3.0),
                                                                               (102.0, 2.0)))
        bids, asks = book.top_levels(2)
        assert bids == [(100.0, 1.0), (99.0, 2.0)]
        assert asks == [(101.0, 1.0), (102.0, 2.0)]


# -- the property: the book equals a reference dict model ---------------------------
PRICES = st.integers(min_value=1, max_value=40).map(lambda n: n / 4)  # a small grid: collisions and deletes
QTYS = st.one_of(st.just(0.0), st.integers(min_value=1, max_value=5).map(float))
LEVELS = st.lists(st.tuples(PRICES, QTYS), max_size=6)
POSITIVE_LEVELS = st.lists(st.tuples(PRICES, st.integers(min_value=1, max_value=5).map(float)), max_size=8)


def _model_apply(model: dict[float, float], levels) -> None:
    for price, qty in levels:
        if qty:
            model[price] = qty
        else:
            model.pop(price, None)


def _check_against(book: LocalBook, bids: dict, asks: dict) -> None:
    assert book.bids == bids
    assert book.asks == asks
    assert book.best_bid == (max(book.bids) if book.bids else None)
    assert book.best_ask == (min(book.asks) if book.asks else None)


@FAST
@given(snapshot_bids=POSITIVE_LEVELS, snapshot_asks=POSITIVE_LEVELS,
       events=st.lists(st.tuples(st.integers(min_value=1, max_value=3), LEVELS, LEVELS), min_size=1, max_size=40),
       pre=st.integers(min_value=0, max_value=10), covered=st.integers(min_value=0, max_value=10))
def test_book_matches_reference_model(snapshot_bids, snapshot_asks, events, pre, covered):
    """Contiguous events: `pre` arrive before the snapshot, of which `covered`
    are already in it; the book must equal a dict model after every step, and
    best bid/ask must equal a brute-force max/min of the book's own dicts."""
    # ids: each event spans `width` ids, contiguous from 1
    spans, next_id = [], 1
    for width, b, a in events:
        spans.append(upd(next_id, next_id + width - 1, b, a))
        next_id += width
    pre = min(pre, len(spans))
    covered = min(covered, pre)
    last_id = spans[covered - 1].u if covered else 0

    book = LocalBook("BTCUSDT")
    for ev in spans[:pre]:
        assert book.on_event(ev, 0.0) is Applied.BUFFERED
    assert book.on_snapshot(snap(last_id, snapshot_bids, snapshot_asks), 1.0) is True

    model_bids = dict(snapshot_bids)
    model_asks = dict(snapshot_asks)
    crossed = 0

    def model_step(ev):
        nonlocal crossed
        _model_apply(model_bids, ev.b)
        _model_apply(model_asks, ev.a)
        if model_bids and model_asks and max(model_bids) >= min(model_asks):
            crossed += 1

    for ev in spans[covered:pre]:
        model_step(ev)
    _check_against(book, model_bids, model_asks)
    assert book.crossed_events == crossed

    for n, ev in enumerate(spans[pre:]):
        assert book.on_event(ev, 2.0 + n) is Applied.APPLIED
        model_step(ev)
        _check_against(book, model_bids, model_asks)
        assert book.update_id == ev.u
        assert book.updated_at == 2.0 + n
    assert book.crossed_events == crossed
    assert book.resyncs == 0
    assert book.is_live()
    assert book.update_id == spans[-1].u


@FAST
@given(snapshot_bids=POSITIVE_LEVELS, snapshot_asks=POSITIVE_LEVELS,
       steps=st.lists(st.tuples(st.sampled_from(["next", "skip", "old"]), LEVELS, LEVELS), min_size=1,
                      max_size=40))
def test_book_gaps_are_detected_and_recovered(snapshot_bids, snapshot_asks, steps):
    """Random next/skip/duplicate events: a skipped id always gives GAP (and a
    resync), a duplicate is IGNORED, and after each GAP a snapshot at the
    skipped id recovers the model exactly."""
    book = LocalBook("BTCUSDT")
    assert book.on_snapshot(snap(0, snapshot_bids, snapshot_asks), 0.0)
    model_bids, model_asks = dict(snapshot_bids), dict(snapshot_asks)
    last, gaps = 0, 0
    for kind, b, a in steps:
        if kind == "old":
            if last == 0:
                continue
            assert book.on_event(upd(last, last, b, a), 1.0) is Applied.IGNORED
        elif kind == "next":
            assert book.on_event(upd(last + 1, last + 1, b, a), 1.0) is Applied.APPLIED
            last += 1
            _model_apply(model_bids, b)
            _model_apply(model_asks, a)
        else:
            ev = upd(last + 2, last + 2, b, a)
            assert book.on_event(ev, 1.0) is Applied.GAP
            gaps += 1
            assert book.resyncs == gaps and not book.is_live()
            # the model's state at last + 1 is simply "the model" (the skipped event changed nothing here)
            assert book.on_snapshot(snap(last + 1, list(model_bids.items()), list(model_asks.items())), 2.0)
            _model_apply(model_bids, b)
            _model_apply(model_asks, a)
            last += 2
        _check_against(book, model_bids, model_asks)
        assert book.update_id == last
        assert book.is_live()
    assert book.resyncs == gaps


# ==============================================================================
# strategy
# ==============================================================================
class TestDesiredQuotes:
    def test_flat_inventory_quotes_symmetrically(self):
        quotes = desired_quotes(100.0, 0.0, 0.01, strategy_cfg(), BTC)
        assert quotes == [Quote("BUY", 0, 9995, 100), Quote("SELL", 0, 10005, 100)]

    def test_levels_step_out_by_level_gap(self):
        quotes = desired_quotes(100.0, 0.0, 0.01, strategy_cfg(levels=3, level_gap_bps=10.0), BTC)
        assert quotes == [Quote("BUY", 0, 9995, 100), Quote("SELL", 0, 10005, 100),
                          Quote("BUY", 1, 9985, 100), Quote("SELL", 1, 10015, 100),
                          Quote("BUY", 2, 9975, 100), Quote("SELL", 2, 10025, 100)]

    def test_bid_rounds_down_and_ask_rounds_up(self):
        # 100.003 * (1 -/+ 5 bps) = 99.9529985 / 100.0530015
        quotes = desired_quotes(100.003, 0.0, 0.01, strategy_cfg(), BTC)
        assert quotes == [Quote("BUY", 0, 9995, 100), Quote("SELL", 0, 10006, 100)]
        bid, ask = quotes
        assert bid.price_ticks * BTC.tick_size <= 100.003 * (1 - 5e-4)
        assert ask.price_ticks * BTC.tick_size >= 100.003 * (1 + 5e-4)

    def test_quantity_rounds_down_to_step(self):
        quotes = desired_quotes(100.0, 0.0, 0.01, strategy_cfg(order_qty=0.0012345), BTC)
        assert {q.qty_steps for q in quotes} == {123}

    def test_long_inventory_shifts_both_quotes_down(self):
        flat = desired_quotes(100.0, 0.0, 0.01, strategy_cfg(), BTC)
        long = desired_quotes(100.0, 0.005, 0.01, strategy_cfg(), BTC)  # lean 0.5 -> skew -5 bps
        assert long == [Quote("BUY", 0, 9990, 100), Quote("SELL", 0, 10000, 100)]
        assert all(lq.price_ticks < fq.price_ticks for lq, fq in zip(long, flat))

    def test_short_inventory_shifts_both_quotes_up(self):
        flat = desired_quotes(100.0, 0.0, 0.01, strategy_cfg(), BTC)
        short = desired_quotes(100.0, -0.005, 0.01, strategy_cfg(), BTC)  # lean -0.5 -> skew +5 bps
        assert short == [Quote("BUY", 0, 10000, 100), Quote("SELL", 0, 10010, 100)]
        assert all(sq.price_ticks > fq.price_ticks for sq, fq in zip(short, flat))

    def test_skew_is_capped_at_max_position(self):
        cfg = strategy_cfg()
        # far beyond the limit: the lean is clamped to 1, so the ask sits at mid - 10 + 5 bps
        quotes = desired_quotes(100.0, 0.05, 0.01, cfg, BTC)
        assert quotes == [Quote("SELL", 0, 9995, 100)]
        quotes = desired_quotes(100.0, -0.05, 0.01, cfg, BTC)
        assert quotes == [Quote("BUY", 0, 10005, 100)]

    def test_zero_skew_ignores_inventory(self):
        cfg = strategy_cfg(inventory_skew_bps=0.0)
        assert desired_quotes(100.0, 0.008, 0.01, cfg, BTC) == desired_quotes(100.0, 0.0, 0.01, cfg, BTC)

    def test_side_that_would_pass_max_position_is_not_quoted(self):
        cfg = strategy_cfg(levels=2, order_qty=0.001)
        # max 0.0025, long 0.001: bid level 0 -> 0.002 ok, level 1 -> 0.003 too far; asks fine
        quotes = desired_quotes(100.0, 0.001, 0.0025, cfg, BTC)
        assert [(q.side, q.level) for q in quotes] == [("BUY", 0), ("SELL", 0), ("SELL", 1)]
        # short mirror
        quotes = desired_quotes(100.0, -0.001, 0.0025, cfg, BTC)
        assert [(q.side, q.level) for q in quotes] == [("BUY", 0), ("SELL", 0), ("BUY", 1)]

    def test_exactly_reaching_max_position_is_allowed(self):
        cfg = strategy_cfg(order_qty=0.001)
        quotes = desired_quotes(100.0, 0.001, 0.002, cfg, BTC)
        assert [q.side for q in quotes] == ["BUY", "SELL"]
        quotes = desired_quotes(100.0, 0.0011, 0.002, cfg, BTC)
        assert [q.side for q in quotes] == ["SELL"]

    def test_at_max_position_only_the_reducing_side(self):
        assert [q.side for q in desired_quotes(100.0, 0.01, 0.01, strategy_cfg(), BTC)] == ["SELL"]
        assert [q.side for q in desired_quotes(100.0, -0.01, 0.01, strategy_cfg(), BTC)] == ["BUY"]

    @FAST
    @given(mid=st.floats(min_value=1.0, max_value=200_000.0), lean=st.floats(min_value=-1.0, max_value=1.0),
           levels=st.integers(min_value=1, max_value=4))
    def test_bid_below_ask_and_ordered_by_level(self, mid, lean, levels):
        cfg = strategy_cfg(levels=levels, order_qty=0.001)
        quotes = desired_quotes(mid, lean * 0.0001, 1.0, cfg, BTC)  # tiny position: every slot quoted
        bids = [q for q in quotes if q.side == "BUY"]
        asks = [q for q in quotes if q.side == "SELL"]
        assert [q.level for q in bids] == list(range(levels)) == [q.level for q in asks]
        assert max(q.price_ticks for q in bids) < min(q.price_ticks for q in asks)
        assert all(a.price_ticks >= b.price_ticks for a, b in zip(bids, bids[1:]))
        assert all(a.price_ticks <= b.price_ticks for a, b in zip(asks, asks[1:]))


class TestStaleQuotes:
    def desired(self):
        return [Quote("BUY", 0, 9995, 100), Quote("SELL", 0, 10005, 100)]

    def test_nothing_to_do_when_working_matches(self):
        working = {("BUY", 0): Quote("BUY", 0, 9995, 100), ("SELL", 0): Quote("SELL", 0, 10005, 100)}
        assert stale_quotes(working, self.desired(), 2) == ([], [])

    def test_within_tolerance_stays(self):
        working = {("BUY", 0): Quote("BUY", 0, 9993, 100), ("SELL", 0): Quote("SELL", 0, 10007, 100)}
        assert stale_quotes(working, self.desired(), 2) == ([], [])

    def test_beyond_tolerance_is_requoted(self):
        working = {("BUY", 0): Quote("BUY", 0, 9992, 100), ("SELL", 0): Quote("SELL", 0, 10005, 100)}
        cancel, place = stale_quotes(working, self.desired(), 2)
        assert cancel == [("BUY", 0)]
        assert place == [Quote("BUY", 0, 9995, 100)]

    def test_zero_tolerance(self):
        working = {("BUY", 0): Quote("BUY", 0, 9996, 100), ("SELL", 0): Quote("SELL", 0, 10005, 100)}
        assert stale_quotes(working, self.desired(), 0) == ([("BUY", 0)], [Quote("BUY", 0, 9995, 100)])

    def test_qty_change_forces_requote(self):
        working = {("BUY", 0): Quote("BUY", 0, 9995, 100), ("SELL", 0): Quote("SELL", 0, 10005, 99)}
        cancel, place = stale_quotes(working, self.desired(), 5)
        assert cancel == [("SELL", 0)]
        assert place == [Quote("SELL", 0, 10005, 100)]

    def test_missing_slots_are_placed(self):
        working = {("SELL", 0): Quote("SELL", 0, 10005, 100)}
        assert stale_quotes(working, self.desired(), 2) == ([], [Quote("BUY", 0, 9995, 100)])
        assert stale_quotes({}, self.desired(), 2) == ([], self.desired())

    def test_undesired_slots_are_cancelled(self):
        working = {("BUY", 0): Quote("BUY", 0, 9995, 100), ("SELL", 0): Quote("SELL", 0, 10005, 100),
                   ("BUY", 1): Quote("BUY", 1, 9985, 100)}
        assert stale_quotes(working, self.desired(), 2) == ([("BUY", 1)], [])
        # a side dropped by the position limit: everything on it goes
        assert stale_quotes(working, [Quote("SELL", 0, 10005, 100)], 2) == ([("BUY", 0), ("BUY", 1)], [])


# ==============================================================================
# risk
# ==============================================================================
BUY_OK = OrderIntent("BUY", 100.0, 0.001)


class TestRiskCheck:
    def test_baseline_passes(self):
        assert check(risk_cfg(), view(), BUY_OK) is None
        assert check(risk_cfg(), view(), OrderIntent("SELL", 100.0, 0.001)) is None

    def test_panic_stop(self):
        assert check(risk_cfg(), view(panic=True), BUY_OK) == "panic-stop"
        assert check(risk_cfg(), view(panic=False), BUY_OK) is None

    def test_panic_comes_first(self):
        v = view(panic=True, mid=None, daily_pnl=-1e9, open_orders=99)
        assert check(risk_cfg(), v, OrderIntent("BUY", 1e9, 1e9)) == "panic-stop"

    def test_stale_book_when_no_mid(self):
        assert check(risk_cfg(), view(mid=None), BUY_OK) == "stale-book"

    def test_stale_book_when_too_old(self):
        assert check(risk_cfg(max_book_age_s=2.0), view(book_age_s=2.001), BUY_OK) == "stale-book"
        assert check(risk_cfg(max_book_age_s=2.0), view(book_age_s=2.0), BUY_OK) is None
        assert check(risk_cfg(max_book_age_s=2.0), view(book_age_s=math.inf), BUY_OK) == "stale-book"

    def test_daily_loss_limit(self):
        limits = risk_cfg(daily_loss_limit=50.0)
        assert check(limits, view(daily_pnl=-50.0), BUY_OK) == "daily-loss-limit"
        assert check(limits, view(daily_pnl=-60.0), BUY_OK) == "daily-loss-limit"
        assert check(limits, view(daily_pnl=-49.99), BUY_OK) is None

    def test_max_order_notional(self):
        limits = risk_cfg(max_order_notional=1000.0, max_position=100.0)
        assert check(limits, view(), OrderIntent("BUY", 100.0, 10.01)) == "max-order-notional"
        assert check(limits, view(), OrderIntent("BUY", 100.0, 10.0)) is None  # exactly 1000
        assert check(limits, view(), OrderIntent("SELL", 100.5, 9.96)) == "max-order-notional"

    def test_max_open_orders(self):
        limits = risk_cfg(max_open_orders=4)
        assert check(limits, view(open_orders=4), BUY_OK) == "max-open-orders"
        assert check(limits, view(open_orders=3), BUY_OK) is None

    def test_price_band(self):
        limits = risk_cfg(price_band_bps=100.0)
        assert check(limits, view(), OrderIntent("BUY", 98.99, 0.001)) == "price-band"
        assert check(limits, view(), OrderIntent("SELL", 101.01, 0.001)) == "price-band"
        assert check(limits, view(), OrderIntent("BUY", 99.01, 0.001)) is None
        assert check(limits, view(), OrderIntent("SELL", 100.99, 0.001)) is None

    def test_max_position_buy_counts_open_buys(self):
        limits = risk_cfg(max_position=0.01)
        # 0.006 + 0.003 open + 0.002 = 0.011 > 0.01
        v = view(position=0.006, open_buy_qty=0.003)
        assert check(limits, v, OrderIntent("BUY", 100.0, 0.002)) == "max-position"
        assert check(limits, v, OrderIntent("BUY", 100.0, 0.001)) is None  # exactly 0.01
        # open sells do not make room for a buy
        assert check(limits, view(position=0.006, open_buy_qty=0.003, open_sell_qty=0.5),
                     OrderIntent("BUY", 100.0, 0.002)) == "max-position"
        # a sell is fine in that state
        assert check(limits, v, OrderIntent("SELL", 100.0, 0.002)) is None

    def test_max_position_sell_counts_open_sells(self):
        limits = risk_cfg(max_position=0.01)
        v = view(position=-0.006, open_sell_qty=0.003)
        assert check(limits, v, OrderIntent("SELL", 100.0, 0.002)) == "max-position"
        assert check(limits, v, OrderIntent("SELL", 100.0, 0.001)) is None
        assert check(limits, view(position=-0.006, open_sell_qty=0.003, open_buy_qty=0.5),
                     OrderIntent("SELL", 100.0, 0.002)) == "max-position"
        assert check(limits, v, OrderIntent("BUY", 100.0, 0.002)) is None

    def test_state_problems(self):
        limits = risk_cfg()
        assert state_problems(limits, view()) == []
        assert state_problems(limits, view(panic=True)) == ["panic-stop"]
        assert state_problems(limits, view(mid=None)) == ["stale-book"]
        assert state_problems(limits, view(book_age_s=2.5)) == ["stale-book"]
        assert state_problems(limits, view(position=0.0101)) == ["max-position"]
        assert state_problems(limits, view(position=-0.0101)) == ["max-position"]
        assert state_problems(limits, view(position=0.01)) == []
        assert state_problems(limits, view(daily_pnl=-50.0)) == ["daily-loss-limit"]
        assert state_problems(limits, view(daily_pnl=-49.0)) == []
        assert state_problems(limits, view(panic=True, mid=None, position=1.0, daily_pnl=-100.0)) == [
            "panic-stop", "stale-book", "max-position", "daily-loss-limit"]


# ==============================================================================
# OMS
# ==============================================================================
class TestOmsEntry:
    def test_sent_order_is_pending_and_working(self):
        oms = Oms(NODE)
        o = order(cid(1))
        oms.on_sent(o)
        assert oms.get(cid(1)) is o
        assert o.status is Status.PENDING_NEW
        assert oms.working() == {("BUY", 0): o}
        assert oms.count() == 1

    def test_reply_new_acks(self):
        oms = Oms(NODE)
        oms.on_sent(order(cid(1)))
        oms.on_reply(reply(cid(1), "NEW", order_id=55), 1.5)
        o = oms.get(cid(1))
        assert o.status is Status.NEW and o.order_id == 55 and o.acked_at == 1.5

    def test_late_rest_new_does_not_undo_a_streamed_fill(self):
        oms = Oms(NODE)
        oms.on_sent(order(cid(1), qty=1.0))
        fill = oms.on_execution(report(cid(1), "TRADE", "PARTIALLY_FILLED", i=55, z=0.4, l=0.4, L=100.0, t=1), 1.0)
        assert fill is not None
        oms.on_reply(reply(cid(1), "NEW", order_id=55, executed=0.0), 2.0)
        o = oms.get(cid(1))
        assert o.status is Status.PARTIALLY_FILLED
        assert o.filled == 0.4
        assert o.remaining == pytest.approx(0.6)
        assert o.acked_at == 2.0

    def test_nothing_leaves_a_terminal_state(self):
        oms = Oms(NODE)
        oms.on_sent(order(cid(1)))
        oms.on_execution(report(cid(1), "TRADE", "FILLED", i=55, z=1.0, l=1.0, L=100.0, t=1), 3.0)
        assert oms.get(cid(1)) is None
        finished = oms.finished[-1]
        assert finished.client_id == cid(1) and finished.status is Status.FILLED and finished.finished_at == 3.0
        assert oms.outcomes == {"FILLED": 1}
        # late messages change nothing
        oms.on_reply(reply(cid(1), "NEW", order_id=55), 4.0)
        oms.on_cancel_sent(cid(1), 4.0)
        oms.on_cancelled(cid(1), 1.0, 4.0)
        oms.on_cancel_unknown_order(cid(1), 4.0)
        oms.on_rejected(cid(1), 4.0)
        assert oms.on_execution(report(cid(1), "NEW", "NEW", i=55), 4.0) is None
        oms.reconcile([], 100.0, 1.0)
        assert oms.get(cid(1)) is None
        assert finished.status is Status.FILLED and finished.finished_at == 3.0
        assert oms.outcomes == {"FILLED": 1}
        assert len(oms.finished) == 1

    def test_advance_on_a_finished_order_is_a_noop(self):
        oms = Oms(NODE)
        o = order(cid(1))
        oms.on_sent(o)
        oms.on_rejected(cid(1), 1.0)
        assert o.status is Status.REJECTED
        oms._advance(o, Status.NEW, 2.0)
        oms._advance(o, Status.CANCELED, 2.0)
        assert o.status is Status.REJECTED and o.finished_at == 1.0
        assert oms.outcomes == {"REJECTED": 1}

    def test_reply_with_terminal_status(self):
        oms = Oms(NODE)
        oms.on_sent(order(cid(1)))
        oms.on_reply(reply(cid(1), "EXPIRED", order_id=9), 1.0)
        assert oms.get(cid(1)) is None
        assert oms.finished[-1].status is Status.EXPIRED and oms.finished[-1].order_id == 9
        assert oms.outcomes == {"EXPIRED": 1}

    def test_unknown_client_id_is_ignored(self):
        oms = Oms(NODE)
        oms.on_reply(reply("nobody"), 1.0)
        oms.on_rejected("nobody", 1.0)
        oms.on_outcome_unknown("nobody", 1.0)
        oms.on_cancel_sent("nobody", 1.0)
        oms.on_cancelled("nobody", 0.0, 1.0)
        oms.on_cancel_unknown_order("nobody", 1.0)
        assert oms.on_execution(report("nobody", "TRADE", "FILLED", t=1, l=1.0), 1.0) is None
        assert oms.live == {} and oms.outcomes == {} and len(oms.finished) == 0

    def test_rejected(self):
        oms = Oms(NODE)
        oms.on_sent(order(cid(1)))
        oms.on_rejected(cid(1), 2.0)
        assert oms.get(cid(1)) is None
        assert oms.finished[-1].status is Status.REJECTED
        assert oms.outcomes == {"REJECTED": 1}

    def test_outcome_unknown(self):
        oms = Oms(NODE)
        oms.on_sent(order(cid(1), side="SELL", qty=0.5))
        oms.on_outcome_unknown(cid(1), 1.0)
        o = oms.get(cid(1))
        assert o.status is Status.UNKNOWN
        assert oms.working() == {}  # the strategy cannot count on it
        assert oms.exposure().sell_qty == 0.5  # but risk does
        oms.on_reply(reply(cid(1), "NEW"), 2.0)
        assert o.status is Status.NEW

    def test_outcome_unknown_only_from_pending_new(self):
        oms = Oms(NODE)
        oms.on_sent(order(cid(1)))
        oms.on_reply(reply(cid(1), "NEW"), 1.0)
        oms.on_outcome_unknown(cid(1), 2.0)
        assert oms.get(cid(1)).status is Status.NEW
        oms.on_cancel_sent(cid(1), 3.0)
        oms.on_outcome_unknown(cid(1), 4.0)
        assert oms.get(cid(1)).status is Status.PENDING_CANCEL

    def test_finished_history_is_bounded(self):
        oms = Oms(NODE)
        for n in range(FINISHED_KEPT + 5):
            oms.on_sent(order(cid(n + 1)))
            oms.on_rejected(cid(n + 1), 0.0)
        assert len(oms.finished) == FINISHED_KEPT
        assert oms.finished[0].client_id == cid(6)
        assert oms.outcomes == {"REJECTED": FINISHED_KEPT + 5}


class TestOmsFills:
    def test_fill_fields(self):
        oms = Oms(NODE)
        oms.on_sent(order(cid(1), side="SELL"))
        fill = oms.on_execution(report(cid(1), "TRADE", "PARTIALLY_FILLED", i=7, z=0.25, l=0.25, L=101.5, t=42,
                                       n=0.01, N="BNB", m=True, side="SELL"), 1.0)
        assert fill.client_id == cid(1)
        assert fill.side == "SELL"
        assert (fill.price, fill.qty, fill.commission, fill.commission_asset, fill.is_maker) == (
            101.5, 0.25, 0.01, "BNB", True)
        o = oms.get(cid(1))
        assert o.order_id == 7 and o.filled == 0.25 and o.status is Status.PARTIALLY_FILLED

    def test_duplicate_trade_is_reported_once(self):
        oms = Oms(NODE)
        oms.on_sent(order(cid(1)))
        r = report(cid(1), "TRADE", "PARTIALLY_FILLED", i=7, z=0.25, l=0.25, L=100.0, t=42)
        assert oms.on_execution(r, 1.0) is not None
        assert oms.on_execution(r, 1.1) is None
        second = oms.on_execution(report(cid(1), "TRADE", "PARTIALLY_FILLED", i=7, z=0.5, l=0.25, L=100.0, t=43),
                                  1.2)
        assert second is not None and second.qty == 0.25
        assert oms.get(cid(1)).filled == 0.5

    def test_same_trade_id_on_another_order_is_a_new_fill(self):
        oms = Oms(NODE)
        oms.on_sent(order(cid(1)))
        oms.on_sent(order(cid(2), side="SELL"))
        assert oms.on_execution(report(cid(1), "TRADE", "PARTIALLY_FILLED", i=7, z=0.1, l=0.1, t=5), 1.0)
        assert oms.on_execution(report(cid(2), "TRADE", "PARTIALLY_FILLED", i=8, z=0.1, l=0.1, t=5,
                                       side="SELL"), 1.0)

    def test_non_trade_reports_are_not_fills(self):
        oms = Oms(NODE)
        oms.on_sent(order(cid(1)))
        assert oms.on_execution(report(cid(1), "NEW", "NEW", i=7), 1.0) is None
        assert oms.get(cid(1)).status is Status.NEW

    def test_filled_stays_monotonic(self):
        oms = Oms(NODE)
        oms.on_sent(order(cid(1)))
        oms.on_execution(report(cid(1), "TRADE", "PARTIALLY_FILLED", i=7, z=0.6, l=0.6, t=1), 1.0)
        oms.on_execution(report(cid(1), "NEW", "NEW", i=7, z=0.0), 1.0)  # late
        assert oms.get(cid(1)).filled == 0.6
        assert oms.get(cid(1)).status is Status.PARTIALLY_FILLED

    def test_unknown_venue_status_keeps_current(self):
        """An undocumented status is never read as NEW: the order keeps its status, the value is
        counted, and the order is queued for the engine to ask the venue about."""
        asked = []
        oms = Oms(NODE, on_verify=asked.append)
        oms.on_sent(order(cid(1)))
        oms.on_execution(report(cid(1), "NEW", "NOT_A_STATUS", i=7), 1.0)
        assert oms.get(cid(1)).status is Status.PENDING_NEW
        assert asked == [cid(1)] and list(oms.to_verify) == [cid(1)]
        assert oms.ledger.unknown_values == {("executionReport", "X"): 1}
        assert oms.ledger.unknown_value_samples[("executionReport", "X")] == {"NOT_A_STATUS"}

    def test_fill_reported_after_the_cancel_reply_is_not_lost(self):
        oms = Oms(NODE)
        oms.on_sent(order(cid(1)))
        oms.on_cancel_sent(cid(1), 1.0)
        oms.on_cancelled(cid(1), 0.4, 1.1)  # the REST reply: 0.4 executed before the cancel
        fill = oms.on_execution(report(cid(1), "TRADE", "PARTIALLY_FILLED", i=7, z=0.4, l=0.4, L=100.0, t=9), 1.2)
        assert fill is not None and fill.qty == 0.4


class TestOmsCancels:
    def test_cancel_sent(self):
        oms = Oms(NODE)
        oms.on_sent(order(cid(1)))
        oms.on_reply(reply(cid(1)), 1.0)
        oms.on_cancel_sent(cid(1), 2.0)
        o = oms.get(cid(1))
        assert o.status is Status.PENDING_CANCEL and o.cancel_sent_at == 2.0
        assert oms.working() == {}
        assert oms.exposure().buy_qty == 1.0  # still counted until it is gone
        # a late NEW or PARTIALLY_FILLED does not undo the pending cancel
        oms.on_reply(reply(cid(1), "NEW"), 2.5)
        oms.on_execution(report(cid(1), "TRADE", "PARTIALLY_FILLED", i=11, z=0.3, l=0.3, t=1), 2.6)
        assert o.status is Status.PENDING_CANCEL and o.filled == 0.3

    def test_cancelled(self):
        oms = Oms(NODE)
        oms.on_sent(order(cid(1)))
        oms.on_cancel_sent(cid(1), 1.0)
        oms.on_cancelled(cid(1), 0.2, 2.0)
        assert oms.get(cid(1)) is None
        done = oms.finished[-1]
        assert done.status is Status.CANCELED and done.filled == 0.2 and done.finished_at == 2.0
        assert oms.outcomes == {"CANCELED": 1}
        assert oms.exposure().buy_qty == 0.0

    def test_cancel_on_stream_uses_the_original_client_id(self):
        oms = Oms(NODE)
        oms.on_sent(order(cid(1)))
        oms.on_execution(report("cancel-req-1", "CANCELED", "CANCELED", i=7, C=cid(1)), 1.0)
        assert oms.get(cid(1)) is None
        assert oms.finished[-1].status is Status.CANCELED

    def test_cancel_unknown_order_is_gone(self):
        oms = Oms(NODE)
        oms.on_sent(order(cid(1)))
        oms.on_cancel_sent(cid(1), 1.0)
        oms.on_cancel_unknown_order(cid(1), 2.0)
        assert oms.get(cid(1)) is None
        assert oms.finished[-1].status is Status.GONE
        assert oms.outcomes == {"GONE": 1}


class TestOmsReconcile:
    def test_adopts_own_untracked_orders_and_reports_foreign(self):
        oms = Oms(NODE)
        ours_old_epoch = cid(5, epoch=1, boot="abc")
        other_node = cid(6, node="node-b")
        garbage = "web_1234567"
        adopted, foreign = oms.reconcile([open_order(ours_old_epoch, order_id=77, executed=0.1, status="NEW"),
                                          open_order(other_node, order_id=78),
                                          open_order(garbage, order_id=79)], 10.0, 1.0)
        assert adopted == [ours_old_epoch]
        assert foreign == [other_node, garbage]
        o = oms.get(ours_old_epoch)
        assert (o.side, o.price, o.qty, o.epoch, o.level, o.order_id, o.filled, o.status, o.sent_at, o.acked_at) == (
            "SELL", 101.5, 0.5, 1, None, 77, 0.1, Status.NEW, 10.0, 10.0)
        assert oms.get(other_node) is None and oms.get(garbage) is None
        assert oms.working() == {}  # adopted orders hold no quote slot
        assert oms.exposure().sell_qty == pytest.approx(0.4)
        assert oms.count() == 1

    def test_adopted_partially_filled_status(self):
        oms = Oms(NODE)
        adopted, _ = oms.reconcile([open_order(cid(9), status="PARTIALLY_FILLED", executed=0.2)], 1.0, 1.0)
        assert oms.get(cid(9)).status is Status.PARTIALLY_FILLED

    def test_updates_tracked_orders_without_regressing(self):
        oms = Oms(NODE)
        oms.on_sent(order(cid(1)))
        oms.on_sent(order(cid(2), side="SELL", level=0))
        oms.on_cancel_sent(cid(2), 0.5)
        adopted, foreign = oms.reconcile([open_order(cid(1), order_id=31, executed=0.3, status="PARTIALLY_FILLED",
                                                     side="BUY"),
                                          open_order(cid(2), order_id=32, status="NEW")], 0.6, 1.0)
        assert (adopted, foreign) == ([], [])
        o1, o2 = oms.get(cid(1)), oms.get(cid(2))
        assert o1.status is Status.PARTIALLY_FILLED and o1.order_id == 31 and o1.filled == 0.3
        assert o2.status is Status.PENDING_CANCEL and o2.order_id == 32

    def test_missing_orders_gone_only_after_grace(self):
        oms = Oms(NODE)
        oms.on_sent(order(cid(1), sent_at=10.0))
        oms.on_sent(order(cid(2), side="SELL", sent_at=10.5))
        oms.reconcile([], 12.0, 2.0)  # exactly at grace for #1: left alone
        assert oms.get(cid(1)) is not None and oms.get(cid(2)) is not None
        oms.reconcile([], 12.001, 2.0)
        assert oms.get(cid(1)) is None
        assert oms.finished[-1].client_id == cid(1) and oms.finished[-1].status is Status.GONE
        assert oms.get(cid(2)) is not None
        oms.reconcile([], 13.0, 2.0)
        assert oms.get(cid(2)) is None
        assert oms.outcomes == {"GONE": 2}

    def test_unknown_outcome_resolved_by_reconcile(self):
        oms = Oms(NODE)
        oms.on_sent(order(cid(1)))
        oms.on_sent(order(cid(2), side="SELL"))
        oms.on_outcome_unknown(cid(1), 0.1)
        oms.on_outcome_unknown(cid(2), 0.1)
        oms.reconcile([open_order(cid(2), order_id=5, side="SELL")], 5.0, 1.0)
        assert oms.get(cid(1)) is None and oms.finished[-1].status is Status.GONE
        assert oms.get(cid(2)).status is Status.NEW and oms.get(cid(2)).order_id == 5

    def test_adopted_order_is_gone_when_it_disappears(self):
        oms = Oms(NODE)
        oms.reconcile([open_order(cid(9))], 1.0, 1.0)
        oms.reconcile([], 1.5, 1.0)
        assert oms.get(cid(9)) is not None
        oms.reconcile([], 2.5, 1.0)
        assert oms.get(cid(9)) is None


class TestOmsQueries:
    def test_working_and_exposure(self):
        oms = Oms(NODE)
        pending = order(cid(1), side="BUY", level=0, qty=1.0)
        new = order(cid(2), side="SELL", level=0, qty=2.0)
        partial = order(cid(3), side="BUY", level=1, qty=3.0)
        cancelling = order(cid(4), side="SELL", level=1, qty=4.0)
        unknown = order(cid(5), side="BUY", level=2, qty=5.0)
        for o in (pending, new, partial, cancelling, unknown):
            oms.on_sent(o)
        oms.on_reply(reply(cid(2), "NEW"), 1.0)
        oms.on_execution(report(cid(3), "TRADE", "PARTIALLY_FILLED", i=3, z=1.0, l=1.0, t=1), 1.0)
        oms.on_cancel_sent(cid(4), 1.0)
        oms.on_outcome_unknown(cid(5), 1.0)
        assert oms.working() == {("BUY", 0): pending, ("SELL", 0): new, ("BUY", 1): partial}
        assert oms.exposure().buy_qty == pytest.approx(1.0 + 2.0 + 5.0)
        assert oms.exposure().sell_qty == pytest.approx(2.0 + 4.0)
        assert oms.count() == 5
        assert oms.count(Status.NEW, Status.PENDING_NEW) == 2
        assert oms.count(Status.UNKNOWN) == 1
        oms.on_execution(report(cid(3), "TRADE", "FILLED", i=3, z=3.0, l=2.0, t=2), 2.0)
        assert ("BUY", 1) not in oms.working()
        assert oms.exposure().buy_qty == pytest.approx(6.0)

    def test_remaining_never_negative(self):
        o = order(cid(1), qty=1.0)
        o.filled = 1.2
        assert o.remaining == 0.0
        assert o.is_live
        o.status = Status.GONE
        assert not o.is_live
        assert TERMINAL == {Status.FILLED, Status.CANCELED, Status.REJECTED, Status.EXPIRED, Status.GONE}


# ==============================================================================
# client ids
# ==============================================================================
ID_CHARS = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}\Z")
NODE_IDS = st.from_regex(r"^[a-z0-9][a-z0-9-]{0,7}\Z", fullmatch=True)


class TestClientIds:
    def test_base36(self):
        assert base36(0) == "0"
        assert base36(35) == "z"
        assert base36(36) == "10"
        assert base36(36**6 - 1) == "zzzzzz"
        assert base36(1_700_000_000_000) == "loyw3v28"
        assert int(base36(1_700_000_000_000), 36) == 1_700_000_000_000

    def test_format_and_sequence(self):
        f = ClientIdFactory("node-a", 1_700_000_000_000)
        assert f.next(7) == "e7.node-a.loyw3v28_1"
        assert f.next(7) == "e7.node-a.loyw3v28_2"
        f.seq = 34
        assert f.next(8) == "e8.node-a.loyw3v28_z"
        assert f.next(8) == "e8.node-a.loyw3v28_10"

    def test_longest_id_fits(self):
        f = ClientIdFactory("abcdefgh", 36**8 - 1)
        f.seq = 36**6 - 2
        longest = f.next(MAX_EPOCH)
        assert longest == "ezzzzzzzz.abcdefgh.zzzzzzzz_zzzzzz"
        assert len(longest) == 34
        assert ID_CHARS.match(longest)
        assert parse(longest) == client_ids.ClientId(MAX_EPOCH, "abcdefgh", "zzzzzzzz_zzzzzz")
        with pytest.raises(OverflowError):
            f.next(MAX_EPOCH)

    def test_epoch_bounds(self):
        f = ClientIdFactory("n1", 1_700_000_000_000)
        assert parse(f.next(0)).epoch == 0
        assert parse(f.next(MAX_EPOCH)).epoch == MAX_EPOCH
        with pytest.raises(ValueError):
            f.next(-1)
        with pytest.raises(ValueError):
            f.next(MAX_EPOCH + 1)
        assert f.seq == 2  # a refused epoch does not use up a sequence number

    def test_unique_across_calls_and_boots(self):
        a = ClientIdFactory("node-a", 1_700_000_000_000)
        b = ClientIdFactory("node-a", 1_700_000_000_001)  # restarted a millisecond later
        ids_a = [a.next(3) for _ in range(2000)]
        ids_b = [b.next(3) for _ in range(2000)]
        assert len(set(ids_a)) == 2000
        assert len(set(ids_a) | set(ids_b)) == 4000

    @pytest.mark.parametrize("bad", [
        "", "e", "e1.node.a_1x!", "x1.node.a_1", "e.node.a_1", "e1..a_1", "e1.Node.a_1", "e1.-node.a_1",
        "e1.abcdefghi.a_1", "e12345678901.n.a_1", "e1.node.a1", "e1.node.a_", "e1.node._1", "e1.node.abcdefghi_1",
        "e1.node.a_1234567", "e1.node.A_1", " e1.node.a_1", "e1.node.a_1 ", "e-1.node.a_1", "e1.node.a_1.x",
        "web_ABCDEF", "and_8Yf3kQ",
    ])
    def test_parse_rejects_malformed(self, bad):
        assert parse(bad) is None

    @pytest.mark.parametrize("bad", ["e1.node.a_1\n", "e\u0661.node.a_1", "e1\u0663.node.a_1"])
    def test_parse_rejects_ids_outside_the_alphabet(self, bad):
        assert not ID_CHARS.match(bad)
        assert parse(bad) is None

    @FAST
    @given(epoch=st.integers(min_value=0, max_value=MAX_EPOCH), node=NODE_IDS,
           boot=st.integers(min_value=0, max_value=36**8 - 1), seq=st.integers(min_value=0, max_value=36**6 - 2))
    def test_round_trip(self, epoch, node, boot, seq):
        f = ClientIdFactory(node, boot)
        f.seq = seq
        made = f.next(epoch)
        assert len(made) <= 36
        assert ID_CHARS.match(made)
        parsed = parse(made)
        assert parsed is not None
        assert (parsed.epoch, parsed.node) == (epoch, node)
        assert parsed.serial == f"{base36(boot)}_{base36(seq + 1)}"

    @FAST
    @given(node=NODE_IDS, boots=st.lists(st.integers(min_value=0, max_value=36**8 - 1), min_size=2, max_size=4,
                                         unique=True), epoch=st.integers(min_value=0, max_value=MAX_EPOCH))
    def test_unique_across_boots_property(self, node, boots, epoch):
        factories = [ClientIdFactory(node, boot) for boot in boots]
        made = [f.next(epoch) for f in factories for _ in range(3)]
        assert len(set(made)) == len(made)


# ==============================================================================
# account
# ==============================================================================
def position_event(E: int, **balances) -> AccountPosition:
    return AccountPosition(e="outboundAccountPosition", E=E, u=E,
                           B=[BalanceRow(a=asset, f=f, l=l) for asset, (f, l) in balances.items()])


class TestAccount:
    def account(self, target: float = 0.5) -> AccountState:
        acc = AccountState("BTC", "USDT", target)
        acc.on_account_info(AccountInfo(balances=[Balance(asset="BTC", free=0.4, locked=0.2),
                                                  Balance(asset="USDT", free=1000.0, locked=50.0),
                                                  Balance(asset="BNB", free=1.0, locked=0.0)]))
        return acc

    def test_position_is_total_base_minus_target(self):
        acc = AccountState("BTC", "USDT", 0.5)
        assert not acc.synced
        assert acc.position == -0.5
        acc = self.account(0.5)
        assert acc.synced
        assert acc.total("BTC") == pytest.approx(0.6)
        assert acc.total("USDT") == 1050.0
        assert acc.total("ETH") == 0.0
        assert acc.position == pytest.approx(0.1)
        assert self.account(0.0).position == pytest.approx(0.6)

    def test_position_event_updates_listed_assets_only(self):
        acc = self.account()
        acc.on_position(position_event(1000, BTC=(0.3, 0.1)))
        assert acc.position == pytest.approx(-0.1)
        assert acc.total("USDT") == 1050.0
        assert acc.last_event_ms == 1000

    def test_out_of_order_position_event_is_ignored(self):
        acc = self.account()
        acc.on_position(position_event(2000, BTC=(0.7, 0.0), USDT=(900.0, 0.0)))
        acc.on_position(position_event(1999, BTC=(0.1, 0.0), USDT=(5.0, 0.0)))  # older, late
        assert acc.position == pytest.approx(0.2)
        assert acc.total("USDT") == 900.0
        assert acc.last_event_ms == 2000
        acc.on_position(position_event(2001, BTC=(0.5, 0.0)))
        assert acc.position == pytest.approx(0.0)

    def test_pnl_excludes_starting_holdings_revaluation(self):
        acc = self.account()
        day = DayReference("2024-01-01", base=acc.total("BTC"), quote=acc.total("USDT"))
        assert acc.pnl(day, 100.0) == 0.0
        assert acc.pnl(day, 1_000_000.0) == 0.0  # the price moved, nothing was traded
        assert acc.pnl(day, None) == 0.0

    def test_pnl_of_a_round_trip_and_of_an_open_position(self):
        acc = AccountState("BTC", "USDT", 1.0)
        acc.on_account_info(AccountInfo(balances=[Balance(asset="BTC", free=1.0, locked=0.0),
                                                  Balance(asset="USDT", free=1000.0, locked=0.0)]))
        day = DayReference("2024-01-01", base=1.0, quote=1000.0)
        # bought 0.5 at 100
        acc.on_position(position_event(1, BTC=(1.5, 0.0), USDT=(950.0, 0.0)))
        assert acc.pnl(day, 110.0) == pytest.approx(5.0)
        assert acc.pnl(day, 90.0) == pytest.approx(-5.0)
        # sold it back at 104
        acc.on_position(position_event(2, BTC=(1.0, 0.0), USDT=(1002.0, 0.0)))
        assert acc.pnl(day, 50.0) == pytest.approx(2.0)
        assert acc.pnl(day, 500.0) == pytest.approx(2.0)


# ==============================================================================
# lease
# ==============================================================================
class TestLease:
    def test_granted_deadline(self):
        lease = Lease.granted(5, sent_at=100.0, ttl_s=1.5, drift=0.01, margin_s=0.05)
        assert lease.epoch == 5
        assert lease.safe_deadline == pytest.approx(100.0 + 1.5 * 0.99 - 0.05)  # 101.435
        assert lease.safe_deadline == pytest.approx(101.435)

    def test_may_trade_strictly_before_deadline(self):
        lease = Lease.granted(1, sent_at=10.0, ttl_s=2.0, drift=0.0, margin_s=0.5)
        assert lease.safe_deadline == 11.5
        assert lease.may_trade(10.0)
        assert lease.may_trade(11.499)
        assert not lease.may_trade(11.5)
        assert not lease.may_trade(12.0)
        assert lease.time_left(11.0) == 0.5
        assert lease.time_left(11.5) == 0.0
        assert lease.time_left(99.0) == 0.0

    def test_solo_never_expires(self):
        lease = Lease.solo()
        assert lease.epoch == 0
        assert lease.safe_deadline == math.inf
        assert lease.may_trade(0.0) and lease.may_trade(1e300)
        assert lease.time_left(1e12) == math.inf
        assert Lease.solo(9).epoch == 9

    @FAST
    @given(sent=st.floats(min_value=0, max_value=1e6), ttl=st.floats(min_value=0.2, max_value=30),
           drift=st.floats(min_value=0, max_value=0.1), margin=st.floats(min_value=0.001, max_value=1.0))
    def test_deadline_before_backend_expiry(self, sent, ttl, drift, margin):
        lease = Lease.granted(1, sent, ttl, drift, margin)
        assert lease.safe_deadline < sent + ttl
        assert lease.safe_deadline == pytest.approx(sent + ttl * (1 - drift) - margin)
        assert not lease.may_trade(lease.safe_deadline)


def test_a_failed_cancel_returns_the_order_to_working():
    """A cancel without a definite answer must not leave the order stuck as
    PENDING_CANCEL, invisible to the next requote."""
    oms = Oms(NODE)
    oms.on_sent(order(cid(1)))
    oms.on_reply(reply(cid(1)), 1.0)
    oms.on_cancel_sent(cid(1), 2.0)
    assert oms.working() == {}
    oms.on_cancel_failed(cid(1), 2.5)
    assert oms.get(cid(1)).status is Status.NEW
    assert list(oms.working().values()) == [oms.get(cid(1))]


class TestInFlightAwareness:
    """A cancel that overtakes its order's send must not declare the order gone."""

    def test_a_cancel_answered_unknown_before_the_send_leaves_the_order_live_until_its_fence_passes(self):
        oms = Oms(NODE)
        o = order(cid(1), sent_at=1.0)
        o.accept_by = 1.8  # the venue refuses it from then on
        oms.on_sent(o)
        oms.on_cancel_sent(cid(1), 1.1)
        oms.on_cancel_unknown_order(cid(1), 1.2)  # the cancel reached the venue first
        assert oms.get(cid(1)) is not None and oms.get(cid(1)).status is Status.UNKNOWN
        oms.reconcile([], 1.5, 0.0)  # a listing without it proves nothing yet either
        assert oms.get(cid(1)) is not None
        oms.reconcile([], 1.9, 0.0)  # past its fence: it can no longer land
        assert oms.get(cid(1)) is None

    def test_an_acknowledged_order_is_gone_on_unknown_order_as_before(self):
        oms = Oms(NODE)
        o = order(cid(1), sent_at=1.0)
        o.accept_by = 9.0
        oms.on_sent(o)
        oms.on_reply(reply(cid(1)), 1.05)
        oms.on_cancel_unknown_order(cid(1), 1.2)
        assert oms.get(cid(1)) is None


class TestCancelAllReply:
    """Binance documents `DELETE /api/v3/openOrders` as a mix of orders and order lists."""

    def test_order_lists_in_the_cancel_all_reply_are_flattened_to_their_legs(self):
        from pathlib import Path

        from understudy.node.rest import _cancel_list_decoder

        fixture = Path(__file__).parent / "fixtures" / "binance" / "delete_open_orders.json"
        entries = _cancel_list_decoder.decode(fixture.read_bytes())
        flat = [report for entry in entries for report in entry.cancelled_orders()]
        assert any(entry.contingencyType for entry in entries), "the fixture has an order list"
        assert all(report.orderId and report.origClientOrderId for report in flat)
        lists = [e for e in entries if e.contingencyType]
        assert len(flat) == len(entries) - len(lists) + sum(len(e.orderReports) for e in lists)
