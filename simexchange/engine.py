"""The matching engine: accounts, orders, price-time matching and settlement.

Sans-I/O: every call mutates state and appends events to `outbox`; the server
drains the outbox and turns events into REST replies and stream messages.
"""
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

from . import errors, orderlist
from .book import OrderBook
from .orderlist import Leg, OrderList
from .symbols import SymbolSpec
from .units import SCALE, notional

NEW, PARTIALLY_FILLED, FILLED = "NEW", "PARTIALLY_FILLED", "FILLED"
CANCELED, EXPIRED, EXPIRED_IN_MATCH = "CANCELED", "EXPIRED", "EXPIRED_IN_MATCH"
OPEN_STATUSES = (NEW, PARTIALLY_FILLED)

ORDER_TYPES = ("LIMIT", "LIMIT_MAKER", "MARKET")  # what POST /api/v3/order takes; stops come in order lists
MARKET_TYPES = ("MARKET", "STOP_LOSS")  # STOP_LOSS "will execute a MARKET order when the conditions are met"
TIME_IN_FORCE = ("GTC", "IOC", "FOK")
SIDES = ("BUY", "SELL")

# Binance keeps finished orders queryable for a while; bound the memory.
FINISHED_ORDERS_KEPT = 200_000


@dataclass(slots=True, eq=False)
class Order:
    order_id: int
    client_order_id: str
    account: str
    symbol: str
    side: str
    type: str
    time_in_force: str
    price: int
    orig_qty: int
    quote_order_qty: int
    created_ms: int
    executed_qty: int = 0
    cum_quote: int = 0
    status: str = NEW
    updated_ms: int = 0
    working_ms: int = -1
    locked: int = 0  # funds still held for this order: quote for a buy, base for a sell
    stop_price: int = 0
    order_list_id: int = -1
    pending: bool = False  # a stop waiting for its trigger: off the book; its OCO's limit leg holds the funds

    @property
    def is_buy(self) -> bool:
        return self.side == "BUY"

    @property
    def is_market(self) -> bool:
        return self.type in MARKET_TYPES

    @property
    def remaining(self) -> int:
        return self.orig_qty - self.executed_qty

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


@dataclass(slots=True)
class Account:
    api_key: str
    secret: str
    free: dict = field(default_factory=dict)
    locked: dict = field(default_factory=dict)
    internal: bool = False  # the synthetic market's own participants

    def lock(self, asset: str, amount: int) -> None:
        if self.free.get(asset, 0) < amount:
            raise errors.rejected(errors.INSUFFICIENT_BALANCE)
        self.free[asset] -= amount
        self.locked[asset] = self.locked.get(asset, 0) + amount

    def unlock(self, asset: str, amount: int) -> None:
        self.locked[asset] -= amount
        self.free[asset] = self.free.get(asset, 0) + amount

    def spend_locked(self, asset: str, amount: int) -> None:
        self.locked[asset] -= amount

    def credit(self, asset: str, amount: int) -> None:
        self.free[asset] = self.free.get(asset, 0) + amount


@dataclass(slots=True)
class Execution:
    """One executionReport: the order plus the fields that vary per report."""

    order: Order
    exec_type: str
    status: str
    executed_qty: int
    cum_quote: int
    event_ms: int
    last_qty: int = 0
    last_price: int = 0
    commission: int = 0
    commission_asset: str | None = None
    trade_id: int = -1
    is_maker: bool = False
    cancel_client_order_id: str = ""
    reject_reason: str = "NONE"
    working: bool = False  # executionReport `w`: is the order on the book


@dataclass(slots=True)
class ListStatus:
    """One listStatus event: an order list was placed or finished (its statuses as they were then)."""

    order_list: OrderList
    event_ms: int
    status_type: str
    order_status: str


@dataclass(slots=True)
class Trade:
    symbol: str
    trade_id: int
    price: int
    qty: int
    time_ms: int
    buyer_is_maker: bool
    buy_order_id: int
    sell_order_id: int


