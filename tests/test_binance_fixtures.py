"""Every recorded Binance payload in tests/fixtures/binance/ (see its README
for where each comes from) decoded by the node's own decoders — the ones
rest.py, userstream.py, marketdata.py and filters.py use on the wire — with
the fields that matter asserted, and what the node does with the message
checked where it does something (the OMS, the account, the book).

A fixture with no decoder assigned here fails the suite, and so does an
assignment without a fixture: what is recorded is what is tested.
"""
import json
from collections import Counter
from pathlib import Path

import msgspec
import pytest

from understudy.node import filters, rest
from understudy.node import venue_errors as ve
from understudy.node.account import AccountState
from understudy.node.book import Applied, LocalBook
from understudy.node.instrument import Instrument
from understudy.node.marketdata import MarketData
from understudy.node.messages import (AmendReply, ExecutionType, OpenOrder, OrderListReply, OrderReply, OrderSide, OrderStatus,
                                      OrderType, RateLimit, RateLimitType, StpMode, SymbolInfo, SymbolStatus)
from understudy.node.oms import ManagedOrder, Oms, Status
from understudy.node.userstream import DECODERS, UserStream, _response, _subscription

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "binance"


def raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


# -- the node's decoders, as the adapter holds them ------------------------------------------
def user_stream() -> tuple[UserStream, list, list, list]:
    executions, positions, missed = [], [], []
    stream = UserStream("ws://unused", "key", "secret", executions.append, positions.append, lambda: None,
                        on_missed=lambda: missed.append(1))
    return stream, executions, positions, missed


def market_data() -> tuple[MarketData, LocalBook]:
    book = LocalBook("BNBBTC")
    return MarketData(book, None, "ws://unused", "100ms", 1000, lambda: None), book


def error(name: str, http_status: int = 400) -> ve.VenueError:
    reply = rest._error_decoder.decode(raw(name))
    return ve.from_reply(http_status, reply.code, reply.msg)


def oms_with(client_id: str, side: str = "BUY", qty: float = 1.0, price: float = 0.10264410) -> Oms:
    oms = Oms("sg-1")
    oms.on_sent(ManagedOrder(client_id, side, round(price / 1e-8), round(qty / 1e-8), price, qty, 1, 0, 0.0))
    return oms


# -- one check per fixture: decode, assert, act -------------------------------------------------
def check_server_time(name):
    assert rest._time_decoder.decode(raw(name)).serverTime == 1499827319559


def check_exchange_info_docs(name):
    info = rest._exchange_info_decoder.decode(raw(name))
    symbol = info.symbols[0]
    assert (symbol.symbol, symbol.status, symbol.baseAsset, symbol.quoteAsset) == \
        ("ETHBTC", SymbolStatus.TRADING, "ETH", "BTC")
    assert all(t.known for t in symbol.orderTypes) and OrderType.LIMIT_MAKER in symbol.orderTypes
    assert symbol.defaultSelfTradePreventionMode is StpMode.NONE and symbol.permissionSets == [["SPOT", "MARGIN"]]
    assert info.rateLimits == [RateLimit()]  # Binance's example leaves a placeholder object here
    # The documented example publishes no filters: the node will not trade a symbol it cannot round to.
    with pytest.raises(LookupError, match="PRICE_FILTER or LOT_SIZE"):
        Instrument.from_exchange_info(info, "ETHBTC")


