"""REST under /api/v3, as Binance documents it: weights, signed requests,
error codes and HTTP statuses. The common path (weight, signature, timing,
order count, audit) is dispatch.py's, shared with the WebSocket API, which
calls the same handlers."""
import json
from urllib.parse import parse_qsl

from aiohttp import web

from . import errors, listeners, render
from .dispatch import Call, Dispatcher, Endpoint
from .engine import ORDER_TYPES, SIDES, TIME_IN_FORCE
from .filters import iceberg_parts
from .orderlist_rest import OrderListApi
from .signing import verify
from .symbols import SYMBOL_STATUSES
from .units import format_amount
from .venue import Venue, wall_ms, wall_us


def _parse_params(raw_query: str, raw_body: str) -> dict:
    """rest-api.md, "General Information on Endpoints": "You may mix parameters between both the query
    string and request body" and "If a parameter sent in both the query string and request body, the
    query string parameter will be used." The same name twice in one of them is -1101."""
    merged: dict = {}
    for raw in (raw_body, raw_query):  # the query string last: its values win
        params: dict = {}
        for key, value in parse_qsl(raw, keep_blank_values=True):
            if key in params:
                raise errors.duplicate_param(key)
            params[key] = value
        merged.update(params)
    return merged


def _depth_weight(call: Call) -> int:
    limit = call.integer("limit") or 100
    return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250


def _one_symbol_or_all(single: int, several: int):
    """ticker/price, ticker/bookTicker: one weight with `symbol`, another without it or with `symbols`."""
    return lambda call: single if call.get("symbol") else several


