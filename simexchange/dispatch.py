"""The path every API request takes, whichever transport brought it (REST or
the WebSocket API): request weight, signature and timing, the unfilled order
count, the matching engine's second recvWindow check, the handler, the
fan-out of what it produced, and the audit log.

Weights are Binance's as of 2026 (rest-api.md and web-socket-api.md per
endpoint; CHANGELOG 2026-03-27, live 2026-04-02: order placement and
cancellation "become 0 when the request is successful. Failed requests are
still charged the documented weight"; RAW_REQUESTS 300,000 per 5 minutes).
"""
import asyncio
import re
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from . import errors, timing
from .engine import Account
from .units import parse_amount
from .venue import Venue, wall_ms, wall_us

CLIENT_ORDER_ID = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")
# rest-api.md: "Unfilled Order Count: 2" for an OCO, 1 for an order.
UNFILLED_ORDER_COUNT = {"new": 1, "new_order_list": 2}


@dataclass(slots=True)
class Call:
    """One parsed request: its parameters as text, as REST sends them."""

    params: dict
    ip: str
    api_key: str  # REST: the X-MBX-APIKEY header; WebSocket API: the apiKey parameter
    signature_valid: Callable[[str], bool]  # the account's secret -> does the request's signature match
    transport: str = "rest"  # or "ws-api"
    account: Account | None = None
    timestamp_us: int | None = None  # of a signed request that passed the receipt check
    recv_window_us: int = timing.DEFAULT_RECV_WINDOW_US
    forwarded_us: int | None = None  # when it went on to the matching engine
    raw_query: str = ""
    raw_body: str = ""
    session: object = None  # the WebSocket API connection it came on (wsapi.Session), for its own methods

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
                raise errors.too_much_precision(name) from None
            raise errors.bad_param(name) from None

    def integer(self, name: str) -> int | None:
        value = self.get(name)
        if value is None:
            return None
        try:
            return int(value)
        except ValueError:
            raise errors.bad_param(name) from None