def check_exchange_info_2021(name):
    info = rest._exchange_info_decoder.decode(raw(name))
    btc = Instrument.from_exchange_info(info, "BTCUSDT")
    assert (btc.base, btc.quote, btc.tick_size, btc.step_size, btc.min_qty, btc.min_notional) == \
        ("BTC", "USDT", 0.01, 0.00001, 0.00001, 10.0)
    rules = btc.rules
    assert rules.status is SymbolStatus.TRADING and rules.accepts_new_orders and not rules.unknown
    assert set(rules.filters) == {"PRICE_FILTER", "PERCENT_PRICE", "LOT_SIZE", "MIN_NOTIONAL", "ICEBERG_PARTS",
                                  "MARKET_LOT_SIZE", "MAX_NUM_ORDERS", "MAX_NUM_ALGO_ORDERS"}
    assert rules.get("MARKET_LOT_SIZE").maxQty == 112.2110882 and rules.get("MAX_NUM_ORDERS").maxNumOrders == 200
    assert [r.rateLimitType for r in info.rateLimits] == [RateLimitType.REQUEST_WEIGHT, RateLimitType.ORDERS,
                                                          RateLimitType.ORDERS, RateLimitType.RAW_REQUESTS]
    # The recorded rules judge orders as the venue did: a 5 USDT order was under the 10 USDT minimum then.
    buy = filters.OrderIntent(OrderSide.BUY, OrderType.LIMIT_MAKER, 0.0001, 50_000.0)
    assert rules.check(buy, filters.AccountContext(reference_price=60_000.0)).filter == "MIN_NOTIONAL"


def check_symbol_ccxt(name):
    symbol = msgspec.json.decode(raw(name), type=SymbolInfo, strict=False)  # as rest.py decodes exchangeInfo
    rules = filters.SymbolRules.from_symbol_info(symbol)
    assert symbol.baseAssetPrecision == 8 and symbol.allowTrailingStop and not rules.unknown
    assert set(rules.filters) == {"PRICE_FILTER", "LOT_SIZE", "ICEBERG_PARTS", "MARKET_LOT_SIZE", "TRAILING_DELTA",
                                  "PERCENT_PRICE_BY_SIDE", "NOTIONAL", "MAX_NUM_ORDERS", "MAX_NUM_ALGO_ORDERS"}
    side = rules.get("PERCENT_PRICE_BY_SIDE")
    assert (side.bidMultiplierUp, side.bidMultiplierDown, side.askMultiplierUp, side.askMultiplierDown) == \
        (5.0, 0.2, 5.0, 0.2)
    notional = rules.get("NOTIONAL")
    assert (notional.minNotional, notional.maxNotional, notional.applyMinToMarket) == (5.0, 9_000_000.0, True)
    assert rules.get("TRAILING_DELTA").maxTrailingBelowDelta == 2000 and rules.get("ICEBERG_PARTS").limit == 10
    assert symbol.defaultSelfTradePreventionMode is StpMode.EXPIRE_MAKER


def check_depth(name):
    snapshot = rest._snapshot_decoder.decode(raw(name))
    assert snapshot.lastUpdateId == 1027024
    assert snapshot.bids == [(4.0, 431.0)] and snapshot.asks == [(4.000002, 12.0)]
    book = LocalBook("LTCBTC")
    assert book.on_snapshot(snapshot, 0.0) and book.mid() == pytest.approx(4.000001)


def check_new_order_ack(name):
    reply = rest._order_decoder.decode(raw(name))
    assert (reply.orderId, reply.orderListId, reply.clientOrderId) == (28, -1, "6gCrw2kRUAF9CvJDGP16IP")
    assert reply.status is None  # an ACK says nothing about the status...
    oms = oms_with("6gCrw2kRUAF9CvJDGP16IP")
    oms.on_reply(reply, 1.0)
    order = oms.get("6gCrw2kRUAF9CvJDGP16IP")
    assert order.status is Status.NEW and order.order_id == 28  # ...but the venue has the order


def check_new_order_result(name):
    reply = rest._order_decoder.decode(raw(name))
    assert (reply.status, reply.type, reply.side, reply.executedQty) == \
        (OrderStatus.FILLED, OrderType.MARKET, OrderSide.SELL, 10.0)
    assert reply.workingTime == 1507725176595 and reply.selfTradePreventionMode is StpMode.NONE
    oms = oms_with("6gCrw2kRUAF9CvJDGP16IP", side="SELL", qty=10.0)
    oms.on_reply(reply, 1.0)
    assert oms.get("6gCrw2kRUAF9CvJDGP16IP") is None and oms.outcomes == {"FILLED": 1}


