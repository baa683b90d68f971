"""The user data stream over the WebSocket API (signature subscription).

Every message is decoded into its documented type (messages.py): the
subscription reply (with its `rateLimits`), `executionReport`,
`outboundAccountPosition`, `balanceUpdate`, `listStatus`,
`externalLockUpdate`, `eventStreamTerminated` and the connection event
`serverShutdown`. One that does not decode is counted and logged
(decode_ledger.py) and, being an account event the node may have missed,
makes the engine reconcile over REST at once (`on_missed`).

**Server shutdown.** On `serverShutdown` ("Please establish a new
connection as soon as possible") the node opens and subscribes a second
connection while the first still delivers events, and switches to it once
it is subscribed; the old one is closed only then. Events in the overlap
arrive twice, which the OMS absorbs (fills are counted once per trade id,
statuses only move forward, balances are absolute). No event falls between
the two subscriptions, so there is nothing to reconcile; only when the old
connection closes before the new one is subscribed does the engine
reconcile, as after any reconnection.

`eventStreamTerminated` means the subscription ended: the node resubscribes
on a fresh connection (and reconciles).
"""
import asyncio
import hashlib
import hmac
import json
import time

import msgspec
import websockets

from .. import logs
from .decode_ledger import DecodeLedger
from .ws_connection import CLOSED, WsConnection
from .messages import (AccountPosition, BalanceUpdate, EventStreamTerminated, ExecutionReport, ExternalLockUpdate,
                       ListStatus, ServerShutdown, StreamEvent, SubscriptionResult, UserEvent, WsApiResponse)

log = logs.get("userstream")
_envelope = msgspec.json.Decoder(UserEvent)
_response = msgspec.json.Decoder(WsApiResponse, strict=False)
_subscription = msgspec.json.Decoder(SubscriptionResult)
_event_type = msgspec.json.Decoder(StreamEvent, strict=False)
# Every documented event type and its decoder.
DECODERS = {
    "executionReport": msgspec.json.Decoder(ExecutionReport, strict=False),
    "outboundAccountPosition": msgspec.json.Decoder(AccountPosition, strict=False),
    "balanceUpdate": msgspec.json.Decoder(BalanceUpdate, strict=False),
    "listStatus": msgspec.json.Decoder(ListStatus, strict=False),
    "externalLockUpdate": msgspec.json.Decoder(ExternalLockUpdate, strict=False),
    "eventStreamTerminated": msgspec.json.Decoder(EventStreamTerminated, strict=False),
    "serverShutdown": msgspec.json.Decoder(ServerShutdown, strict=False),
}
ACCOUNT_EVENTS = frozenset({"executionReport", "outboundAccountPosition", "balanceUpdate", "listStatus",
                            "externalLockUpdate"})  # missing one of these means the account state may be off
SUBSCRIBE_TIMEOUT_S = 5.0
SUBSCRIBE_MAX_MESSAGES = 100  # read while waiting for the subscription's reply


class SubscriptionRefused(ConnectionError):
    pass


