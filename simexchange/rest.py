"""REST under /api/v3, as Binance documents it: weights, signed requests,
error codes and HTTP statuses."""
import asyncio
import json
import re
from dataclasses import dataclass
from typing import Awaitable, Callable
from urllib.parse import parse_qsl

from aiohttp import web

from . import errors, listeners, render, timing
from .engine import ORDER_TYPES, SIDES, TIME_IN_FORCE, Account
from .orderlist_rest import OrderListApi
from .signing import verify
from .units import format_amount, parse_amount
from .venue import Venue, wall_ms, wall_us

CLIENT_ORDER_ID = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")
UNFILLED_ORDER_COUNT = {"new": 1, "new_order_list": 2}  # rest-api.md: "Unfilled Order Count: 2" for an OCO


@dataclass(slots=True)
class Call:
    """One parsed REST request."""

    request: web.Request
    params: dict
    raw_query: str
    raw_body: str
    account: Account | None = None
    timestamp_us: int | None = None  # of a signed request that passed the receipt check
    recv_window_us: int = timing.DEFAULT_RECV_WINDOW_US
    forwarded_us: int | None = None  # when it went on to the matching engine

    @property
    def deadline_us(self) -> int | None:
        """timestamp + recvWindow: the matching engine refuses the request after it."""
        return None if self.timestamp_us is None else self.timestamp_us + self.recv_window_us

    def client_id(self, name: str) -> str:
        """A client order id parameter, or a venue-made one when not sent."""
        value = self.get(name)
        if value is None:
            return Venue.new_client_order_id()
        if not CLIENT_ORDER_ID.match(value):
            raise errors.VenueError(
                -1100, f"Illegal characters found in parameter '{name}'; "
                "legal range is '^[\\.A-Z\\:/a-z0-9_-]{1,36}$'.")
        return value

    def get(self, name: str, default: str | None = None) -> str | None:
        value = self.params.get(name)
        return default if value in (None, "") else value

    def need(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise errors.missing(name)
        return value

    def amount(self, name: str) -> int:
        value = self.get(name)
        if value is None:
            return 0
        try:
            return parse_amount(value)
        except ValueError as exc:
            if "precision" in str(exc):
                raise errors.VenueError(-1111, f"Parameter '{name}' has too much precision.") from None
            raise errors.bad_param(name) from None

    def integer(self, name: str) -> int | None:
        value = self.get(name)
        if value is None:
            return None
        try:
            return int(value)
        except ValueError:
            raise errors.bad_param(name) from None


def _parse_params(raw_query: str, raw_body: str) -> dict:
    params: dict = {}
    for raw in (raw_query, raw_body):
        for key, value in parse_qsl(raw, keep_blank_values=True):
            if key in params:
                raise errors.duplicate_param(key)
            params[key] = value
    return params


def _depth_weight(call: Call) -> int:
    limit = call.integer("limit") or 100
    return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250


Handler = Callable[[Call], Awaitable[object]]


async def _delay_us(delay_us: int) -> None:
    """At least `delay_us` on the wall clock the recvWindow checks read (the loop's timer may wake early)."""
    until = wall_us() + delay_us
    while (left := until - wall_us()) > 0:
        await asyncio.sleep(left / 1e6)


class RestApi:
    def __init__(self, venue: Venue):
        self.venue = venue
        self.engine = venue.engine
        self.order_lists = OrderListApi(venue, self._symbol)

    def routes(self) -> list[web.RouteDef]:
        e = self._endpoint
        lists = self.order_lists
        return [
            web.get("/api/v3/ping", e(1, False, self.ping)),
            web.get("/api/v3/time", e(1, False, self.time)),
            web.get("/api/v3/exchangeInfo", e(20, False, self.exchange_info)),
            web.get("/api/v3/depth", e(_depth_weight, False, self.depth)),
            web.get("/api/v3/ticker/bookTicker", e(2, False, self.book_ticker)),
            web.get("/api/v3/ticker/price", e(2, False, self.ticker_price)),
            web.post("/api/v3/order", e(1, True, self.new_order, audit="new")),
            web.delete("/api/v3/order", e(1, True, self.cancel_order, audit="cancel")),
            web.get("/api/v3/order", e(4, True, self.query_order)),
            web.get("/api/v3/openOrders", e(6, True, self.open_orders)),
            web.delete("/api/v3/openOrders", e(1, True, self.cancel_open_orders, audit="cancel_all")),
            web.get("/api/v3/account", e(20, True, self.account)),
            web.post("/api/v3/orderList/oco", e(1, True, lists.new_oco, audit="new_order_list")),
            web.delete("/api/v3/orderList", e(1, True, lists.cancel, audit="cancel_order_list")),
            web.get("/api/v3/orderList", e(4, True, lists.query)),
            web.get("/api/v3/openOrderList", e(6, True, lists.open_lists)),
        ]

    # -- the common path ------------------------------------------------------
    def _endpoint(self, weight, signed: bool, handler: Handler, audit: str | None = None):
        async def serve(request: web.Request) -> web.Response:
            received_us = wall_us()
            if self.venue.listener_bans:
                refusal = listeners.refusal(self.venue.listener_bans, request)
                if refusal is not None:
                    return await self._refused(request, refusal, audit, received_us)
            raw_query = request.raw_path.partition("?")[2]
            raw_body = await request.text() if request.can_read_body else ""
            call = Call(request, {}, raw_query, raw_body)
            ip = request.remote or "?"
            headers: dict[str, str] = {}
            status, result = 200, None
            try:
                call.params = _parse_params(raw_query, raw_body)
                cost = weight(call) if callable(weight) else weight
                used, reset_ms = self.venue.weights.add(ip, cost, wall_ms())
                headers["X-MBX-USED-WEIGHT-1M"] = str(used)
                if used > self.venue.limits.weight_per_minute:
                    raise errors.too_many_requests(self.venue.limits.weight_per_minute, -(-reset_ms // 1000))
                if signed:
                    call.account = self._authenticate(call)
                if audit in UNFILLED_ORDER_COUNT:
                    self._count_order(call, headers, UNFILLED_ORDER_COUNT[audit])
                if audit:  # the audited requests are the ones forwarded to the matching engine
                    if self.venue.matching_delay_ms:
                        await _delay_us(self.venue.matching_delay_ms * 1000)
                    call.forwarded_us = wall_us()
                result = await handler(call)
            except errors.VenueError as exc:
                status, result = exc.http_status, exc.body()
                if exc.retry_after is not None:
                    headers["Retry-After"] = str(exc.retry_after)
            finally:
                self.venue.publish()
            if audit:
                self._audit(audit, call, received_us, status, result)
            return web.json_response(result, status=status, headers=headers,
                                     dumps=lambda o: json.dumps(o, separators=(",", ":")))
        return serve

    async def _refused(self, request: web.Request, refusal: "listeners.Refusal", audit: str | None,
                       received_us: int) -> web.Response:
        """A request on a banned listener: answered at the door, audited if it was an order request."""
        if audit:
            raw_body = await request.text() if request.can_read_body else ""
            call = Call(request, {}, request.raw_path.partition("?")[2], raw_body)
            try:
                call.params = _parse_params(call.raw_query, raw_body)
            except errors.VenueError:
                pass
            self._audit(audit, call, received_us, refusal.status, refusal.body)
        return refusal.response()

    def _authenticate(self, call: Call) -> Account:
        api_key = call.request.headers.get("X-MBX-APIKEY")
        if not api_key:
            raise errors.bad_api_key_format()
        account = self.engine.accounts.get(api_key)
        if account is None or account.internal:
            raise errors.unauthorized()
        if not verify(account.secret, call.raw_query, call.raw_body):
            raise errors.bad_signature()
        timestamp = call.get("timestamp")
        if timestamp is None:
            raise errors.missing("timestamp")
        timestamp_us = timing.timestamp_us(timestamp)
        recv_window_us = timing.recv_window_us(call.get("recvWindow"))
        timing.check_at_receipt(timestamp_us, recv_window_us, wall_us())
        call.timestamp_us, call.recv_window_us = timestamp_us, recv_window_us
        return account

    def _count_order(self, call: Call, headers: dict, orders: int) -> None:
        limit = self.venue.limits.orders_per_10s
        used, reset_ms = self.venue.order_counts.add(call.account.api_key, orders, wall_ms())
        headers["X-MBX-ORDER-COUNT-10S"] = str(used)
        if used > limit:
            raise errors.too_many_orders(limit, "10 SECOND", -(-reset_ms // 1000))

    def _audit(self, action: str, call: Call, received_us: int, status: int, result) -> None:
        p = call.params
        record = {
            "kind": "request", "action": action, "recv_us": received_us, "done_us": wall_us(),
            "api_key": call.request.headers.get("X-MBX-APIKEY", ""), "symbol": p.get("symbol"),
            "client_order_id": None, "http_status": status,
        }
        # The sender's clock when it signed (client_ts_ms; client_ts_us exact) and the recvWindow
        # it gave (recv_window_ms): the drill checker judges a send against the sender's lease by
        # these, not by when the venue happened to receive it.
        if call.timestamp_us is not None:  # parsed already (the exact decimal: n/1000 is float(text))
            record.update(client_ts_ms=call.timestamp_us // 1000, client_ts_us=call.timestamp_us,
                          recv_window_ms=call.recv_window_us / 1000)
        else:
            record.update(timing.audit_fields(p))
        if call.forwarded_us is not None:
            record["forwarded_us"] = call.forwarded_us
        if action == "new":
            record.update(client_order_id=p.get("newClientOrderId"), side=p.get("side"), type=p.get("type"),
                          price=p.get("price"), qty=p.get("quantity") or p.get("quoteOrderQty"))
        elif action == "cancel":
            record.update(client_order_id=p.get("origClientOrderId"), order_id=p.get("orderId"))
        elif action in ("new_order_list", "cancel_order_list"):
            self.order_lists.audit_request(action, p, record)
        if status == 200:
            record["outcome"] = "accepted"
            if action == "new":
                record.update(client_order_id=result["clientOrderId"], order_id=result["orderId"],
                              status=result.get("status"))
            elif action == "cancel":
                record.update(client_order_id=result["origClientOrderId"], order_id=result["orderId"])
            elif action == "cancel_all":
                record["cancelled"] = [r["origClientOrderId"] for entry in result
                                       for r in entry.get("orderReports", [entry])]
            else:
                self.order_lists.audit_result(action, result, record)
        else:
            record.update(outcome="rejected", code=result.get("code"), msg=result.get("msg"))
        self.venue.audit.write(record)

    def _symbol(self, call: Call) -> str:
        symbol = call.need("symbol").upper()
        self.engine.spec(symbol)
        return symbol

    # -- public ---------------------------------------------------------------
    async def ping(self, call: Call):
        return {}

    async def time(self, call: Call):
        return {"serverTime": wall_ms()}

    async def exchange_info(self, call: Call):
        wanted = None
        if call.get("symbol"):
            wanted = [call.get("symbol").upper()]
        elif call.get("symbols"):
            try:
                wanted = [s.upper() for s in json.loads(call.get("symbols"))]
            except (ValueError, AttributeError):
                raise errors.bad_param("symbols") from None
        specs = self.venue.specs
        if wanted is not None:
            for s in wanted:
                self.engine.spec(s)
            specs = [s for s in specs if s.symbol in wanted]
        limits = self.venue.limits
        return {
            "timezone": "UTC", "serverTime": wall_ms(),
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                 "limit": limits.weight_per_minute},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": limits.orders_per_10s},
            ],
            "exchangeFilters": [],
            "symbols": [s.exchange_info() for s in specs],
        }

    async def depth(self, call: Call):
        symbol = self._symbol(call)
        limit = call.integer("limit") or 100
        if not 1 <= limit <= 5000:
            raise errors.VenueError(-1100, "Illegal characters found in parameter 'limit'; legal range is '1-5000'.")
        update_id, bids, asks = self.engine.books[symbol].snapshot(limit)
        return {"lastUpdateId": update_id,
                "bids": [[format_amount(p), format_amount(q)] for p, q in bids],
                "asks": [[format_amount(p), format_amount(q)] for p, q in asks]}

    def _tickers(self, call: Call) -> list[str]:
        if call.get("symbol"):
            return [self._symbol(call)]
        if call.get("symbols"):
            try:
                symbols = [s.upper() for s in json.loads(call.get("symbols"))]
            except (ValueError, AttributeError):
                raise errors.bad_param("symbols") from None
            for s in symbols:
                self.engine.spec(s)
            return symbols
        return list(self.engine.specs)

    async def book_ticker(self, call: Call):
        out = []
        for symbol in self._tickers(call):
            bid, bid_qty, ask, ask_qty = self.engine.books[symbol].top()
            out.append({"symbol": symbol, "bidPrice": format_amount(bid or 0), "bidQty": format_amount(bid_qty),
                        "askPrice": format_amount(ask or 0), "askQty": format_amount(ask_qty)})
        return out[0] if call.get("symbol") else out

    async def ticker_price(self, call: Call):
        out = []
        for symbol in self._tickers(call):
            bid, _, ask, _ = self.engine.books[symbol].top()
            mid = (bid + ask) // 2 if bid and ask else (bid or ask or 0)
            out.append({"symbol": symbol, "price": format_amount(mid)})
        return out[0] if call.get("symbol") else out

    # -- trading ----------------------------------------------------------------
    async def new_order(self, call: Call):
        symbol = self._symbol(call)
        side = call.need("side").upper()
        if side not in SIDES:
            raise errors.VenueError(-1117, "Invalid side.")
        order_type = call.need("type").upper()
        if order_type not in ORDER_TYPES:
            raise errors.VenueError(-1116, "Invalid orderType.")
        time_in_force = ""
        price = qty = quote_qty = 0
        if order_type == "LIMIT":
            time_in_force = call.need("timeInForce").upper()
            if time_in_force not in TIME_IN_FORCE:
                raise errors.VenueError(-1115, "Invalid timeInForce.")
        elif call.get("timeInForce"):
            raise errors.VenueError(-1106, "Parameter 'timeInForce' sent when not required.")
        if order_type in ("LIMIT", "LIMIT_MAKER"):
            call.need("price")
            call.need("quantity")
            price, qty = call.amount("price"), call.amount("quantity")
        else:
            qty, quote_qty = call.amount("quantity"), call.amount("quoteOrderQty")
            if bool(qty) == bool(quote_qty):
                raise errors.VenueError(
                    -1102, "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!"
                    if not qty else "Parameter 'quoteOrderQty' sent when not required.")
        client_order_id = call.client_id("newClientOrderId")
        resp_type = (call.get("newOrderRespType") or ("FULL" if order_type in ("LIMIT", "MARKET") else "ACK")).upper()
        if resp_type not in ("ACK", "RESULT", "FULL"):
            raise errors.VenueError(-1177, "Invalid newOrderRespType.")

        order = self.engine.place(call.account.api_key, symbol, side, order_type, time_in_force, price, qty,
                                  quote_qty, client_order_id, not_after_us=call.deadline_us)
        if resp_type == "ACK":
            return render.order_ack(order)
        if resp_type == "RESULT":
            return render.order_result(order)
        fills = [x for x in self.engine.outbox
                 if getattr(x, "exec_type", None) == "TRADE" and x.order is order]
        return render.order_full(order, fills)

    def _order_ref(self, call: Call) -> tuple[int | None, str | None]:
        order_id, client_id = call.integer("orderId"), call.get("origClientOrderId")
        if order_id is None and client_id is None:
            raise errors.VenueError(-1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")
        return order_id, client_id

    async def cancel_order(self, call: Call):
        symbol = self._symbol(call)
        order_id, client_id = self._order_ref(call)
        cancel_id = call.get("newClientOrderId") or self.venue.new_client_order_id()
        order = self.engine.cancel(call.account.api_key, symbol, order_id, client_id, cancel_id,
                                   not_after_us=call.deadline_us)
        return render.order_cancelled(order, cancel_id, wall_ms())

    async def cancel_open_orders(self, call: Call):
        """rest-api.md, "Cancel All Open Orders on a Symbol": "This includes orders that are part of an
        order list". The reply holds the plain orders' cancel reports and, for each order list, one
        entry with its legs' reports in `orderReports`. One cancel id serves the whole request, as in the
        documented example."""
        symbol = self._symbol(call)
        account = call.account.api_key
        lists = {ol.order_list_id: ol for ol in self.engine.open_order_lists(account) if ol.symbol == symbol}
        cancel_id = self.venue.new_client_order_id()
        orders = self.engine.cancel_all(account, symbol, lambda: cancel_id, not_after_us=call.deadline_us)
        now = wall_ms()
        entries, list_entries = [], {}
        for order in orders:
            report = render.order_cancelled(order, cancel_id, now)
            if order.order_list_id not in lists:
                entries.append(report)
                continue
            entry = list_entries.get(order.order_list_id)
            if entry is None:
                entry = list_entries[order.order_list_id] = render.order_list(lists[order.order_list_id], [])
                entries.append(entry)
            entry["orderReports"].append(report)
        return entries

    async def query_order(self, call: Call):
        symbol = self._symbol(call)
        order_id, client_id = self._order_ref(call)
        return render.order_query(self.engine.find_order(call.account.api_key, symbol, order_id, client_id))

    async def open_orders(self, call: Call):
        symbol = self._symbol(call) if call.get("symbol") else None
        return [render.order_query(o) for o in self.engine.orders_of(call.account.api_key, symbol)]

    async def account(self, call: Call):
        acct = call.account
        omit_zero = (call.get("omitZeroBalances") or "false").lower() == "true"
        assets = sorted(set(acct.free) | set(acct.locked))
        maker, taker = self.engine.maker_fee_ppm, self.engine.taker_fee_ppm
        balances = [{"asset": a, "free": format_amount(acct.free.get(a, 0)),
                     "locked": format_amount(acct.locked.get(a, 0))}
                    for a in assets if not omit_zero or acct.free.get(a, 0) or acct.locked.get(a, 0)]
        return {
            "makerCommission": maker // 100, "takerCommission": taker // 100,
            "buyerCommission": 0, "sellerCommission": 0,
            "commissionRates": {"maker": format_amount(maker * 100), "taker": format_amount(taker * 100),
                                "buyer": format_amount(0), "seller": format_amount(0)},
            "canTrade": True, "canWithdraw": False, "canDeposit": False, "brokered": False,
            "requireSelfTradePrevention": False, "preventSor": False, "updateTime": wall_ms(),
            "accountType": "SPOT", "balances": balances, "permissions": ["SPOT"], "uid": abs(hash(acct.api_key)) % 10**9,
        }