def check_new_order_full(name):
    reply = rest._order_decoder.decode(raw(name))
    assert [f.tradeId for f in reply.fills] == [56, 57, 58, 59, 60]
    assert sum(f.qty for f in reply.fills) == reply.executedQty == 10.0
    assert reply.fills[1].commission == 19.995 and reply.fills[1].commissionAsset == "USDT"


def check_market_order_full(name):
    reply = rest._order_decoder.decode(raw(name))
    assert reply.status is OrderStatus.EXPIRED and reply.executedQty == 4.0 and len(reply.fills) == 2


def check_stp_taker(name):
    reply = rest._order_decoder.decode(raw(name))  # preventedMatches: read by no one, and no obstacle
    assert reply.status is OrderStatus.NEW and reply.fills == [] and reply.selfTradePreventionMode is \
        StpMode.EXPIRE_MAKER


def check_cancel_order(name):
    reply = rest._cancel_decoder.decode(raw(name))
    assert (reply.origClientOrderId, reply.clientOrderId, reply.status) == \
        ("myOrder1", "cancelMyOrder1", OrderStatus.CANCELED)
    assert (reply.price, reply.origQty, reply.side, reply.type) == (2.0, 1.0, OrderSide.BUY, OrderType.LIMIT)


def check_cancel_all(name):
    entries = rest._cancel_list_decoder.decode(raw(name))
    assert [e.is_order_list for e in entries] == [False, False, True]
    flat = [r for e in entries for r in e.cancelled_orders()]
    # The two orders, then the order list's two legs, each by the client id the node would know it by.
    assert [r.origClientOrderId for r in flat] == ["E6APeyTJvkMvLMYMqu1KQ4", "A3EF2HCwxgZPFMrfwbgrhv",
                                                    "CwOOIPHSmYywx6jZX77TdL", "461cPg51vQjV3zIMOXNz39"]
    assert all(r.status is OrderStatus.CANCELED for r in flat)
    assert entries[2].orderReports[0].type is OrderType.STOP_LOSS_LIMIT and entries[2].orderReports[0].stopPrice


def check_order_list(name):
    decoded = msgspec.json.decode(raw(name), type=OrderListReply | list[OrderListReply], strict=False)
    lists = decoded if isinstance(decoded, list) else [decoded]
    for order_list in lists:
        assert order_list.contingencyType.known and order_list.listStatusType.known
        assert order_list.listOrderStatus.known and len(order_list.orders) == 2
        for report in order_list.orderReports:
            assert report.status.known and report.orderListId == order_list.orderListId


def check_query_order(name):
    order = rest._open_order_decoder.decode(raw(name))
    assert (order.clientOrderId, order.status, order.price, order.origQty) == \
        ("myOrder1", OrderStatus.NEW, 0.1, 1.0)
    assert order.isWorking and order.workingTime == 1499827319559


def check_stp_maker(name):
    order = rest._open_order_decoder.decode(raw(name))
    assert order.status is OrderStatus.EXPIRED_IN_MATCH
    oms = oms_with("wpNzhSclc16pV8g5THIOR3", qty=1.2, price=1.2)
    oms.on_verified(order, 1.0)  # what the node does with a queried order
    assert oms.outcomes == {"EXPIRED": 1}


def check_open_orders(name):
    orders = rest._open_orders_decoder.decode(raw(name))
    assert [(o.clientOrderId, o.status, o.side, o.type) for o in orders] == \
        [("myOrder1", OrderStatus.NEW, OrderSide.BUY, OrderType.LIMIT)]


def check_account(name):
    info = rest._account_decoder.decode(raw(name))
    account = AccountState("BTC", "LTC", 0.0)
    account.on_account_info(info)
    assert account.synced and info.canTrade and info.accountType == "SPOT"
    assert account.total("BTC") == 4723846.89208129 and account.total("LTC") == 4763368.68006011


def check_error_invalid_symbol(name):
    exc = error(name)
    assert (exc.code, exc.msg, type(exc)) == (-1121, "Invalid symbol.", ve.BadRequest)