class RestApi:
    def __init__(self, venue: Venue):
        self.venue = venue
        self.engine = venue.engine
        self.order_lists = OrderListApi(venue, self._symbol)
        self.dispatcher = Dispatcher(venue, {
            action: (self.order_lists.audit_request, self.order_lists.audit_result)
            for action in ("new_order_list", "cancel_order_list")})

    def endpoints(self) -> dict[str, tuple[str, Endpoint]]:
        """(HTTP method, endpoint) by path. Weights: rest-api.md per endpoint, 2026 (dispatch.py)."""
        lists = self.order_lists
        return {
            "/api/v3/ping": ("GET", Endpoint(1, False, self.ping)),
            "/api/v3/time": ("GET", Endpoint(1, False, self.time)),
            "/api/v3/exchangeInfo": ("GET", Endpoint(20, False, self.exchange_info)),
            "/api/v3/depth": ("GET", Endpoint(_depth_weight, False, self.depth)),
            "/api/v3/avgPrice": ("GET", Endpoint(2, False, self.avg_price)),
            "/api/v3/ticker/bookTicker": ("GET", Endpoint(_one_symbol_or_all(2, 4), False, self.book_ticker)),
            "/api/v3/ticker/price": ("GET", Endpoint(_one_symbol_or_all(2, 4), False, self.ticker_price)),
            "POST /api/v3/order": ("POST", Endpoint(1, True, self.new_order, "new", free_on_success=True)),
            "DELETE /api/v3/order": ("DELETE", Endpoint(1, True, self.cancel_order, "cancel",
                                                        free_on_success=True)),
            "GET /api/v3/order": ("GET", Endpoint(4, True, self.query_order)),
            "/api/v3/order/amend/keepPriority": ("PUT", Endpoint(4, True, self.amend_order, "amend")),
            "GET /api/v3/openOrders": ("GET", Endpoint(_one_symbol_or_all(6, 80), True, self.open_orders)),
            "DELETE /api/v3/openOrders": ("DELETE", Endpoint(1, True, self.cancel_open_orders, "cancel_all",
                                                             free_on_success=True)),
            "/api/v3/account": ("GET", Endpoint(20, True, self.account)),
            "/api/v3/orderList/oco": ("POST", Endpoint(1, True, lists.new_oco, "new_order_list",
                                                       free_on_success=True)),
            "DELETE /api/v3/orderList": ("DELETE", Endpoint(1, True, lists.cancel, "cancel_order_list",
                                                            free_on_success=True)),
            "GET /api/v3/orderList": ("GET", Endpoint(4, True, lists.query)),
            "/api/v3/openOrderList": ("GET", Endpoint(6, True, lists.open_lists)),
        }

    def routes(self) -> list[web.RouteDef]:
        out = []
        for key, (method, endpoint) in self.endpoints().items():
            path = key.split(" ", 1)[-1]
            out.append(web.route(method, path, self._serve(endpoint)))
        return out

    # -- the REST transport ---------------------------------------------------------
    def _serve(self, endpoint: Endpoint):
        async def serve(request: web.Request) -> web.Response:
            received_us = wall_us()
            if self.venue.listener_bans:
                refusal = listeners.refusal(self.venue.listener_bans, request)
                if refusal is not None:
                    return await self._refused(request, refusal, endpoint.audit, received_us)
            raw_query = request.raw_path.partition("?")[2]
            raw_body = await request.text() if request.can_read_body else ""
            call = Call({}, request.remote or "?", request.headers.get("X-MBX-APIKEY", ""),
                        lambda secret: verify(secret, raw_query, raw_body), raw_query=raw_query, raw_body=raw_body)
            try:
                call.params = _parse_params(raw_query, raw_body)
            except errors.VenueError as exc:
                self.dispatcher.audit(endpoint.audit, call, received_us, exc.http_status, exc.body()) \
                    if endpoint.audit else None
                return self._json(exc.body(), exc.http_status, {})
            outcome = await self.dispatcher.execute(endpoint, call, received_us)
            headers = {"X-MBX-USED-WEIGHT-1M": str(outcome.weight_used)}
            if outcome.order_counts is not None:
                headers["X-MBX-ORDER-COUNT-10S"], headers["X-MBX-ORDER-COUNT-1D"] = map(str, outcome.order_counts)
            if outcome.retry_after is not None:
                headers["Retry-After"] = str(outcome.retry_after)
            return self._json(outcome.body, outcome.status, headers)
        return serve

    @staticmethod
    def _json(body, status: int, headers: dict) -> web.Response:
        return web.json_response(body, status=status, headers=headers,
                                 dumps=lambda o: json.dumps(o, separators=(",", ":")))

    async def _refused(self, request: web.Request, refusal: "listeners.Refusal", audit: str | None,
                       received_us: int) -> web.Response:
        """A request on a banned listener: answered at the door, audited if it was an order request."""
        if audit:
            raw_body = await request.text() if request.can_read_body else ""
            raw_query = request.raw_path.partition("?")[2]
            call = Call({}, request.remote or "?", request.headers.get("X-MBX-APIKEY", ""), lambda _: False,
                        raw_query=raw_query, raw_body=raw_body)
            try:
                call.params = _parse_params(raw_query, raw_body)
            except errors.VenueError:
                pass
            self.dispatcher.audit(audit, call, received_us, refusal.status, refusal.body)
        return refusal.response()

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
        status = call.get("symbolStatus")
        if status is not None:
            # "Cannot be used in combination with `symbols` or `symbol`."
            if call.get("symbol") or call.get("symbols"):
                raise errors.bad_combination()
            if status not in SYMBOL_STATUSES:
                raise errors.bad_param("symbolStatus")
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
        if status is not None:
            specs = [s for s in specs if s.status == status]
        limits = self.venue.limits
        return {
            "timezone": "UTC", "serverTime": wall_ms(),
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                 "limit": limits.weight_per_minute},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": limits.orders_per_10s},
                {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": limits.orders_per_day},
                {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5,
                 "limit": limits.raw_requests_per_5m},
            ],
            "exchangeFilters": [],
            "symbols": [s.exchange_info() for s in specs],
        }

    async def avg_price(self, call: Call):
        """GET /api/v3/avgPrice: the average the filters use (PERCENT_PRICE_BY_SIDE's avgPriceMins)."""
        spec = self.engine.spec(self._symbol(call))
        band = spec.filters.percent_price_by_side
        minutes = band.avg_price_mins if band else 5
        return {"mins": minutes, "price": format_amount(self.engine.average_price(spec.symbol, minutes)),
                "closeTime": wall_ms()}

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
        if order_type in errors.UNSUPPORTED_ORDER_TYPES:  # a documented type the symbol does not take
            raise errors.rejected(errors.UNSUPPORTED_ORDER_TYPES[order_type])
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
        if call.get("icebergQty") is not None:
            self._refuse_iceberg(symbol, qty, call.amount("icebergQty"))
        if call.get("pegPriceType") is not None:
            raise errors.rejected(errors.PEGGED_UNSUPPORTED)
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

    def _refuse_iceberg(self, symbol: str, qty: int, iceberg_qty: int) -> None:
        """The sim has no iceberg orders (icebergAllowed false): the icebergQty filters are enforced as the
        venue does (LOT_SIZE "for quantity/icebergQty", ICEBERG_PARTS), then the order is refused."""
        filters = self.engine.spec(symbol).filters
        if filters.lot_size and not filters.lot_size.admits(iceberg_qty):
            raise errors.filter_failure("LOT_SIZE")
        if filters.iceberg_parts is not None and iceberg_qty and iceberg_parts(qty, iceberg_qty) > filters.iceberg_parts:
            raise errors.filter_failure("ICEBERG_PARTS")
        raise errors.rejected(errors.ICEBERG_UNSUPPORTED)

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

    async def amend_order(self, call: Call):
        """PUT /api/v3/order/amend/keepPriority: a smaller quantity, the same place in the queue."""
        symbol = self._symbol(call)
        order_id, client_id = self._order_ref(call)
        new_qty = call.amount("newQty") if call.need("newQty") else 0
        if new_qty <= 0:
            raise errors.bad_param("newQty")
        new_client_id = call.client_id("newClientOrderId")
        amendment = self.engine.amend_keep_priority(call.account.api_key, symbol, order_id, client_id,
                                                    new_client_id, new_qty, not_after_us=call.deadline_us)
        return render.amended(amendment)

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
