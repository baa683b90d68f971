"""The matching engine: accounts, orders, price-time matching and settlement.

Sans-I/O: every call mutates state and appends events to `outbox`; the server
drains the outbox and turns events into REST replies and stream messages.
"""
from collections import OrderedDict, deque
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
ALGO_TYPES = ("STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT")  # filters.md, MAX_NUM_ALGO_ORDERS
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
    amendments: int = 0  # keep-priority amendments so far (MAX_NUM_ORDER_AMENDS)

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
    # As they were at this report: an amendment changes both after earlier reports were queued.
    client_order_id: str = ""
    orig_qty: int = 0


@dataclass(slots=True)
class Amendment:
    """An order's quantity reduced in place (PUT /api/v3/order/amend/keepPriority)."""

    order: Order
    orig_client_order_id: str
    transact_ms: int
    execution_id: int


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
        self.next_execution_id = 1
        # Each symbol's recent trades, for the filters' "average of previous trade prices" (avgPrice):
        # (time ms, quote value, quantity), and their running sums.
        self._recent_trades: dict[str, deque] = {s.symbol: deque() for s in specs}
        self._recent_sums: dict[str, list[int]] = {s.symbol: [0, 0] for s in specs}

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

    def set_spec(self, spec: SymbolSpec) -> None:
        """A symbol's status or filters changed (POST /sim/v1/symbol): orders placed from now on meet them;
        resting orders stay, as on the venue."""
        self.spec(spec.symbol)
        self.specs[spec.symbol] = spec

    def average_price(self, symbol: str, minutes: int) -> int:
        """filters.md: "the volume weighted average price over the preceding avgPriceMins minutes"; with
        avgPriceMins 0, "the last price". With no trade in the window: the last trade price, and before the
        first trade the symbol's reference price (the sim has no reference-price feed)."""
        last = self.last_price.get(symbol, self.specs[symbol].initial_price)
        if minutes <= 0:
            return last
        trades, sums = self._recent_trades[symbol], self._recent_sums[symbol]
        horizon = self.clock_ms() - minutes * 60_000
        while trades and trades[0][0] < horizon:
            _, value, qty = trades.popleft()
            sums[0] -= value
            sums[1] -= qty
        return sums[0] * SCALE // sums[1] if sums[1] else last

    def _record_trade(self, symbol: str, price: int, qty: int, now_ms: int) -> None:
        value = notional(price, qty)
        self._recent_trades[symbol].append((now_ms, value, qty))
        sums = self._recent_sums[symbol]
        sums[0] += value
        sums[1] += qty
        # Bounded: trades older than the longest window any filter could ask for (an hour) go.
        trades = self._recent_trades[symbol]
        while trades and trades[0][0] < now_ms - 3_600_000:
            _, old_value, old_qty = trades.popleft()
            sums[0] -= old_value
            sums[1] -= old_qty

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
        self._check_filters(spec, account, side, order_type, price, qty, quote_order_qty)
        self._check_open_counts(spec, account, side, qty, orders=1)
        if not spec.trading:
            raise errors.rejected(errors.MARKET_CLOSED)
        if any(o.client_order_id == client_order_id for o in self.orders_of(account_key, symbol)):
            raise errors.rejected(errors.DUPLICATE_ORDER)
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
        self._check_filters(spec, account, side, "LIMIT_MAKER", limit.price, qty, 0)
        self._check_filters(spec, account, side, "LIMIT" if stop.type == "STOP_LOSS_LIMIT" else "MARKET",
                            stop.price, qty, 0, stop_leg=True)
        if spec.filters.price and not spec.filters.price.admits(stop.stop_price):
            raise errors.filter_failure("PRICE_FILTER")
        self._check_open_counts(spec, account, side, qty, orders=2, algo_orders=1, order_lists=1)
        if not spec.trading:
            raise errors.rejected(errors.MARKET_CLOSED)
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

    def amend_keep_priority(self, account_key: str, symbol: str, order_id: int | None, client_order_id: str | None,
                            new_client_order_id: str, new_qty: int, not_after_us: int | None = None) -> Amendment:
        """PUT /api/v3/order/amend/keepPriority: reduces an open order's quantity where it stands in the
        queue (faqs/order_amend_keep_priority.md); the refusals are -2038 with errors.md's messages."""
        self._admit(not_after_us)
        spec = self.spec(symbol)
        try:
            order = self.find_order(account_key, symbol, order_id, client_order_id)
        except errors.VenueError:
            raise errors.amend_rejected("Unknown order sent.") from None
        if not order.is_open:
            raise errors.amend_rejected("Unknown order sent.")
        if order.order_list_id != -1:  # an OCO's legs share one quantity: not implemented (docs/sim-fidelity.md)
            raise errors.VenueError(-1020, "This operation is not supported.")
        if spec.filters.lot_size and not spec.filters.lot_size.admits(new_qty):
            raise errors.filter_failure("LOT_SIZE")
        limit = spec.filters.max_num_order_amends
        if limit is not None and order.amendments >= limit:
            raise errors.filter_failure("MAX_NUM_ORDER_AMENDS")
        if not spec.trading:
            raise errors.amend_rejected(errors.MARKET_CLOSED)
        if new_qty == order.orig_qty:
            raise errors.amend_rejected("The requested action would change no state; rejecting")
        if new_qty > order.orig_qty:
            raise errors.amend_rejected("Order amend (quantity increase) is not supported.")
        if any(o.client_order_id == new_client_order_id and o is not order for o in self.orders_of(account_key, symbol)):
            raise errors.amend_rejected(errors.DUPLICATE_ORDER)
        orig_client_order_id = order.client_order_id
        cut = order.orig_qty - new_qty
        left = max(order.remaining - cut, 0)  # the sim's reading: a newQty at or below what filled fills it
        released = order.remaining - left
        book_side = self.books[symbol].side(order.is_buy)
        if order.price in book_side.queues and order in book_side.queues[order.price]:
            self.books[symbol].change_level(order.is_buy, order.price, -released)
        account = self.accounts[account_key]
        refund = notional(order.price, released) if order.is_buy else released
        if refund:
            account.unlock(spec.quote if order.is_buy else spec.base, refund)
            order.locked -= refund
            self._touch(account_key, spec.quote if order.is_buy else spec.base)
        order.orig_qty = max(new_qty, order.executed_qty)
        order.amendments += 1
        del_key = (account_key, symbol, orig_client_order_id)
        if self.latest_by_client_id.get(del_key) == order.order_id:
            del self.latest_by_client_id[del_key]
        order.client_order_id = new_client_order_id
        self.latest_by_client_id[(account_key, symbol, new_client_order_id)] = order.order_id
        now = self.clock_ms()
        order.updated_ms = now
        if order.remaining == 0:
            order.status = FILLED
            if order.price in book_side.queues and order in book_side.queues[order.price]:
                book_side.remove(order.price, order)
        self._report(order, "REPLACED", cancel_client_order_id=orig_client_order_id)
        if order.status == FILLED:
            self._retire(order)
        amendment = Amendment(order, orig_client_order_id, now, self.next_execution_id)
        self.next_execution_id += 1
        return amendment

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

    def _check_filters(self, spec: SymbolSpec, account: Account, side: str, order_type: str, price: int, qty: int,
                       quote_qty: int, stop_leg: bool = False) -> None:
        """The order's own filters (errors.md, "Filter failures": -1013 "Filter failure: <filterType>"), in
        the order the venue publishes them. `order_type` is what the order trades as (a STOP_LOSS leg as
        MARKET, a STOP_LOSS_LIMIT leg as LIMIT); a stop leg's NOTIONAL and PERCENT_PRICE_BY_SIDE are
        judged when it triggers (docs/sim-fidelity.md)."""
        f = spec.filters
        is_market = order_type == "MARKET"
        if not is_market and f.price and not f.price.admits(price):
            raise errors.filter_failure("PRICE_FILTER")
        if (qty or not is_market) and f.lot_size and not f.lot_size.admits(qty):
            raise errors.filter_failure("LOT_SIZE")
        if is_market and qty and f.market_lot_size and not f.market_lot_size.admits(qty):
            raise errors.filter_failure("MARKET_LOT_SIZE")
        if stop_leg:
            return
        band = f.percent_price_by_side
        if not is_market and band and not band.admits(side == "BUY", price,
                                                      self.average_price(spec.symbol, band.avg_price_mins)):
            raise errors.filter_failure("PERCENT_PRICE_BY_SIDE")
        n = f.notional
        if n is not None:
            if not is_market:
                value, check_min, check_max = notional(price, qty), True, True
            elif quote_qty:
                value, check_min, check_max = quote_qty, n.apply_min_to_market, n.apply_max_to_market
            else:  # "Since MARKET orders have no price, an average of previous trade prices is used instead."
                value = notional(self.average_price(spec.symbol, n.avg_price_mins), qty)
                check_min, check_max = n.apply_min_to_market, n.apply_max_to_market
            if (check_min and value < n.minimum) or (check_max and n.maximum and value > n.maximum):
                raise errors.filter_failure("NOTIONAL")

    def _check_open_counts(self, spec: SymbolSpec, account: Account, side: str, qty: int, orders: int,
                           algo_orders: int = 0, order_lists: int = 0) -> None:
        """The filters on what the account holds open on the symbol, counting what this request adds. The
        synthetic market's own accounts stand for the rest of the market, many accounts: they are not held
        to one account's limits."""
        if account.internal:
            return
        f = spec.filters
        mine = self.orders_of(account.api_key, spec.symbol)
        if f.max_num_orders is not None and len(mine) + orders > f.max_num_orders:
            raise errors.filter_failure("MAX_NUM_ORDERS")
        if order_lists and f.max_num_order_lists is not None:
            lists = sum(1 for ol in self.open_order_lists(account.api_key) if ol.symbol == spec.symbol)
            if lists + order_lists > f.max_num_order_lists:
                raise errors.filter_failure("MAX_NUM_ORDER_LISTS")
        if algo_orders and f.max_num_algo_orders is not None:
            if sum(1 for o in mine if o.type in ALGO_TYPES) + algo_orders > f.max_num_algo_orders:
                raise errors.filter_failure("MAX_NUM_ALGO_ORDERS")
        if side == "BUY" and f.max_position is not None:
            # "free balance of the base asset, locked balance of the base asset, sum of the qty of all open
            # BUY orders": with this order's quantity, it must not pass maxPosition.
            position = (account.free.get(spec.base, 0) + account.locked.get(spec.base, 0)
                        + sum(o.remaining for o in mine if o.is_buy) + qty)
            if position > f.max_position:
                raise errors.filter_failure("MAX_POSITION")

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
        market_lot = spec.filters.market_lot_size
        if market_lot and not market_lot.admits(qty):
            raise errors.filter_failure("MARKET_LOT_SIZE")
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
            self._record_trade(spec.symbol, best, qty, now)
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
                                     working=working, client_order_id=order.client_order_id,
                                     orig_qty=order.orig_qty, **fill))

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