def check_error_cancel_restrictions(name):
    exc = error(name)
    # Not "unknown order": the cancel failed and the order may still rest.
    assert exc.code == -2011 and type(exc) is ve.CancelRejected


def check_error_stp_mode(name):
    exc = error(name)
    assert exc.code == -1013 and type(exc) is ve.FilterFailure


def check_rate_limit(name):
    limit = msgspec.json.decode(raw(name), type=RateLimit)
    assert limit.rateLimitType.known and limit.interval.known and limit.intervalNum >= 1 and limit.limit > 0


def check_filter(name):
    known, unknown = filters.decode_filters([msgspec.Raw(raw(name))])
    exchange_known, exchange_unknown = filters.decode_filters([msgspec.Raw(raw(name))], exchange=True)
    decoded = known + exchange_known
    assert len(decoded) == 1, name
    filter_type = json.loads(raw(name))["filterType"]
    assert type(decoded[0]).__struct_config__.tag == filter_type


def check_execution_report_docs(name):
    stream, executions, _, missed = user_stream()
    assert stream.handle(raw(name)) == "executionReport" and not missed
    report = executions[0]
    assert (report.c, report.S, report.o, report.x, report.X, report.i) == \
        ("mUvoqJxFIILMdfAW5iGSOW", OrderSide.BUY, OrderType.LIMIT, ExecutionType.NEW, OrderStatus.NEW, 4293153)
    assert (report.q, report.p, report.v, report.I, report.W, report.V) == \
        (1.0, 0.1026441, 3, 8641984, 1499405658657, StpMode.NONE)
    oms = oms_with("mUvoqJxFIILMdfAW5iGSOW")
    assert oms.on_execution(report, 1.0) is None and oms.get(report.c).status is Status.NEW


def check_market_order_report(name):
    report = DECODERS["executionReport"].decode(raw(name))  # the pre-WebSocket-API form: no envelope
    assert report.s == "LTCBNB" and report.o is OrderType.MARKET and report.x.known and report.X.known
    assert report.I in (62, 63, 65, 67)


def check_account_position(name):
    stream, _, positions, _ = user_stream()
    assert stream.handle(raw(name)) == "outboundAccountPosition"
    account = AccountState("ETH", "BTC", 0.0)
    account.on_position(positions[0])
    assert account.free["ETH"] == 10000.0 and account.locked["ETH"] == 0.0


def check_ws_api_event(name):
    stream, _, positions, _ = user_stream()
    assert stream.handle(raw(name)) == "outboundAccountPosition"
    assert [(r.a, r.f, r.l) for r in positions[0].B] == [("BTC", 11818.0, 182.0), ("USDT", 10580.0, 70.0)]


def check_market_order_position(name):
    position = DECODERS["outboundAccountPosition"].decode(raw(name))
    assert [(r.a, r.f) for r in position.B] == [("LTC", 3011.1174567), ("BNB", 996.1186567)]


def check_balance_update(name):
    stream, executions, positions, missed = user_stream()
    assert stream.handle(raw(name)) == "balanceUpdate" and not (executions or positions or missed)
    event = DECODERS["balanceUpdate"].decode(json.dumps(json.loads(raw(name))["event"]))
    assert (event.a, event.d, event.T) == ("BTC", 100.0, 1573200697068)


def check_external_lock_update(name):
    stream, _, _, missed = user_stream()
    assert stream.handle(raw(name)) == "externalLockUpdate" and not missed


def check_list_status(name):
    stream, _, _, missed = user_stream()
    assert stream.handle(raw(name)) == "listStatus" and not missed
    event = DECODERS["listStatus"].decode(json.dumps(json.loads(raw(name))["event"]))
    assert (event.g, event.c.value, event.l.value, event.L.value) == (2, "OCO", "EXEC_STARTED", "EXECUTING")
    assert [o.c for o in event.O] == ["AJYsMjErWJesZvqlJCTUgL", "bfYPSQdLoqAJeNrOr9adzq"]


