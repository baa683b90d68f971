"""The sim's own endpoints under /sim/v1, outside Binance's namespace: tests
and drills freeze the synthetic market, read the whole book, inject faults
and open extra listeners through them. Bad input is a 400 with a plain-text
reason, never a 500."""
import dataclasses
import time

from aiohttp import web

from .listeners import BAN_STATUSES, Ban, Listeners
from .symbols import SYMBOL_STATUSES
from .units import format_amount
from .venue import Venue


def _bad(reason: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=reason)


async def _body(request: web.Request) -> dict:
    try:
        body = await request.json() if request.can_read_body else {}
    except (ValueError, UnicodeDecodeError):
        raise _bad("expected a JSON object") from None
    if not isinstance(body, dict):
        raise _bad("expected a JSON object")
    return body


def _count(body: dict, name: str) -> int:
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _bad(f"{name}: expected a non-negative integer")
    return value


class Control:
    FAULTS = ("drop_depth_events", "matching_delay_ms", "ban_listener", "unban_listener", "server_shutdown")

    def __init__(self, venue: Venue, listeners: Listeners):
        self.venue = venue
        self.listeners = listeners

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/sim/v1/market", self.set_market),
            web.post("/sim/v1/symbol", self.set_symbol),
            web.get("/sim/v1/book", self.book),
            web.get("/sim/v1/faults", self.get_faults),
            web.post("/sim/v1/faults", self.faults),
            web.post("/sim/v1/audit/sync", self.audit_sync),
            web.get("/sim/v1/listeners", self.get_listeners),
            web.post("/sim/v1/listeners", self.open_listener),
        ]

    async def set_market(self, request: web.Request) -> web.Response:
        body = await _body(request)
        self.venue.market_paused = bool(body.get("paused"))
        return web.json_response({"paused": self.venue.market_paused})

    async def set_symbol(self, request: web.Request) -> web.Response:
        """{"symbol": "BTCUSDT", "status": "HALT", "filters": [{"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 3}]}
        -> the symbol as exchangeInfo now shows it. `status` and `filters` are each optional; a filter is
        given in exchangeInfo's form, its fields merged over the published ones (a new filterType, e.g.
        MAX_POSITION, is added and needs all its fields). New orders meet the change; resting ones stay."""
        body = await _body(request)
        unknown = sorted(set(body) - {"symbol", "status", "filters"})
        if unknown:
            raise _bad(f"unknown field {unknown[0]!r}; known: symbol, status, filters")
        symbol = body.get("symbol")
        specs = self.venue.engine.specs
        if not isinstance(symbol, str) or symbol.upper() not in specs:
            raise _bad(f"symbol: expected one of {', '.join(specs)}")
        spec = specs[symbol.upper()]
        status = body.get("status", spec.status)
        if status not in SYMBOL_STATUSES:
            raise _bad(f"status: expected one of {', '.join(SYMBOL_STATUSES)}")
        filters = spec.filters
        if "filters" in body:
            if not isinstance(body["filters"], list):
                raise _bad("filters: expected a list of filters in exchangeInfo's form")
            try:
                filters = filters.merged(body["filters"])
            except ValueError as exc:
                raise _bad(f"filters: {exc}") from None
        self.venue.engine.set_spec(dataclasses.replace(spec, status=status, filters=filters))
        return web.json_response(self.venue.engine.specs[spec.symbol].exchange_info())

    async def book(self, request: web.Request) -> web.Response:
        symbol = request.query.get("symbol", "").upper()
        if symbol not in self.venue.engine.books:
            raise web.HTTPNotFound(text="unknown symbol")
        update_id, bids, asks = self.venue.engine.books[symbol].snapshot(None)
        return web.json_response({
            "updateId": update_id,
            "bids": [[format_amount(p), format_amount(q)] for p, q in bids],
            "asks": [[format_amount(p), format_amount(q)] for p, q in asks],
        })

    def _fault_state(self) -> dict:
        now_ms = time.time_ns() // 1_000_000
        for port in [p for p, ban in self.venue.listener_bans.items() if ban.until_ms <= now_ms]:
            del self.venue.listener_bans[port]
        return {
            "drop_depth_events": self.venue.depth_events_to_drop,
            "matching_delay_ms": self.venue.matching_delay_ms,
            "banned_listeners": [{"port": port, "status": ban.status, "until_ms": ban.until_ms}
                                 for port, ban in sorted(self.venue.listener_bans.items())],
        }

    async def get_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self._fault_state())

    async def faults(self, request: web.Request) -> web.Response:
        """Sets the faults named in the body, leaves the others as they are, answers the whole state.

        {"drop_depth_events": N}        the next N @depth@100ms diffs are lost (a gap in U/u)
        {"matching_delay_ms": N}        N ms between the receipt check and the matching engine; 0 = off
        {"ban_listener": {"port": P, "status": 418|403, "seconds": S}}
        {"unban_listener": P}
        {"server_shutdown": {"after_ms": N}}   serverShutdown now on every market-stream and WebSocket
                                        API connection; each is closed N ms later (a one-off, not a state)
        """
        body = await _body(request)
        unknown = sorted(set(body) - set(self.FAULTS))
        if unknown:
            raise _bad(f"unknown fault {unknown[0]!r}; known: {', '.join(self.FAULTS)}")
        # Validate everything first: a request half applied would be a fault of its own.
        drop = _count(body, "drop_depth_events") if "drop_depth_events" in body else None
        delay = _count(body, "matching_delay_ms") if "matching_delay_ms" in body else None
        ban = self._ban(body["ban_listener"]) if "ban_listener" in body else None
        unban = self._listener_port(body["unban_listener"], "unban_listener") if "unban_listener" in body else None
        shutdown_after_ms = self._shutdown(body["server_shutdown"]) if "server_shutdown" in body else None
        if drop is not None:
            self.venue.depth_events_to_drop = drop
        if delay is not None:
            self.venue.matching_delay_ms = delay
        if unban is not None:
            self.venue.listener_bans.pop(unban, None)
        if ban is not None:
            self.venue.listener_bans[ban[0]] = ban[1]
        state = self._fault_state()
        if shutdown_after_ms is not None:
            state["server_shutdown"] = {"after_ms": shutdown_after_ms,
                                        "connections_told": self.venue.announce_shutdown(shutdown_after_ms)}
        return web.json_response(state)

    @staticmethod
    def _shutdown(spec) -> int:
        if not isinstance(spec, dict) or set(spec) != {"after_ms"}:
            raise _bad('server_shutdown: expected {"after_ms": N}')
        after_ms = spec["after_ms"]
        if isinstance(after_ms, bool) or not isinstance(after_ms, int) or not 0 <= after_ms <= 3_600_000:
            raise _bad("server_shutdown.after_ms: expected an integer 0..3600000")
        return after_ms

    def _listener_port(self, value, name: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value not in self.listeners.sites:
            raise _bad(f"{name}: expected the port of an extra listener (POST /sim/v1/listeners); "
                       f"open: {self.listeners.ports}")
        return value

    def _ban(self, spec) -> tuple[int, Ban]:
        if not isinstance(spec, dict) or set(spec) - {"port", "status", "seconds"}:
            raise _bad('ban_listener: expected {"port": P, "status": 418|403, "seconds": S}')
        port = self._listener_port(spec.get("port"), "ban_listener.port")
        status = spec.get("status", 418)
        if isinstance(status, bool) or status not in BAN_STATUSES:
            raise _bad("ban_listener.status: expected 418 (IP banned) or 403 (WAF)")
        seconds = spec.get("seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds < 10**7:
            raise _bad("ban_listener.seconds: expected a positive number")
        return port, Ban(status, time.time_ns() // 1_000_000 + round(seconds * 1000))

    async def audit_sync(self, request: web.Request) -> web.Response:
        self.venue.audit.sync()
        return web.json_response({"path": self.venue.audit.path})

    async def get_listeners(self, request: web.Request) -> web.Response:
        return web.json_response({"ports": self.listeners.ports})

    async def open_listener(self, request: web.Request) -> web.Response:
        """{"port": P} (absent or 0: a free port) -> {"port": bound}: the whole venue, on one more port."""
        body = await _body(request)
        port = body.get("port", 0)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise _bad("port: expected 0..65535")
        if self.listeners.runner is None:
            raise web.HTTPServiceUnavailable(text="the venue is not serving yet")
        if port and port in {address[1] for address in self.listeners.runner.addresses}:
            raise web.HTTPConflict(text=f"port {port} is already served")
        try:
            bound = await self.listeners.open(port)
        except OSError as exc:
            raise web.HTTPConflict(text=f"cannot listen on {self.listeners.host}:{port}: {exc.strerror}") from None
        return web.json_response({"port": bound})