@dataclass(slots=True)
class BalanceUpdate:
    account: str
    assets: tuple
    event_ms: int


@dataclass(slots=True)
class OrderDone:
    """An order left the book (filled, cancelled or expired)."""

    order: Order
    event_ms: int


class MatchingEngine:
    def __init__(self, specs: list[SymbolSpec], clock_ms: Callable[[], int],
                 maker_fee_ppm: int = 1000, taker_fee_ppm: int = 1000, clock_us: Callable[[], int] | None = None):
        self.specs = {s.symbol: s for s in specs}
        self.books = {s.symbol: OrderBook(s.symbol) for s in specs}
        self.clock_ms = clock_ms
        self.clock_us = clock_us or (lambda: clock_ms() * 1000)
        self.maker_fee_ppm = maker_fee_ppm
        self.taker_fee_ppm = taker_fee_ppm
        self.accounts: dict[str, Account] = {}
        self.open_orders: dict[int, Order] = {}
        self.finished: OrderedDict[int, Order] = OrderedDict()
        self.latest_by_client_id: dict[tuple[str, str, str], int] = {}
        self.next_order_id = 1
        self.next_trade_id = 1
        self.outbox: list = []
        self._touched: dict[str, set] = {}
        self.last_price: dict[str, int] = {}  # of the symbol's last trade: what stops trigger on
        self.pending_stops: dict[str, list[Order]] = {s.symbol: [] for s in specs}
        self.order_lists: OrderedDict[int, OrderList] = OrderedDict()
        self.list_by_client_id: dict[tuple[str, str], int] = {}  # (account, listClientOrderId) -> latest list
        self.next_order_list_id = 1

    # -- accounts -----------------------------------------------------------
    def add_account(self, api_key: str, secret: str, balances: dict[str, int], internal: bool = False) -> Account:
        account = Account(api_key, secret, dict(balances), {a: 0 for a in balances}, internal)
        self.accounts[api_key] = account
        return account

    def drain(self) -> list:
        self._flush_balances()
        out, self.outbox = self.outbox, []
        return out

    # -- queries --------------------------------------------------------------
    def spec(self, symbol: str) -> SymbolSpec:
        spec = self.specs.get(symbol)
        if spec is None:
            raise errors.invalid_symbol()
        return spec

    def find_order(self, account: str, symbol: str, order_id: int | None, client_order_id: str | None) -> Order:
        if order_id is None and client_order_id is not None:
            order_id = self.latest_by_client_id.get((account, symbol, client_order_id))
        order = self.open_orders.get(order_id) or self.finished.get(order_id)
        if order is None or order.account != account or order.symbol != symbol:
            raise errors.order_does_not_exist()
        if client_order_id is not None and order.client_order_id != client_order_id:
            raise errors.order_does_not_exist()
        return order

    def orders_of(self, account: str, symbol: str | None) -> list[Order]:
        return [o for o in self.open_orders.values()
                if o.account == account and (symbol is None or o.symbol == symbol)]

    # -- order entry ----------------------------------------------------------
    def _admit(self, not_after_us: int | None) -> None:
        """Binance's second recvWindow check, made here, as the matching engine takes the request up:
        a request whose `timestamp + recvWindow` has passed is refused (timing.py has the rule)."""
        if not_after_us is not None and self.clock_us() > not_after_us:
            raise errors.outside_recv_window()

    def place(self, account_key: str, symbol: str, side: str, order_type: str, time_in_force: str,
              price: int, qty: int, quote_order_qty: int, client_order_id: str,
              not_after_us: int | None = None) -> Order:
        """Validates, matches and books an order. Raises VenueError on rejection."""
        self._admit(not_after_us)
        spec = self.spec(symbol)
        account = self.accounts[account_key]
        if any(o.client_order_id == client_order_id for o in self.orders_of(account_key, symbol)):
            raise errors.rejected(errors.DUPLICATE_ORDER)
        self._check_filters(spec, order_type, price, qty, quote_order_qty)
        book = self.books[symbol]
        is_buy = side == "BUY"
        opposite = book.asks if is_buy else book.bids

        if order_type == "LIMIT_MAKER" and self._crosses(is_buy, price, opposite.best_price()):
            raise errors.rejected(errors.WOULD_TAKE)
        if order_type == "MARKET" and not len(opposite):
            raise errors.rejected("Market is closed.")  # nothing to trade against, as on an empty venue book

        now = self.clock_ms()
        order = Order(self.next_order_id, client_order_id, account_key, symbol, side, order_type,
                      time_in_force, price, qty, quote_order_qty, now, updated_ms=now)
        self._lock_funds(account, spec, order, opposite)
        self.next_order_id += 1
        self.open_orders[order.order_id] = order
        self.latest_by_client_id[(account_key, symbol, client_order_id)] = order.order_id
        self._report(order, "NEW")
        self._execute(order, spec, book, now)
        if self.pending_stops[symbol]:
            self._trigger_stops(symbol)
        return order

    def _execute(self, order: Order, spec: SymbolSpec, book: OrderBook, now: int) -> None:
        """Matches a working order whose funds are locked, then books what rests or expires the rest."""
        if order.time_in_force == "FOK" and not self._fillable(order, book.side(not order.is_buy)):
            self._finish(order, EXPIRED, "EXPIRED")
            return
        self._match(order, spec, book)
        if order.is_open:
            if order.is_market or order.time_in_force in ("IOC", "FOK"):
                self._finish(order, EXPIRED, "EXPIRED")
            else:
                order.working_ms = order.working_ms if order.working_ms >= 0 else now
                book.side(order.is_buy).add(order.price, order)
                book.change_level(order.is_buy, order.price, order.remaining)

    def place_oco(self, account_key: str, symbol: str, side: str, qty: int, above: Leg, below: Leg,
                  list_client_order_id: str, not_after_us: int | None = None) -> OrderList:
        """POST /api/v3/orderList/oco: rests the limit leg and arms the stop leg (orderlist.py has the rules).

        The pair holds funds once, on the limit leg (a sell: the quantity; a buy: the dearer of the two
        legs); a triggered stop takes its funds afresh as its sibling expires and gives them back."""
        self._admit(not_after_us)
        spec = self.spec(symbol)
        account = self.accounts[account_key]
        previous = self.order_lists.get(self.list_by_client_id.get((account_key, list_client_order_id)))
        if previous is not None and previous.is_open:  # "unique ID among open order lists"
            raise errors.rejected(errors.DUPLICATE_ORDER)
        open_ids = {o.client_order_id for o in self.orders_of(account_key, symbol)}
        if above.client_order_id == below.client_order_id or {above.client_order_id, below.client_order_id} & open_ids:
            raise errors.rejected(errors.DUPLICATE_ORDER)
        stop, limit = orderlist.oco_legs(side, above, below)
        is_buy = side == "BUY"
        self._check_filters(spec, "LIMIT_MAKER", limit.price, qty, 0)
        self._check_filters(spec, "LIMIT" if stop.type == "STOP_LOSS_LIMIT" else "MARKET", stop.price, qty, 0)
        if stop.stop_price < spec.min_price or stop.stop_price > spec.max_price or stop.stop_price % spec.tick_size:
            raise errors.filter_failure("PRICE_FILTER")
        book = self.books[symbol]
        orderlist.check_prices(side, stop, limit, self.last_price.get(symbol, spec.initial_price))
        if self._crosses(is_buy, limit.price, book.side(not is_buy).best_price()):
            raise errors.rejected(errors.WOULD_TAKE)
        if is_buy:
            stop_cost = notional(stop.price if stop.type == "STOP_LOSS_LIMIT" else stop.stop_price, qty)
            asset, amount = spec.quote, max(notional(limit.price, qty), stop_cost)
        else:
            asset, amount = spec.base, qty
        account.lock(asset, amount)
        self._touch(account_key, asset)

        now = self.clock_ms()
        order_list = OrderList(self.next_order_list_id, list_client_order_id, account_key, symbol, [], now)
        self.next_order_list_id += 1
        for leg in (stop, limit):
            order = Order(self.next_order_id, leg.client_order_id, account_key, symbol, side, leg.type,
                          leg.time_in_force, leg.price, qty, 0, now, updated_ms=now, stop_price=leg.stop_price,
                          order_list_id=order_list.order_list_id, pending=leg is stop)
            self.next_order_id += 1
            self.open_orders[order.order_id] = order
            self.latest_by_client_id[(account_key, symbol, order.client_order_id)] = order.order_id
            order_list.orders.append(order)
        stop_order, limit_order = order_list.orders
        limit_order.locked = amount
        self.order_lists[order_list.order_list_id] = order_list
        self.list_by_client_id[(account_key, list_client_order_id)] = order_list.order_list_id
        if len(self.order_lists) > FINISHED_ORDERS_KEPT:
            oldest = next(iter(self.order_lists.values()))
            if not oldest.is_open:  # bounded like finished orders; an open list is never forgotten
                self.order_lists.popitem(last=False)
                key = (oldest.account, oldest.list_client_order_id)
                if self.list_by_client_id.get(key) == oldest.order_list_id:
                    del self.list_by_client_id[key]
        for order in order_list.orders:
            self._report(order, "NEW")
        self.outbox.append(ListStatus(order_list, now, order_list.list_status_type, order_list.list_order_status))
        limit_order.working_ms = now
        book.side(is_buy).add(limit_order.price, limit_order)
        book.change_level(is_buy, limit_order.price, limit_order.remaining)
        self.pending_stops[symbol].append(stop_order)
        return order_list

    def cancel(self, account_key: str, symbol: str, order_id: int | None, client_order_id: str | None,
               new_client_order_id: str, not_after_us: int | None = None) -> Order:
        """Cancels one order; an order list's leg takes its whole list with it, as Binance documents
        ("Canceling an individual order from an order list will cancel the entire order list")."""
        self._admit(not_after_us)
        self.spec(symbol)
        try:
            order = self.find_order(account_key, symbol, order_id, client_order_id)
        except errors.VenueError:
            raise errors.unknown_order() from None
        if not order.is_open:
            raise errors.unknown_order()
        order_list = self.order_lists.get(order.order_list_id)
        if order_list is not None and order_list.is_open:
            self._end_list(order_list, cancel_client_order_id=new_client_order_id)
        else:
            self._cancel_one(order, new_client_order_id)
        return order

    def cancel_all(self, account_key: str, symbol: str, new_client_order_id: Callable[[], str],
                   not_after_us: int | None = None) -> list[Order]:
        """Every open order of the account on the symbol, order lists' legs included (their lists finish)."""
        self._admit(not_after_us)
        self.spec(symbol)
        orders = self.orders_of(account_key, symbol)
        if not orders:
            raise errors.unknown_order()
        for order in orders:
            if not order.is_open:
                continue  # a leg its list's cancel already took
            order_list = self.order_lists.get(order.order_list_id)
            if order_list is not None and order_list.is_open:
                self._end_list(order_list, cancel_client_order_id=new_client_order_id())
            else:
                self._cancel_one(order, new_client_order_id())
        return orders

    def find_order_list(self, account_key: str, order_list_id: int | None, list_client_order_id: str | None,
                        symbol: str | None = None) -> OrderList:
        """By id, or by client id; with both, the id is looked up and the client id must match it
        (rest-api.md, "Cancel Order list": "If both conditions are not met the request will be rejected")."""
        if order_list_id is None:
            order_list_id = self.list_by_client_id.get((account_key, list_client_order_id))
        order_list = self.order_lists.get(order_list_id)
        if order_list is None or order_list.account != account_key or (symbol and order_list.symbol != symbol) \
                or (list_client_order_id is not None and order_list.list_client_order_id != list_client_order_id):
            raise errors.order_list_does_not_exist()
        return order_list

    def cancel_order_list(self, account_key: str, symbol: str, order_list_id: int | None,
                          list_client_order_id: str | None, new_client_order_id: str,
                          not_after_us: int | None = None) -> OrderList:
        self._admit(not_after_us)
        self.spec(symbol)
        try:
            order_list = self.find_order_list(account_key, order_list_id, list_client_order_id, symbol)
        except errors.VenueError:
            raise errors.unknown_order_list() from None
        if not order_list.is_open:
            raise errors.unknown_order_list()
        self._end_list(order_list, cancel_client_order_id=new_client_order_id)
        return order_list

    def open_order_lists(self, account_key: str) -> list[OrderList]:
        return [ol for ol in self.order_lists.values() if ol.account == account_key and ol.is_open]

    # -- internals ------------------------------------------------------------
    @staticmethod
    def _crosses(is_buy: bool, price: int, best_opposite: int | None) -> bool:
        if best_opposite is None:
            return False
        return price >= best_opposite if is_buy else price <= best_opposite

    def _check_filters(self, spec: SymbolSpec, order_type: str, price: int, qty: int, quote_qty: int) -> None:
        if order_type != "MARKET":
            if price < spec.min_price or price > spec.max_price or price % spec.tick_size:
                raise errors.filter_failure("PRICE_FILTER")
        if qty or order_type != "MARKET":
            if qty < spec.min_qty or qty > spec.max_qty or qty % spec.step_size:
                raise errors.filter_failure("LOT_SIZE")
        if order_type != "MARKET":
            value = notional(price, qty)
            if value < spec.min_notional or value > spec.max_notional:
                raise errors.filter_failure("NOTIONAL")
        elif quote_qty and quote_qty < spec.min_notional:
            raise errors.filter_failure("NOTIONAL")

    @staticmethod
    def _liquidity(order: Order, opposite):
        """(price, quantity another account offers there), best level first."""
        for price in opposite.prices():
            if not order.is_market and not MatchingEngine._crosses(order.is_buy, order.price, price):
                return
            available = sum(o.remaining for o in opposite.queues[price] if o.account != order.account)
            if available:
                yield price, available

    def _size_market_order(self, order: Order, spec: SymbolSpec, opposite) -> None:
        """A quote-sized market order becomes the base quantity that budget buys or sells now.

        Matching is atomic, so the walk over the book is exactly what will trade.
        """
        budget, qty = order.quote_order_qty, 0
        for price, available in self._liquidity(order, opposite):
            take = min(available, budget * SCALE // price)
            take -= take % spec.step_size
            qty += take
            budget -= notional(price, take)
            if take < available:
                break
        if qty <= 0:
            raise errors.rejected(errors.INSUFFICIENT_BALANCE if order.is_buy else "Market is closed.")
        order.orig_qty = qty

    def _market_cost(self, order: Order, opposite) -> int:
        left, cost = order.orig_qty, 0
        for price, available in self._liquidity(order, opposite):
            take = min(left, available)
            cost += notional(price, take)
            left -= take
            if not left:
                break
        return cost

    def _lock_funds(self, account: Account, spec: SymbolSpec, order: Order, opposite) -> None:
        if order.is_market and order.quote_order_qty:
            self._size_market_order(order, spec, opposite)
        if order.is_buy:
            if order.is_market:
                amount = self._market_cost(order, opposite)
            else:
                amount = notional(order.price, order.orig_qty)
            account.lock(spec.quote, amount)
        else:
            amount = order.orig_qty
            account.lock(spec.base, amount)
        order.locked = amount
        self._touch(account.api_key, spec.quote if order.is_buy else spec.base)

    def _fillable(self, order: Order, opposite) -> bool:
        return sum(available for _, available in self._liquidity(order, opposite)) >= order.orig_qty

    def _match(self, taker: Order, spec: SymbolSpec, book: OrderBook) -> None:
        opposite = book.side(not taker.is_buy)
        while taker.remaining > 0:
            best = opposite.best_price()
            if best is None:
                break
            if not taker.is_market and not self._crosses(taker.is_buy, taker.price, best):
                break
            maker = opposite.queues[best][0]
            if maker.account == taker.account:
                # Self-trade prevention, EXPIRE_MAKER: the resting order goes.
                self._unbook(maker)
                self._finish(maker, EXPIRED_IN_MATCH, "TRADE_PREVENTION")
                continue
            qty = min(taker.remaining, maker.remaining)
            book.change_level(maker.is_buy, best, -qty)
            trade_id = self.next_trade_id
            self.next_trade_id += 1
            self._fill(maker, spec, qty, best, trade_id, is_maker=True)
            self._fill(taker, spec, qty, best, trade_id, is_maker=False)
            if not maker.is_open:
                opposite.remove(best, maker)
            self.last_price[spec.symbol] = best
            now = self.clock_ms()
            buy, sell = (taker, maker) if taker.is_buy else (maker, taker)
            self.outbox.append(Trade(spec.symbol, trade_id, best, qty, now, not taker.is_buy,
                                     buy.order_id, sell.order_id))

    def _fill(self, order: Order, spec: SymbolSpec, qty: int, price: int, trade_id: int, is_maker: bool) -> None:
        account = self.accounts[order.account]
        value = notional(price, qty)
        fee_ppm = self.maker_fee_ppm if is_maker else self.taker_fee_ppm
        if order.is_buy:
            held = value if order.is_market else notional(order.price, qty)
            account.spend_locked(spec.quote, held)
            order.locked -= held
            account.credit(spec.quote, held - value)
            commission, commission_asset = qty * fee_ppm // 1_000_000, spec.base
            account.credit(spec.base, qty - commission)
        else:
            account.spend_locked(spec.base, qty)
            order.locked -= qty
            commission, commission_asset = value * fee_ppm // 1_000_000, spec.quote
            account.credit(spec.quote, value - commission)
        self._touch(order.account, spec.base, spec.quote)
        order.executed_qty += qty
        order.cum_quote += value
        now = self.clock_ms()
        order.updated_ms = now
        order.status = FILLED if order.remaining == 0 else PARTIALLY_FILLED
        self._report(order, "TRADE", last_qty=qty, last_price=price, commission=commission,
                     commission_asset=commission_asset, trade_id=trade_id, is_maker=is_maker)
        if order.status == FILLED:
            self._retire(order)
        if order.order_list_id != -1:
            self._leg_working(order)  # a fill of an OCO's limit leg: its stop expires

    # -- order lists and stops ----------------------------------------------------
    def _leg_working(self, order: Order) -> None:
        """One leg of an open OCO started working (filled, or its stop triggered): the other expires and
        the list is done (user-data-stream.md, expiry reason OCO_TRIGGER: "An order that was part of an
        OCO pair was canceled because the other order of the pair started working")."""
        order_list = self.order_lists.get(order.order_list_id)
        if order_list is not None and order_list.is_open:
            self._end_list(order_list, survivor=order)

    def _end_list(self, order_list: OrderList, survivor: Order | None = None,
                  cancel_client_order_id: str | None = None) -> None:
        """Finishes an open list: its legs but `survivor` are cancelled (a cancel request) or expire
        (the pair resolved, or a leg left the book on its own, e.g. by self-trade prevention).
        The list is marked done first, so the legs' own endings do not come back here."""
        order_list.list_status_type = order_list.list_order_status = orderlist.ALL_DONE
        order_list.transaction_ms = self.clock_ms()
        for other in order_list.orders:
            if other is not survivor and other.is_open:
                if cancel_client_order_id is None:
                    self._unbook(other)
                    self._finish(other, EXPIRED, "EXPIRED")
                else:
                    self._cancel_one(other, cancel_client_order_id)
        self.outbox.append(ListStatus(order_list, order_list.transaction_ms, orderlist.ALL_DONE, orderlist.ALL_DONE))

    def _cancel_one(self, order: Order, cancel_client_order_id: str) -> None:
        self._unbook(order)
        self._finish(order, CANCELED, "CANCELED", cancel_client_order_id=cancel_client_order_id)

    def _trigger_stops(self, symbol: str) -> None:
        """Arms what the last trade price reached; a triggered stop's own trades may reach the next."""
        stops = self.pending_stops[symbol]
        while stops and symbol in self.last_price:
            last = self.last_price[symbol]
            hit = next((o for o in stops if orderlist.triggered(o.is_buy, o.stop_price, last)), None)
            if hit is None:
                return
            self._activate_stop(hit)

    def _activate_stop(self, order: Order) -> None:
        """A triggered stop becomes the MARKET (STOP_LOSS) or LIMIT (STOP_LOSS_LIMIT) order it names."""
        self.pending_stops[order.symbol].remove(order)
        order.pending = False
        self._leg_working(order)  # its OCO sibling expires first, handing back the list's funds
        spec, book = self.specs[order.symbol], self.books[order.symbol]
        now = self.clock_ms()
        try:
            self._lock_funds(self.accounts[order.account], spec, order, book.side(not order.is_buy))
        except errors.VenueError:  # the funds went meanwhile: Binance expires it (expiry reason REJECTED)
            self._finish(order, EXPIRED, "EXPIRED")
            return
        order.working_ms = order.updated_ms = now
        self._report(order, "NEW")  # again, now working: `w` true
        self._execute(order, spec, book, now)

    def _unbook(self, order: Order) -> None:
        if order.pending:
            self.pending_stops[order.symbol].remove(order)
            order.pending = False
            return
        book = self.books[order.symbol]
        side = book.side(order.is_buy)
        if order.price in side.queues and order in side.queues[order.price]:
            book.change_level(order.is_buy, order.price, -order.remaining)
            side.remove(order.price, order)

    def _finish(self, order: Order, status: str, exec_type: str, cancel_client_order_id: str = "") -> None:
        order.status = status
        order.updated_ms = self.clock_ms()
        self._report(order, exec_type, cancel_client_order_id=cancel_client_order_id)
        self._retire(order)
        if order.order_list_id != -1:
            order_list = self.order_lists.get(order.order_list_id)
            if order_list is not None and order_list.is_open:
                self._end_list(order_list)  # a leg gone on its own (self-trade prevention): the pair goes

    def _retire(self, order: Order) -> None:
        """Releases what the order still holds and moves it to the finished set."""
        if order.locked:
            spec = self.specs[order.symbol]
            self.accounts[order.account].unlock(spec.quote if order.is_buy else spec.base, order.locked)
            self._touch(order.account, spec.quote if order.is_buy else spec.base)
            order.locked = 0
        self.open_orders.pop(order.order_id, None)
        self.finished[order.order_id] = order
        if len(self.finished) > FINISHED_ORDERS_KEPT:
            self.finished.popitem(last=False)
        self.outbox.append(OrderDone(order, order.updated_ms))

    def _report(self, order: Order, exec_type: str, cancel_client_order_id: str = "", **fill) -> None:
        working = order.status in OPEN_STATUSES and not order.is_market and not order.pending
        self.outbox.append(Execution(order, exec_type, order.status, order.executed_qty, order.cum_quote,
                                     self.clock_ms(), cancel_client_order_id=cancel_client_order_id,
                                     working=working, **fill))

    def _touch(self, account: str, *assets: str) -> None:
        self._touched.setdefault(account, set()).update(assets)

    def _flush_balances(self) -> None:
        now = self.clock_ms()
        for account_key, assets in self._touched.items():
            account = self.accounts[account_key]
            if account.internal:
                continue
            rows = tuple((a, account.free.get(a, 0), account.locked.get(a, 0)) for a in sorted(assets))
            self.outbox.append(BalanceUpdate(account_key, rows, now))
        self._touched.clear()