def check_event_stream_terminated(name):
    stream, _, _, _ = user_stream()
    assert stream.handle(raw(name)) == "eventStreamTerminated"  # userstream.run resubscribes on it


def check_ws_api_server_shutdown(name):
    stream, _, _, missed = user_stream()
    assert stream.handle(raw(name)) == "serverShutdown" and not missed  # no subscriptionId: a connection event


def check_ws_api_success(name):
    reply = _response.decode(raw(name))
    assert reply.status == 200 and reply.error is None
    assert [(r.rateLimitType, r.intervalNum, r.limit, r.count) for r in reply.rateLimits] == [
        (RateLimitType.ORDERS, 10, 50, 12), (RateLimitType.ORDERS, 1, 160000, 4043),
        (RateLimitType.REQUEST_WEIGHT, 1, 6000, 321)]
    order = rest._order_decoder.decode(reply.result)  # order.place answers in the REST reply's shape
    assert order.status is OrderStatus.NEW and order.clientOrderId == "a097fe6304b20a7e4fc436"


def check_ws_api_error(name):
    reply = _response.decode(raw(name))
    assert reply.status == 400 and not reply.result and (reply.error.code, len(reply.rateLimits)) == (-2010, 3)
    assert type(ve.from_reply(reply.status, reply.error.code, reply.error.msg)) is ve.OrderRejected


def check_ws_api_time(name):
    reply = _response.decode(raw(name))
    assert reply.status == 200 and rest._time_decoder.decode(reply.result).serverTime == 1656400526260
    assert [(r.rateLimitType, r.count) for r in reply.rateLimits] == [(RateLimitType.REQUEST_WEIGHT, 70)]


def check_amend_reply(name):
    reply = msgspec.json.decode(raw(name), type=AmendReply, strict=False)
    order = reply.amendedOrder
    # An amendment reduces the quantity and, by default, renames the order.
    assert (order.qty, order.status, order.origClientOrderId, order.clientOrderId) == \
        (5.0, OrderStatus.NEW, "5xrgbMyg6z36NzBn2pbT8H", "PFaq6hIHxqFENGfdtn4J6Q")
    assert not reply.listStatus


def check_ws_api_subscribe(name):
    reply = _response.decode(raw(name))
    assert reply.status == 200 and _subscription.decode(reply.result).subscriptionId == 0


def check_stream_server_shutdown(name):
    md, _ = market_data()
    assert md._decode(raw(name)) == "serverShutdown" and md.malformed == 0


def check_diff_depth(name):
    md, book = market_data()
    event = md._decode(raw(name))
    assert (event.e, event.s, event.U, event.u, event.b, event.a) == \
        ("depthUpdate", "BNBBTC", 157, 160, [(0.0024, 10.0)], [(0.0026, 100.0)])


# -- derived fixtures: a documented payload with the fields one documented case changes ----------
def derived_report(name):
    stream, executions, _, missed = user_stream()
    assert stream.handle(raw(name)) == "executionReport" and not missed
    return executions[0]


def check_derived_canceled(name):
    report = derived_report(name)
    assert report.x is ExecutionType.CANCELED and report.client_id == "mUvoqJxFIILMdfAW5iGSOW"
    oms = oms_with("mUvoqJxFIILMdfAW5iGSOW")
    oms.on_execution(report, 1.0)
    assert oms.outcomes == {"CANCELED": 1}  # found by C, the cancelled order's id, not the cancel's own


def check_derived_rejected(name):
    report = derived_report(name)
    oms = oms_with(report.c)
    assert oms.on_execution(report, 1.0) is None and oms.outcomes == {"REJECTED": 1}
    assert report.r == "WOULD_MATCH_IMMEDIATELY"


def check_derived_replaced(name):
    report = derived_report(name)
    assert report.x is ExecutionType.REPLACED and report.q == 0.5
    oms = oms_with(report.c, qty=1.0)
    assert oms.on_execution(report, 1.0) is None
    order = oms.get(report.c)
    assert (order.qty, order.qty_steps, order.status, oms.amendments) == (0.5, 50_000_000, Status.NEW, 1)
    assert oms.exposure().buy_qty == 0.5  # the position limit counts the amended size