Handler = Callable[[Call], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class Endpoint:
    weight: int | Callable[[Call], int]
    signed: bool
    handler: Handler
    audit: str | None = None  # the audit log's action for order-entry requests
    free_on_success: bool = False  # CHANGELOG 2026-03-27: weight 0 when the request succeeds


@dataclass(slots=True)
class Outcome:
    status: int
    body: object
    retry_after: int | None = None
    weight_used: int = 0  # the IP's REQUEST_WEIGHT in this minute, after this request
    order_counts: tuple[int, int] | None = None  # (10 s, 1 day) of an order-placing request


async def _delay_us(delay_us: int) -> None:
    """At least `delay_us` on the wall clock the recvWindow checks read (the loop's timer may wake early)."""
    until = wall_us() + delay_us
    while (left := until - wall_us()) > 0:
        await asyncio.sleep(left / 1e6)


@dataclass
class Dispatcher:
    venue: Venue
    auditors: dict = field(default_factory=dict)  # action -> (call, record, status, result) -> None

    async def execute(self, endpoint: Endpoint, call: Call, received_us: int) -> Outcome:
        venue, limits = self.venue, self.venue.limits
        outcome = Outcome(200, None)
        cost = 0
        try:
            cost = endpoint.weight(call) if callable(endpoint.weight) else endpoint.weight
            now = wall_ms()
            used, reset_ms = venue.weights.add(call.ip, 0 if endpoint.free_on_success else cost, now)
            outcome.weight_used = used
            if used > limits.weight_per_minute:
                raise errors.too_many_requests(limits.weight_per_minute, -(-reset_ms // 1000))
            raw, raw_reset_ms = venue.raw_requests.add(call.ip, 1, now)
            if raw > limits.raw_requests_per_5m:
                raise errors.too_many_raw_requests(limits.raw_requests_per_5m, -(-raw_reset_ms // 1000))
            if endpoint.signed:
                call.account = self.authenticate(call)
            if endpoint.audit in UNFILLED_ORDER_COUNT:
                outcome.order_counts = self._count_order(call, UNFILLED_ORDER_COUNT[endpoint.audit])
            if endpoint.audit:  # the audited requests are the ones forwarded to the matching engine
                if venue.matching_delay_ms:
                    await _delay_us(venue.matching_delay_ms * 1000)
                call.forwarded_us = wall_us()
            outcome.body = await endpoint.handler(call)
        except errors.VenueError as exc:
            outcome.status, outcome.body, outcome.retry_after = exc.http_status, exc.body(), exc.retry_after
            if endpoint.free_on_success and cost:  # "Failed requests are still charged the documented weight."
                outcome.weight_used, _ = venue.weights.add(call.ip, cost, wall_ms())
        finally:
            venue.publish()
        if endpoint.audit:
            self.audit(endpoint.audit, call, received_us, outcome.status, outcome.body)
        return outcome

    def authenticate(self, call: Call) -> Account:
        if not call.api_key:  # REST: no X-MBX-APIKEY header; WebSocket API: no apiKey parameter
            raise errors.bad_api_key_format() if call.transport == "rest" else errors.missing("apiKey")
        account = self.venue.engine.accounts.get(call.api_key)
        if account is None or account.internal:
            raise errors.unauthorized()
        if not call.signature_valid(account.secret):
            raise errors.bad_signature()
        timestamp = call.get("timestamp")
        if timestamp is None:
            raise errors.missing("timestamp")
        timestamp_us = timing.timestamp_us(timestamp)
        recv_window_us = timing.recv_window_us(call.get("recvWindow"))
        timing.check_at_receipt(timestamp_us, recv_window_us, wall_us())
        call.timestamp_us, call.recv_window_us = timestamp_us, recv_window_us
        return account

    def _count_order(self, call: Call, orders: int) -> tuple[int, int]:
        limits, now = self.venue.limits, wall_ms()
        used, reset_ms = self.venue.order_counts.add(call.account.api_key, orders, now)
        used_day, reset_day_ms = self.venue.order_counts_day.add(call.account.api_key, orders, now)
        if used > limits.orders_per_10s:
            raise errors.too_many_orders(limits.orders_per_10s, "10 SECOND", -(-reset_ms // 1000))
        if used_day > limits.orders_per_day:
            raise errors.too_many_orders(limits.orders_per_day, "1 DAY", -(-reset_day_ms // 1000))
        return used, used_day

    def audit(self, action: str, call: Call, received_us: int, status: int, result) -> None:
        p = call.params
        record = {
            "kind": "request", "action": action, "recv_us": received_us, "done_us": wall_us(),
            "api_key": call.api_key or "", "symbol": p.get("symbol"),
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
        elif action in ("cancel", "amend"):
            record.update(client_order_id=p.get("origClientOrderId"), order_id=p.get("orderId"))
            if action == "amend":
                record["new_qty"] = p.get("newQty")
        elif action in self.auditors:
            self.auditors[action][0](action, p, record)
        if status == 200:
            record["outcome"] = "accepted"
            if action == "new":
                record.update(client_order_id=result["clientOrderId"], order_id=result["orderId"],
                              status=result.get("status"))
            elif action == "cancel":
                record.update(client_order_id=result["origClientOrderId"], order_id=result["orderId"])
            elif action == "amend":
                amended = result["amendedOrder"]
                record.update(client_order_id=amended["origClientOrderId"], order_id=amended["orderId"],
                              new_client_order_id=amended["clientOrderId"], status=amended["status"])
            elif action == "cancel_all":
                record["cancelled"] = [r["origClientOrderId"] for entry in result
                                       for r in entry.get("orderReports", [entry])]
            elif action in self.auditors:
                self.auditors[action][1](action, result, record)
        else:
            record.update(outcome="rejected", code=result.get("code"), msg=result.get("msg"))
        self.venue.audit.write(record)