def subscribe_request(api_key: str, api_secret: str, request_id: str) -> str:
    params = {"apiKey": api_key, "timestamp": int(time.time() * 1000)}
    payload = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
    params["signature"] = hmac.new(api_secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
    return json.dumps({"id": request_id, "method": "userDataStream.subscribe.signature", "params": params})


class _Connection(WsConnection):
    what = "user data"

    def __init__(self, number: int, ws, subscription_id: int):
        super().__init__(number, ws)
        self.subscription_id = subscription_id
        self.shutdown_announced = False


class UserStream:
    def __init__(self, url: str, api_key: str, api_secret: str, on_execution, on_position, on_resubscribed, *,
                 ledger: DecodeLedger | None = None, on_missed=None):
        self.url = url
        self._key = api_key
        self._secret = api_secret
        self.on_execution = on_execution
        self.on_position = on_position
        self.on_resubscribed = on_resubscribed  # a (re)subscription after a gap: events may have been missed
        self.on_missed = on_missed  # an account event did not decode: the account may be off
        self.ledger = ledger or DecodeLedger()
        self.subscribed = asyncio.Event()
        self.reconnects = 0  # cold: each one is followed by a reconcile
        self.handovers = 0  # early reconnects after serverShutdown, no event lost
        self.shutdown_notices = 0
        self.terminations = 0  # eventStreamTerminated
        self.malformed = 0
        self.events: dict[str, int] = {}  # by event type
        self.rate_limits: list = []  # the venue's last word on this connection's limits
        self._connections = 0

    @property
    def connected(self) -> bool:
        return self.subscribed.is_set()

    # -- decoding ----------------------------------------------------------------------
    def handle(self, raw: bytes | str) -> str | None:
        """Decodes and dispatches one message; returns its event type (None if unreadable)."""
        try:
            envelope = _envelope.decode(raw)
        except msgspec.DecodeError as exc:
            self._undecodable("event", exc, raw)
            return None
        try:
            kind = _event_type.decode(envelope.event).e
        except msgspec.DecodeError as exc:
            self._undecodable("event", exc, raw)
            return None
        decoder = DECODERS.get(kind)
        if decoder is None:
            self.ledger.on_unknown_event("user-stream", kind, raw)
            return kind
        try:
            event = decoder.decode(envelope.event)
        except msgspec.DecodeError as exc:
            self._undecodable(kind, exc, raw)
            return None
        self.events[kind] = self.events.get(kind, 0) + 1
        if kind == "executionReport":
            for name, value in (("S", event.S), ("o", event.o), ("f", event.f), ("V", event.V)):
                if value is not None and not value.known:
                    self.ledger.on_unknown_value("executionReport", name, value.value, event.c)
            self.on_execution(event)
        elif kind == "outboundAccountPosition":
            self.on_position(event)
        elif kind == "listStatus":
            log.info("order list status", order_list=event.g, status=event.l.value, client_id=event.C)
        elif kind in ("balanceUpdate", "externalLockUpdate"):
            log.info("balance changed outside trading", kind=kind, asset=event.a, delta=event.d)
        return kind

    def _undecodable(self, kind: str, exc: Exception, raw) -> None:
        self.malformed += 1
        self.ledger.on_undecodable("user-stream", kind, exc, raw)
        if kind in ACCOUNT_EVENTS or kind == "event":
            if self.on_missed is not None:
                self.on_missed()

    # -- connections -------------------------------------------------------------------
    async def _subscribe(self) -> _Connection:
        """Connects and subscribes; messages before the reply are handled as they come."""
        ws = await websockets.connect(self.url, open_timeout=5, ping_interval=20)
        self._connections += 1
        number = self._connections
        request_id = f"user-data-{number}"
        try:
            await ws.send(subscribe_request(self._key, self._secret, request_id))
            shutdown_announced = False
            deadline = time.monotonic() + SUBSCRIBE_TIMEOUT_S
            for _ in range(SUBSCRIBE_MAX_MESSAGES):
                raw = await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic()))
                reply = self._reply(raw, request_id)
                if reply is None:
                    shutdown_announced |= self.handle(raw) == "serverShutdown"
                    continue
                if reply.status != 200 or not reply.result:
                    error = reply.error
                    log.error("user data subscription refused", status=reply.status,
                              code=error.code if error else None, error=error.msg if error else None)
                    raise SubscriptionRefused(f"subscription refused: {reply.status} {error}")
                try:
                    subscription_id = _subscription.decode(reply.result).subscriptionId
                except msgspec.DecodeError as exc:
                    self.ledger.on_undecodable("ws-api", "userDataStream.subscribe.signature", exc, raw)
                    raise SubscriptionRefused("subscription reply undecodable") from exc
                self.rate_limits = list(reply.rateLimits)
                conn = _Connection(number, ws, subscription_id)
                conn.shutdown_announced = shutdown_announced
                return conn
            raise SubscriptionRefused("no reply to the subscription")
        except BaseException:
            await ws.close()
            raise

    def _reply(self, raw, request_id: str) -> WsApiResponse | None:
        """The reply to our request, or None for anything else (an event)."""
        try:
            reply = _response.decode(raw)
        except msgspec.DecodeError:
            return None
        return reply if reply.id == request_id else None

    async def _open_successor(self, queue: asyncio.Queue) -> None:
        try:
            conn = await self._subscribe()
        except (OSError, SubscriptionRefused, websockets.WebSocketException, asyncio.TimeoutError) as exc:
            log.warning("could not subscribe a successor user data connection", error=str(exc))
            await queue.put((None, exc))
            return
        await queue.put((None, conn))

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 0.1
        while not stop.is_set():
            try:
                current = await self._subscribe()
            except (OSError, SubscriptionRefused, websockets.WebSocketException, asyncio.TimeoutError,
                    ValueError) as exc:
                log.warning("user data stream down", error=str(exc))
            else:
                self.subscribed.set()
                backoff = 0.1
                # Events missed while disconnected exist only on REST now.
                self.on_resubscribed()
                try:
                    await self._serve(current)
                finally:
                    self.subscribed.clear()
            if stop.is_set():
                break
            self.reconnects += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def _serve(self, current: _Connection) -> None:
        queue: asyncio.Queue = asyncio.Queue(maxsize=10_000)
        current.start(queue)
        opening: asyncio.Task | None = None
        draining: list[_Connection] = []  # replaced connections whose last events are still being read
        loop = asyncio.get_running_loop()

        def open_successor() -> asyncio.Task:
            log.warning("serverShutdown on the WebSocket API: subscribing a new connection",
                        connection=current.number if current else None)
            return loop.create_task(self._open_successor(queue))

        if current.shutdown_announced:
            opening = open_successor()
        try:
            while True:
                conn, item = await queue.get()
                if conn is None:  # the successor's subscription attempt ended
                    opening = None
                    if isinstance(item, _Connection):
                        gap = current is None  # the old one closed before the new one was subscribed
                        if current is not None:
                            draining.append(current)
                            loop.create_task(current.close())
                        current = item
                        current.start(queue)
                        self.handovers += 1
                        self.subscribed.set()
                        log.info("user data stream handed over to a new connection", connection=current.number,
                                 subscription=current.subscription_id, gap=gap)
                        if gap:
                            self.on_resubscribed()
                        if current.shutdown_announced:
                            opening = open_successor()
                    elif current is None:
                        return
                    continue
                if item is CLOSED:
                    if conn is current:
                        current = None
                        if opening is None:
                            return
                        self.subscribed.clear()  # until the successor is subscribed
                    elif conn in draining:
                        draining.remove(conn)
                    continue
                # Events of a replaced connection are still the account's: handled like any other.
                kind = self.handle(item)
                if kind == "serverShutdown":
                    self.shutdown_notices += 1
                    if conn is current and opening is None:
                        opening = open_successor()
                elif kind == "eventStreamTerminated" and conn is current:
                    self.terminations += 1
                    log.warning("the venue ended the user data subscription; resubscribing",
                                connection=conn.number)
                    return
        finally:
            for conn in [current, *draining]:
                if conn is not None:
                    if conn.reader is not None:
                        conn.reader.cancel()
                    await conn.close()
            if opening is not None:
                opening.cancel()