def check_derived_trade_prevention(name):
    report = derived_report(name)
    assert (report.x, report.X, report.l, report.A, report.B, report.pl) == \
        (ExecutionType.TRADE_PREVENTION, OrderStatus.EXPIRED_IN_MATCH, 0.0, 1.0, 1.0, 1.0)
    oms = oms_with(report.c)
    assert oms.on_execution(report, 1.0) is None  # prevented, not traded
    assert oms.outcomes == {"EXPIRED": 1} and oms.prevented_matches == 1


def check_derived_zero_quantity_trade(name):
    report = DECODERS["executionReport"].decode(raw(name))
    assert report.x is ExecutionType.TRADE and report.l == 0.0 and report.z == 4.0
    oms = oms_with(report.c, qty=6.0)
    assert oms.on_execution(report, 1.0) is None  # no zero fill...
    order = oms.get(report.c)
    assert order.filled == 4.0 and order.status is Status.PARTIALLY_FILLED  # ...its cumulative still counts
    assert oms.zero_qty_trades == 1


# file -> (message type, check)
FIXTURE_CHECKS = {
    "server_time.json": ("serverTime", check_server_time),
    "exchange_info.json": ("exchangeInfo", check_exchange_info_docs),
    "recorded/exchange_info_btcusdt_2021.json": ("exchangeInfo", check_exchange_info_2021),
    "recorded/exchange_info_symbol_btcusdt_ccxt.json": ("exchangeInfo symbol", check_symbol_ccxt),
    "depth.json": ("depth snapshot", check_depth),
    "new_order_ack.json": ("order reply", check_new_order_ack),
    "new_order_result.json": ("order reply", check_new_order_result),
    "new_order_full.json": ("order reply", check_new_order_full),
    "market_order_full.json": ("order reply", check_market_order_full),
    "stp_taker_order_prevented_matches.json": ("order reply", check_stp_taker),
    "cancel_order.json": ("cancel reply", check_cancel_order),
    "delete_open_orders.json": ("cancel-all reply", check_cancel_all),
    "new_order_list_oco.json": ("order list reply", check_order_list),
    "cancel_order_list.json": ("order list reply", check_order_list),
    "open_order_list.json": ("order list reply", check_order_list),
    "query_order.json": ("order query", check_query_order),
    "stp_maker_order_expired_in_match.json": ("order query", check_stp_maker),
    "open_orders.json": ("open orders", check_open_orders),
    "account.json": ("account", check_account),
    "error_reply.json": ("error reply", check_error_invalid_symbol),
    "error_cancel_restrictions.json": ("error reply", check_error_cancel_restrictions),
    "stp_error_mode_not_allowed.json": ("error reply", check_error_stp_mode),
    "rate_limit_request_weight.json": ("rate limit", check_rate_limit),
    "rate_limit_orders.json": ("rate limit", check_rate_limit),
    "rate_limit_raw_requests.json": ("rate limit", check_rate_limit),
    "execution_report_event.json": ("executionReport", check_execution_report_docs),
    "market_order_execution_report_new.json": ("executionReport", check_market_order_report),
    "market_order_execution_report_trade_1.json": ("executionReport", check_market_order_report),
    "market_order_execution_report_trade_2.json": ("executionReport", check_market_order_report),
    "market_order_execution_report_expired.json": ("executionReport", check_market_order_report),
    "derived/execution_report_canceled.json": ("executionReport (derived)", check_derived_canceled),
    "derived/execution_report_rejected.json": ("executionReport (derived)", check_derived_rejected),
    "derived/execution_report_replaced.json": ("executionReport (derived)", check_derived_replaced),
    "derived/execution_report_trade_prevention.json": ("executionReport (derived)", check_derived_trade_prevention),
    "derived/execution_report_trade_zero_quantity.json": ("executionReport (derived)",
                                                          check_derived_zero_quantity_trade),
    "account_position_event.json": ("outboundAccountPosition", check_account_position),
    "ws_api_event.json": ("outboundAccountPosition", check_ws_api_event),
    "market_order_account_position.json": ("outboundAccountPosition", check_market_order_position),
    "balance_update_event.json": ("balanceUpdate", check_balance_update),
    "external_lock_update_event.json": ("externalLockUpdate", check_external_lock_update),
    "list_status_event.json": ("listStatus", check_list_status),
    "event_stream_terminated_event.json": ("eventStreamTerminated", check_event_stream_terminated),
    "server_shutdown_ws_api.json": ("serverShutdown (WebSocket API)", check_ws_api_server_shutdown),
    "server_shutdown_stream_raw.json": ("serverShutdown (market stream)", check_stream_server_shutdown),
    "server_shutdown_stream_combined.json": ("serverShutdown (market stream)", check_stream_server_shutdown),
    "ws_api_order_place_response.json": ("WebSocket API reply", check_ws_api_success),
    "ws_api_time_response.json": ("WebSocket API reply", check_ws_api_time),
    "amend_keep_priority.json": ("amend reply", check_amend_reply),
    "ws_api_response_error.json": ("WebSocket API reply", check_ws_api_error),
    "ws_api_user_data_subscribe.json": ("WebSocket API reply", check_ws_api_subscribe),
    "ws_api_user_data_subscribe_signature.json": ("WebSocket API reply", check_ws_api_subscribe),
    "stream_diff_depth_event.json": ("diff-depth event", check_diff_depth),
    **{f"filter_{t.lower()}.json": ("filter", check_filter)
       for t in (*filters.SYMBOL_FILTER_TYPES, *filters.EXCHANGE_FILTER_TYPES)},
}


