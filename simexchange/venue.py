"""The venue's shared state and the fan-out of engine events to streams and
the audit log. REST, market streams and the WebSocket API all hang off it."""
import asyncio
import json
import secrets
import time
from dataclasses import dataclass, field

from aiohttp import web

from . import render
from .audit import AuditLog
from .book import DiffTracker
from .engine import BalanceUpdate, Execution, ListStatus, MatchingEngine, OrderDone, Trade
from .ratelimit import FixedWindow
from .symbols import SymbolSpec

DEPTH_CADENCES_MS = {"@depth@100ms": 100, "@depth": 1000}
OUTBOUND_QUEUE_LIMIT = 10_000


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def wall_us() -> int:
    return time.time_ns() // 1_000


@dataclass(frozen=True, slots=True)
class VenueLimits:
    weight_per_minute: int = 6000
    orders_per_10s: int = 100
    ws_ping_interval_s: float = 20.0
    orders_per_day: int = 200_000  # the real venue's ORDERS 1 DAY
    raw_requests_per_5m: int = 300_000  # RAW_REQUESTS 5 MINUTE since CHANGELOG 2026-03-27


@dataclass(frozen=True, slots=True)
class _Close:
    """Queued after the last message a connection is to get: the writer closes the socket on it."""

    code: int
    reason: bytes


# What a shut-down server's socket closes with: the docs give no code; 1001 is RFC 6455's "going away".
SHUTDOWN_CLOSE = _Close(1001, b"server shutdown")


class Outbound:
    """One WebSocket's send queue. A client too slow to keep up is
    disconnected rather than allowed to grow the venue's memory, as Binance
    does."""

    def __init__(self, ws: web.WebSocketResponse):
        self.ws = ws
        self.queue: asyncio.Queue = asyncio.Queue(OUTBOUND_QUEUE_LIMIT)
        self.writer = asyncio.get_running_loop().create_task(self._write())
        self.closing = False  # a close is queued: nothing sent after it would arrive

    def send(self, payload: dict) -> None:
        if self.closing:
            return
        try:
            self.queue.put_nowait(json.dumps(payload, separators=(",", ":")))
        except asyncio.QueueFull:
            self._drop(1008, b"slow consumer")

    def close_after_queued(self, close: _Close = SHUTDOWN_CLOSE) -> None:
        """Closes the socket once what is already queued has been written, so the close never
        overtakes a message sent before it (a serverShutdown notice, the last market data)."""
        if self.closing or self.writer.done():
            return
        self.closing = True
        try:
            self.queue.put_nowait(close)
        except asyncio.QueueFull:
            self._drop(close.code, close.reason)

    def _drop(self, code: int, reason: bytes) -> None:
        self.closing = True
        self.writer.cancel()
        asyncio.get_running_loop().create_task(self.ws.close(code=code, message=reason))

    async def _write(self) -> None:
        while True:
            item = await self.queue.get()
            if self.ws.closed:
                return
            if isinstance(item, _Close):
                await self.ws.close(code=item.code, message=item.reason)
                return
            await self.ws.send_str(item)

    async def close(self) -> None:
        self.writer.cancel()


@dataclass(eq=False)
class StreamClient:
    out: Outbound
    combined: bool
    streams: set = field(default_factory=set)

    def deliver(self, stream: str, data: dict) -> None:
        self.out.send({"stream": stream, "data": data} if self.combined else data)


@dataclass(eq=False)
class UserDataSubscription:
    out: Outbound
    subscription_id: int
    api_key: str


