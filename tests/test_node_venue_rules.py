"""The venue's own rules, applied by the node before it sends: every filter
Binance documents (filters.md) refuses the order that breaks it, with the
filter named as the venue would name it ("Filter failure: X"), and every
symbol status other than TRADING refuses new orders and halts quoting.
Sans-I/O: the rules come from the recorded BTCUSDT exchangeInfo
(tests/fixtures/binance/recorded), the order gate and the engine are driven
without a network.
"""
import dataclasses
import json
from pathlib import Path

import msgspec
import pytest

from tests.nodeproc import to_toml
from understudy import config as config_mod
from understudy.config import Secrets
from understudy.coordinator.lease import Lease
from understudy.node import filters, rest
from understudy.node import venue_errors as ve
from understudy.node.engine import NodeEngine
from understudy.node.filters import AccountContext, OrderIntent, SymbolRules
from understudy.node.instrument import Instrument
from understudy.node.messages import OrderSide, OrderType, SymbolInfo, SymbolStatus
from understudy.node.oms import ManagedOrder
from understudy.node.order_gate import NotPermitted, OrderGate
from understudy.node.userstream import UserStream
from understudy.node.venue_clock import VenueClock

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "binance"
BUY, SELL = OrderSide.BUY, OrderSide.SELL
LIMIT, LIMIT_MAKER, MARKET = OrderType.LIMIT, OrderType.LIMIT_MAKER, OrderType.MARKET
STOP_LOSS_LIMIT = OrderType.STOP_LOSS_LIMIT
MID = 60_000.0
ACCOUNT = AccountContext(reference_price=MID)


def recorded_symbol() -> SymbolInfo:
    """BTCUSDT's exchangeInfo entry with today's filters, as ccxt recorded it."""
    return msgspec.json.decode((FIXTURES / "recorded/exchange_info_symbol_btcusdt_ccxt.json").read_bytes(),
                               type=SymbolInfo, strict=False)


def documented_filter(filter_type: str) -> dict:
    return json.loads((FIXTURES / f"filter_{filter_type.lower()}.json").read_text())


def rules_with(*extra: dict, status: str | None = None, exchange: tuple = (), **flags) -> SymbolRules:
    """The recorded BTCUSDT, with filters added or replaced (given in exchangeInfo's form)."""
    symbol = recorded_symbol()
    by_type = {json.loads(bytes(raw))["filterType"]: json.loads(bytes(raw)) for raw in symbol.filters}
    for f in extra:
        by_type[f["filterType"]] = f
    symbol = msgspec.structs.replace(symbol, filters=[msgspec.Raw(json.dumps(f).encode()) for f in by_type.values()],
                                     **({"status": SymbolStatus(status)} if status else {}), **flags)
    return SymbolRules.from_symbol_info(symbol, [msgspec.Raw(json.dumps(f).encode()) for f in exchange])


def maker(side=BUY, qty=0.001, price=59_990.0, **kw) -> OrderIntent:
    return OrderIntent(side, LIMIT_MAKER, qty, price, **kw)