def fixture_files() -> list[str]:
    return sorted(str(p.relative_to(FIXTURES)) for p in FIXTURES.rglob("*.json"))


def test_every_fixture_has_a_decoder_and_every_decoder_a_fixture():
    files = set(fixture_files())
    assert files - set(FIXTURE_CHECKS) == set(), "fixtures with no decoder assigned"
    assert set(FIXTURE_CHECKS) - files == set(), "decoders assigned to fixtures that do not exist"


@pytest.mark.parametrize("name", sorted(FIXTURE_CHECKS))
def test_fixture_decodes_with_the_nodes_own_decoder(name):
    FIXTURE_CHECKS[name][1](name)


def test_fixture_counts_per_message_type(capsys):
    counts = Counter(kind for name, (kind, _) in FIXTURE_CHECKS.items() if (FIXTURES / name).exists())
    with capsys.disabled():
        print(f"\nBinance fixtures by message type ({sum(counts.values())} files):")
        for kind, n in sorted(counts.items()):
            print(f"  {n:3d}  {kind}")
    assert counts["executionReport"] >= 5 and counts["filter"] == 19


def test_a_documented_market_order_runs_through_the_oms_as_binance_reports_it():
    """NEW, two TRADEs of 2 each, then EXPIRED (the unfilled 2 of an IOC-like MARKET order):
    two fills counted once each, 4 filled, the order expired."""
    oms = oms_with("8LGC97RRgNPVQk979VIhjt", qty=6.0, price=1.0)
    fills = []
    for name in ("new", "trade_1", "trade_2", "trade_2", "expired"):  # trade_2 twice: a duplicate delivery
        report = DECODERS["executionReport"].decode(raw(f"market_order_execution_report_{name}.json"))
        fill = oms.on_execution(report, 1.0)
        if fill is not None:
            fills.append(fill)
    assert [(f.qty, f.price, f.commission, f.commission_asset) for f in fills] == [(2.0, 1.0, 0.001, "BNB")] * 2
    assert oms.outcomes == {"EXPIRED": 1} and oms.finished[-1].filled == 4.0