class Venue:
    def __init__(self, engine: MatchingEngine, audit: AuditLog, limits: VenueLimits):
        self.engine = engine
        self.audit = audit
        self.limits = limits
        self.weights = FixedWindow(limits.weight_per_minute, 60_000)
        self.order_counts = FixedWindow(limits.orders_per_10s, 10_000)
        self.order_counts_day = FixedWindow(limits.orders_per_day, 86_400_000)  # resets at 00:00 UTC
        self.raw_requests = FixedWindow(limits.raw_requests_per_5m, 300_000)
        self.stream_clients: set[StreamClient] = set()
        self.ws_api_connections: set[Outbound] = set()
        self.user_data: set[UserDataSubscription] = set()
        self.market_paused = False
        # Faults for tests and drills (POST /sim/v1/faults):
        self.depth_events_to_drop = 0  # a hole in the diff sequence
        self.matching_delay_ms = 0  # between the receipt check and the matching engine: the second recvWindow check bites
        self.listener_bans: dict = {}  # port -> listeners.Ban: an extra listener answering as a banned IP
        self.trackers: dict[tuple[str, str], DiffTracker] = {}
        self._last_top: dict[str, tuple] = {}
        for symbol, book in engine.books.items():
            for suffix in DEPTH_CADENCES_MS:
                tracker = DiffTracker()
                book.trackers.append(tracker)
                self.trackers[(symbol, suffix)] = tracker

    @property
    def specs(self) -> list[SymbolSpec]:
        return list(self.engine.specs.values())

    def stream_names(self) -> set[str]:
        names = set()
        for symbol in self.engine.specs:
            s = symbol.lower()
            names.update({f"{s}@depth@100ms", f"{s}@depth", f"{s}@bookTicker", f"{s}@trade"})
        return names

    @staticmethod
    def new_client_order_id() -> str:
        return "sim" + secrets.token_hex(10)

    # -- connection events ------------------------------------------------------
    def announce_shutdown(self, after_ms: int) -> int:
        """Binance's `serverShutdown` (web-socket-streams.md and web-socket-api.md, "Server Shutdown",
        CHANGELOG 2026-05-06 and 2026-06-09): every market-stream and WebSocket API connection open now
        is told at once, keeps being served, and is closed `after_ms` later. Connections opened after
        the notice are the new server's and stay. Returns how many connections were told."""
        now = wall_ms()
        event = {"e": "serverShutdown", "E": now}
        told: list[Outbound] = []
        for client in self.stream_clients:
            # A raw connection gets the event itself, a combined one the `!serverShutdown` stream.
            client.out.send({"stream": "!serverShutdown", "data": event} if client.combined else event)
            told.append(client.out)
        for out in self.ws_api_connections:
            out.send({"event": event})  # no subscriptionId: the event is the connection's, not a subscription's
            told.append(out)
        loop = asyncio.get_running_loop()
        for out in told:
            loop.call_later(after_ms / 1000, out.close_after_queued)
        return len(told)

    # -- fan-out ----------------------------------------------------------------
    def publish(self) -> list:
        """Drains the engine and delivers what it produced. Returns the events."""
        events = self.engine.drain()
        touched_symbols = set()
        for event in events:
            if isinstance(event, Execution):
                touched_symbols.add(event.order.symbol)
                self._to_user(event.order.account, render.execution_report(event))
            elif isinstance(event, BalanceUpdate):
                self._to_user(event.account, render.account_position(event.assets, event.event_ms))
            elif isinstance(event, Trade):
                self._to_stream(f"{event.symbol.lower()}@trade", render.trade_event(event))
            elif isinstance(event, OrderDone):
                self._audit_done(event)
            elif isinstance(event, ListStatus):
                self._to_user(event.order_list.account, render.list_status(event))
        for symbol in touched_symbols:
            self._publish_top(symbol)
        return events

    def _publish_top(self, symbol: str) -> None:
        book = self.engine.books[symbol]
        top = book.top()
        if self._last_top.get(symbol) != top:
            self._last_top[symbol] = top
            self._to_stream(f"{symbol.lower()}@bookTicker", render.book_ticker(symbol, book.update_id, top))

    def flush_depth(self, suffix: str) -> None:
        now = wall_ms()
        for symbol in self.engine.specs:
            diff = self.trackers[(symbol, suffix)].flush()
            if diff is not None and self.depth_events_to_drop and suffix == "@depth@100ms":
                self.depth_events_to_drop -= 1
                continue
            if diff is not None:
                self._to_stream(f"{symbol.lower()}{suffix}", render.depth_update(symbol, now, *diff))

    def _to_stream(self, stream: str, data: dict) -> None:
        for client in self.stream_clients:
            if stream in client.streams:
                client.deliver(stream, data)

    def _to_user(self, api_key: str, event: dict) -> None:
        for sub in self.user_data:
            if sub.api_key == api_key:
                sub.out.send({"subscriptionId": sub.subscription_id, "event": event})

    def _audit_done(self, done: OrderDone) -> None:
        order = done.order
        if self.engine.accounts[order.account].internal:
            return
        record = {
            "kind": "order_done", "ts_us": wall_us(), "api_key": order.account, "symbol": order.symbol,
            "order_id": order.order_id, "client_order_id": order.client_order_id, "status": order.status,
            "executed_qty": render.fmt(order.executed_qty), "created_ms": order.created_ms,
        }
        if order.order_list_id != -1:
            record["order_list_id"] = order.order_list_id
        self.audit.write(record)