# (filter, rules, order, account, words the refusal's detail must contain). Each case breaks exactly
# that filter; the filters are BTCUSDT's as recorded, or filters.md's documented example where the
# recorded symbol does not carry the filter.
FILTER_CASES = {
    "PRICE_FILTER": [
        (rules_with(), maker(price=59_990.005), ACCOUNT, "not a multiple of tickSize"),
        (rules_with(), maker(price=0.001), ACCOUNT, "under minPrice"),
        (rules_with(), maker(price=1_000_000.01, side=SELL), AccountContext(reference_price=900_000.0),
         "over maxPrice"),
        (rules_with(), OrderIntent(SELL, STOP_LOSS_LIMIT, 0.001, 59_000.0, stop_price=59_000.001), ACCOUNT,
         "stopPrice"),
    ],
    "PERCENT_PRICE_BY_SIDE": [
        (rules_with(), maker(side=BUY, price=MID * 5.01), ACCOUNT, "over 5.0 x the average price"),
        (rules_with(), maker(side=SELL, price=MID * 0.19), ACCOUNT, "under 0.2 x the average price"),
        (rules_with(), maker(), AccountContext(), "no reference price"),
    ],
    "PERCENT_PRICE": [
        (rules_with(documented_filter("PERCENT_PRICE")), maker(price=MID * 1.31), ACCOUNT, "over 1.3"),
        (rules_with(documented_filter("PERCENT_PRICE")), maker(price=MID * 0.69), ACCOUNT, "under 0.7"),
    ],
    "LOT_SIZE": [
        (rules_with(), maker(qty=0.000005), ACCOUNT, "under minQty"),
        (rules_with(), maker(qty=9000.00001, price=100.0), AccountContext(reference_price=100.0), "over maxQty"),
        (rules_with(), maker(qty=0.0010005), ACCOUNT, "not a multiple of stepSize"),
    ],
    "NOTIONAL": [
        (rules_with(), maker(qty=0.00008), ACCOUNT, "under minNotional 5.0"),
        (rules_with({"filterType": "NOTIONAL", "minNotional": "5", "applyMinToMarket": True,
                     "maxNotional": "1000", "applyMaxToMarket": True, "avgPriceMins": 5}),
         OrderIntent(BUY, MARKET, 0.02), ACCOUNT, "over maxNotional 1000.0"),
    ],
    "MIN_NOTIONAL": [
        (rules_with(documented_filter("MIN_NOTIONAL") | {"minNotional": "10"}), maker(qty=0.00015), ACCOUNT,
         "under minNotional 10.0"),
    ],
    "ICEBERG_PARTS": [
        (rules_with(), maker(qty=0.011, iceberg_qty=0.001), ACCOUNT, "11 parts"),
    ],
    "MARKET_LOT_SIZE": [
        (rules_with(), OrderIntent(SELL, MARKET, 128.6), ACCOUNT, "over maxQty 128.52621715"),
        (rules_with(documented_filter("MARKET_LOT_SIZE")), OrderIntent(SELL, MARKET, 0.0005), ACCOUNT,
         "under minQty"),
    ],
    "TRAILING_DELTA": [
        (rules_with(), OrderIntent(BUY, STOP_LOSS_LIMIT, 0.001, 61_000.0, stop_price=61_000.0, trailing_delta=5),
         ACCOUNT, "outside [10, 2000]"),
        (rules_with(), OrderIntent(SELL, STOP_LOSS_LIMIT, 0.001, 59_000.0, stop_price=59_000.0,
                                   trailing_delta=2001), ACCOUNT, "outside [10, 2000]"),
    ],
    "MAX_NUM_ORDERS": [
        (rules_with(), maker(), AccountContext(open_orders=200, reference_price=MID), "200 orders open"),
    ],
    "MAX_NUM_ALGO_ORDERS": [
        (rules_with(), OrderIntent(SELL, STOP_LOSS_LIMIT, 0.001, 59_000.0, stop_price=59_000.0),
         AccountContext(open_orders=5, open_algo_orders=5, reference_price=MID), "5 algo orders open"),
    ],
    "MAX_NUM_ICEBERG_ORDERS": [
        (rules_with(documented_filter("MAX_NUM_ICEBERG_ORDERS")), maker(qty=0.002, iceberg_qty=0.001),
         AccountContext(open_iceberg_orders=5, reference_price=MID), "5 iceberg orders open"),
    ],
    "MAX_NUM_ORDER_LISTS": [
        (rules_with(documented_filter("MAX_NUM_ORDER_LISTS")), maker(in_order_list=True),
         AccountContext(open_order_lists=20, reference_price=MID), "20 order lists open"),
    ],
    "MAX_POSITION": [
        (rules_with(documented_filter("MAX_POSITION")), maker(qty=0.5),
         AccountContext(base_held=9.0, open_buy_qty=0.6, reference_price=MID), "would exceed maxPosition 10.0"),
    ],
    "EXCHANGE_MAX_NUM_ORDERS": [
        (rules_with(exchange=(documented_filter("EXCHANGE_MAX_NUM_ORDERS"),)), maker(),
         AccountContext(open_orders=3, open_orders_exchange=1000, reference_price=MID), "1000 orders"),
    ],
    "EXCHANGE_MAX_NUM_ALGO_ORDERS": [
        # The symbol's own algo limit raised out of the way: the exchange-wide one is the one broken.
        (rules_with({"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 1000},
                    exchange=(documented_filter("EXCHANGE_MAX_NUM_ALGO_ORDERS"),)),
         OrderIntent(SELL, STOP_LOSS_LIMIT, 0.001, 59_000.0, stop_price=59_000.0),
         AccountContext(open_algo_orders=200, reference_price=MID), "200 algo orders"),
    ],
    "EXCHANGE_MAX_NUM_ICEBERG_ORDERS": [
        (rules_with(exchange=(documented_filter("EXCHANGE_MAX_NUM_ICEBERG_ORDERS"),)),
         maker(qty=0.002, iceberg_qty=0.001), AccountContext(open_iceberg_orders=10_000, reference_price=MID),
         "10000 iceberg orders"),
    ],
    "EXCHANGE_MAX_NUM_ORDER_LISTS": [
        (rules_with(exchange=(documented_filter("EXCHANGE_MAX_NUM_ORDER_LISTS"),)), maker(in_order_list=True),
         AccountContext(open_order_lists=20, reference_price=MID), "20 order lists"),
    ],
}


def test_every_documented_filter_has_a_refusal_case():
    documented = set(filters.SYMBOL_FILTER_TYPES) | set(filters.EXCHANGE_FILTER_TYPES)
    assert documented - set(FILTER_CASES) == {"MAX_NUM_ORDER_AMENDS"}  # an amendment, not an order: below


@pytest.mark.parametrize("filter_type, rules, intent, account, words",
                         [(f, *case) for f, cases in FILTER_CASES.items() for case in cases],
                         ids=[f"{f}-{i}" for f, cases in FILTER_CASES.items() for i in range(len(cases))])
def test_each_filter_refuses_the_order_that_breaks_it(filter_type, rules, intent, account, words):
    refusal = rules.check(intent, account)
    assert refusal is not None and refusal.filter == filter_type, refusal
    assert refusal.reason == f"filter-{filter_type}" and words in refusal.detail, refusal.detail


@pytest.mark.parametrize("filter_type", sorted(FILTER_CASES))
def test_each_filter_lets_through_an_order_within_it(filter_type):
    """The same rules pass an order that keeps inside every limit, so a refusal above is that filter's."""
    rules, intent, account, _ = FILTER_CASES[filter_type][0]
    inside = dataclasses.replace(intent, qty=0.001, iceberg_qty=None if intent.iceberg_qty is None else 0.001,
                                 trailing_delta=None if intent.trailing_delta is None else 100,
                                 price=None if intent.price is None else (59_990.0 if intent.side is BUY
                                                                          else 60_010.0),
                                 stop_price=None if intent.stop_price is None else 59_000.0)
    assert rules.check(inside, AccountContext(base_held=1.0, reference_price=MID)) is None


def test_max_num_order_amends_refuses_one_amendment_too_many():
    rules = rules_with(documented_filter("MAX_NUM_ORDER_AMENDS"))
    assert rules.check_amend(9) is None
    refusal = rules.check_amend(10)
    assert refusal.reason == "filter-MAX_NUM_ORDER_AMENDS" and "at most 10" in refusal.detail


def test_symbol_permissions_refuse_what_the_symbol_does_not_allow():
    no_market = rules_with(orderTypes=[LIMIT, LIMIT_MAKER])
    assert no_market.check(OrderIntent(BUY, MARKET, 0.001), ACCOUNT).filter == "ORDER_TYPE"
    assert rules_with(icebergAllowed=False).check(maker(iceberg_qty=0.0005, qty=0.001), ACCOUNT).filter == "ICEBERG"
    assert rules_with(isSpotTradingAllowed=False).check(maker(), ACCOUNT).filter == "SPOT_TRADING"


# -- the gate: refused before sending, counted by reason -------------------------------------------
class _NoVenue:
    """Stands where VenueRest would: a refused order must never reach it."""

    sent = []

    async def _post_order_unguarded(self, params):
        self.sent.append(params)
        raise AssertionError("an order the venue would refuse was sent")


def _gate(rules: SymbolRules, account: AccountContext = ACCOUNT, symbol_refusal=lambda: None):
    instrument = Instrument("BTCUSDT", "BTC", "USDT", 0.01, 0.00001, 0.00001, 5.0, rules)
    risk = msgspec.convert({"max_position": 10.0, "max_order_notional": 1e9, "max_open_orders": 1000,
                            "price_band_bps": 1e6, "max_book_age_s": 2.0, "daily_loss_limit": 1e9},
                           config_mod.RiskSection)
    from understudy.node.oms import Oms
    from understudy.node.risk import RiskView
    view = RiskView(mid=MID, book_age_s=0.1, position=0.0, open_orders=0, open_buy_qty=0.0, open_sell_qty=0.0,
                    daily_pnl=0.0, panic=False)
    clock = VenueClock(50, 60)
    clock.on_round_trip(0.0, 1_700_000_000_000, 0.001)
    return OrderGate(_NoVenue(), instrument, Oms("sg-1"), risk, lambda: Lease.solo(0), lambda: view, 80, clock,
                     5000, clock=lambda: 0.002, symbol_refusal=symbol_refusal, account_context=lambda: account)


def _order(price: float, qty: float, side: str = "BUY") -> ManagedOrder:
    ticks, steps = round(price / 0.01), round(qty / 0.00001)
    return ManagedOrder("e0.sg-1.x_1", side, ticks, steps, ticks * 0.01, steps * 0.00001, 0, 0, 0.0)


@pytest.mark.parametrize("order, account, reason", [
    (_order(59_990.0, 0.00005), ACCOUNT, "filter-NOTIONAL"),  # 3 USDT: under BTCUSDT's 5
    (_order(MID * 5.5, 0.001), ACCOUNT, "filter-PERCENT_PRICE_BY_SIDE"),
    (_order(59_990.0, 0.001), AccountContext(open_orders=200, reference_price=MID), "filter-MAX_NUM_ORDERS"),
])
async def test_the_gate_refuses_before_sending_and_counts_the_filter(order, account, reason):
    gate = _gate(rules_with(), account)
    with pytest.raises(NotPermitted) as refused:
        await gate.send(order)
    assert refused.value.reason == reason and refused.value.detail
    assert gate.refusals == {reason: 1} and gate.sent == 0 and _NoVenue.sent == []


# -- symbol states ----------------------------------------------------------------------------------
NOT_TRADING = [s for s in SymbolStatus if s is not SymbolStatus.TRADING]


def _engine(tmp_path, status: str) -> NodeEngine:
    """An engine wired as start() leaves it, without a network: quoting until the symbol says otherwise."""
    settings = {
        "node": {"id": "sg-1", "state_dir": str(tmp_path)},
        "venue": {"rest_url": "http://127.0.0.1:1", "stream_url": "ws://127.0.0.1:1",
                  "ws_api_url": "ws://127.0.0.1:1/ws-api/v3", "api_key": {"env": "K"}, "api_secret": {"env": "S"}},
        "market": {"symbol": "BTCUSDT"},
        "strategy": {"order_qty": 0.001},
        "risk": {"max_position": 0.01, "max_order_notional": 1000.0, "daily_loss_limit": 100.0},
        "admin": {"token": {"env": "T"}},
    }
    engine = NodeEngine(msgspec.convert(settings, config_mod.NodeConfig), Secrets("k", "s", "t"), clock=lambda: 10.0)
    info = json.loads((FIXTURES / "recorded/exchange_info_btcusdt_2021.json").read_text())
    info["symbols"][0]["status"] = status
    engine.instrument = Instrument.from_exchange_info(rest._exchange_info_decoder.decode(json.dumps(info)),
                                                      "BTCUSDT")
    from understudy.node.account import AccountState, DayReference
    from understudy.node.messages import AccountInfo, Balance
    engine.account = AccountState("BTC", "USDT", 0.0)
    engine.account.on_account_info(AccountInfo(balances=[Balance(asset="USDT", free=1000.0, locked=0.0)]))
    engine.day = DayReference("2026-12-02", 0.0, 1000.0)
    engine.book.on_snapshot(rest._snapshot_decoder.decode(b'{"lastUpdateId": 1, "bids": [["59999", "1"]], '
                                                          b'"asks": [["60001", "1"]]}'), 10.0)
    engine.venue_clock.on_round_trip(9.999, 1_700_000_000_000, 10.0)
    engine.userstream = UserStream("ws://unused", "k", "s", lambda e: None, lambda e: None, lambda: None)
    engine.userstream.subscribed.set()
    engine.gate = _gate(engine.instrument.rules, symbol_refusal=engine.symbol_problem)
    return engine


def test_a_trading_symbol_is_quoted(tmp_path):
    engine = _engine(tmp_path, "TRADING")
    engine._evaluate_quoting()
    assert engine.quoting and engine.halt_reasons == [] and engine.symbol_problem() is None


@pytest.mark.parametrize("status", [s.value for s in NOT_TRADING] + ["SOMETHING_NEW"])
async def test_each_symbol_state_but_trading_halts_quoting_and_refuses_orders(tmp_path, status):
    engine = _engine(tmp_path, status)
    name = status if status != "SOMETHING_NEW" else "UNKNOWN"
    engine._evaluate_quoting()
    assert not engine.quoting and engine.halt_reasons == [f"symbol-{name}"]
    with pytest.raises(NotPermitted) as refused:
        await engine.gate.send(_order(59_990.0, 0.001))
    assert refused.value.reason == f"symbol-{name}" and "BTCUSDT is not trading" in refused.value.detail
    assert engine.gate.refusals == {f"symbol-{name}": 1} and _NoVenue.sent == []


def test_the_venue_saying_the_market_is_closed_halts_at_once(tmp_path):
    """-2010 "Market is closed." (errors.md: "The symbol is not trading.") halts before exchangeInfo
    says so, and asks exchangeInfo at once."""
    error = ve.from_reply(400, -2010, "Market is closed.")
    assert isinstance(error, ve.MarketClosed) and isinstance(error, ve.OrderRejected)
    assert type(ve.from_reply(400, -2010, "Account has insufficient balance for requested action.")) is \
        ve.OrderRejected
    engine = _engine(tmp_path, "TRADING")
    engine._evaluate_quoting()
    assert engine.quoting and not engine.rules_refresh.is_set()
    engine.on_market_closed("e0.sg-1.x_1")
    assert not engine.quoting and engine.halt_reasons == ["symbol-closed-by-venue"]
    assert engine.rules_refresh.is_set() and engine.market_closed_refusals == 1


# -- the configuration key ---------------------------------------------------------------------------
@pytest.mark.parametrize("value, message", [
    (0.5, "market.exchange_info_interval_s: expected a number >= 1"),
    (7200, "market.exchange_info_interval_s: expected a number <= 3600"),
    ("often", "market.exchange_info_interval_s: expected a number, got 'often'"),
])
def test_the_exchange_info_interval_is_validated(tmp_path, value, message):
    settings = {
        "node": {"id": "sg-1"},
        "venue": {"rest_url": "http://h", "stream_url": "ws://h", "ws_api_url": "ws://h/ws-api/v3",
                  "api_key": {"env": "K"}, "api_secret": {"env": "S"}},
        "market": {"symbol": "BTCUSDT", "exchange_info_interval_s": value},
        "strategy": {"order_qty": 0.001},
        "risk": {"max_position": 0.01, "max_order_notional": 1000.0, "daily_loss_limit": 100.0},
        "admin": {"token": {"env": "T"}},
    }
    path = tmp_path / "node.toml"
    path.write_text(to_toml(settings))
    with pytest.raises(config_mod.ConfigError) as refused:
        config_mod.load(path)
    assert message in str(refused.value)
    settings["market"].pop("exchange_info_interval_s")
    path.write_text(to_toml(settings))
    assert config_mod.load(path).market.exchange_info_interval_s == 30.0


async def test_a_new_order_of_an_older_epoch_on_the_user_stream_is_swept_at_once(tmp_path):
    """The typed execution type still drives the orphan sweep: a NEW report for an order of an
    older epoch, seen while holding the lock, is cancelled without waiting for a reconcile."""
    import asyncio
    import types

    from understudy.node.messages import ExecutionReport, ExecutionType, OrderStatus

    engine = _engine(tmp_path, "TRADING")
    engine.solo = False
    engine.trading_lock = types.SimpleNamespace(lease=Lease(7, safe_deadline=1e9))
    swept = []

    async def sweep(client_ids):
        swept.extend(client_ids)
        return len(client_ids)

    engine.sweep_orphans = sweep
    report = ExecutionReport(e="executionReport", E=1, s="BTCUSDT", c="e5.sg-2.abc_1", S=OrderSide.SELL,
                             o=OrderType.LIMIT_MAKER, q=0.001, p=60_010.0, x=ExecutionType.NEW, X=OrderStatus.NEW,
                             i=9, l=0.0, z=0.0, L=0.0, T=1)
    engine._on_execution(report)
    await asyncio.sleep(0)
    assert swept == ["e5.sg-2.abc_1"]