def test_an_undecodable_account_event_is_counted_and_makes_the_node_reconcile():
    stream, executions, _, missed = user_stream()
    broken = json.loads(raw("execution_report_event.json"))
    del broken["event"]["i"]  # a required field gone
    assert stream.handle(json.dumps(broken)) is None
    assert not executions and missed == [1] and stream.ledger.undecodable == {("user-stream", "executionReport"): 1}
    assert stream.handle(b"not json") is None and missed == [1, 1]
    assert stream.handle(json.dumps({"subscriptionId": 0, "event": {"e": "somethingNew", "E": 1}})) == "somethingNew"
    assert stream.ledger.unknown_events == {("user-stream", "somethingNew"): 1} and missed == [1, 1]


def test_an_unknown_enum_value_in_a_documented_payload_is_kept_counted_and_never_a_documented_member():
    stream, executions, _, _ = user_stream()
    changed = json.loads(raw("execution_report_event.json"))
    changed["event"]["X"] = "PENDING_SOMETHING"
    changed["event"]["V"] = "EXPIRE_EVERYTHING"
    assert stream.handle(json.dumps(changed)) == "executionReport"
    report = executions[0]
    assert not report.X.known and report.X.value == "PENDING_SOMETHING" and report.X is not OrderStatus.NEW
    assert stream.ledger.unknown_values[("executionReport", "V")] == 1
    asked = []
    oms = Oms("sg-1", on_verify=asked.append)
    oms.on_sent(ManagedOrder(report.c, "BUY", 1, 1, 0.1, 1.0, 1, 0, 0.0))
    oms.on_execution(report, 1.0)
    assert oms.get(report.c).status is Status.PENDING_NEW and asked == [report.c]
    # An unknown symbol status is not TRADING.
    symbol = json.loads(raw("recorded/exchange_info_btcusdt_2021.json"))
    symbol["symbols"][0]["status"] = "PAUSED_FOR_LUNCH"
    rules = Instrument.from_exchange_info(rest._exchange_info_decoder.decode(json.dumps(symbol)), "BTCUSDT").rules
    assert not rules.status.known and not rules.accepts_new_orders
    assert filters.symbol_refusal(rules.status) == "symbol-UNKNOWN"


def test_an_unknown_filter_type_is_kept_and_does_not_block():
    info = json.loads(raw("recorded/exchange_info_btcusdt_2021.json"))
    info["symbols"][0]["filters"].append({"filterType": "SOMETHING_NEW", "limit": 3})
    rules = Instrument.from_exchange_info(rest._exchange_info_decoder.decode(json.dumps(info)), "BTCUSDT").rules
    assert [u.filter_type for u in rules.unknown] == ["SOMETHING_NEW"]
    intent = filters.OrderIntent(OrderSide.BUY, OrderType.LIMIT_MAKER, 0.001, 60_000.0)
    assert rules.check(intent, filters.AccountContext(reference_price=60_000.0)) is None


def test_an_undecodable_depth_event_is_counted_and_a_market_stream_event_of_another_type_ignored():
    md, book = market_data()
    assert md.handle(b'{"e":"depthUpdate","E":1,"s":"BNBBTC","U":"x"}') is None
    assert md.malformed == 1 and md.ledger.undecodable == {("market-stream", "depthUpdate"): 1}
    assert md.handle(b'{"e":"trade","E":1}') is None and md.ledger.unknown_events == {("market-stream", "trade"): 1}
    book.on_snapshot(rest._snapshot_decoder.decode(b'{"lastUpdateId": 156, "bids": [], "asks": []}'), 0.0)
    assert md.handle(raw("stream_diff_depth_event.json")) is Applied.APPLIED and book.update_id == 160


def test_order_reply_decoders_accept_every_documented_order_status():
    for status in OrderStatus:
        reply = rest._order_decoder.decode(json.dumps({"symbol": "X", "orderId": 1, "clientOrderId": "c",
                                                       "status": status.value}))
        assert reply.status is status
    open_order = json.loads(raw("query_order.json"))
    open_order["status"] = "SOMETHING"
    assert not rest._open_order_decoder.decode(json.dumps(open_order)).status.known
    assert isinstance(rest._open_order_decoder.decode(json.dumps(open_order)), OpenOrder)
