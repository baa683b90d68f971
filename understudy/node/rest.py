"""Signed Binance REST over aiohttp.

Rate limits are honoured before sending: after a 429/418 every request fails
fast until Retry-After has passed, and the used weight is tracked from
`X-MBX-USED-WEIGHT-1M`. Only requests that are safe to repeat are retried
(queries, and cancels by client id, whose repeat is harmless), under a
deadline rather than a count. Creating an order is never retried here; see
`order_gate.py`.
"""
import hmac
import re
import time
from urllib.parse import urlencode

import aiohttp
import msgspec
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from . import venue_errors as ve
from .decode_ledger import DecodeLedger
from .messages import (AccountInfo, AveragePrice, CancelAllEntry, CancelReply, DepthSnapshot, ErrorReply,
                       ExchangeInfo, OpenOrder, OrderReply, ServerTime)

_error_decoder = msgspec.json.Decoder(ErrorReply)
_URL_SAFE = re.compile(r"^[A-Za-z0-9._~-]*$")


def encode_query(params: dict) -> str:
    """urlencode, without its cost on the hot path: our symbols, numbers and
    client ids need no escaping; anything else goes through urlencode."""
    parts = []
    for key, value in params.items():
        text = value if isinstance(value, str) else str(value)
        if not _URL_SAFE.match(text):
            return urlencode(params)
        parts.append(f"{key}={text}")
    return "&".join(parts)


TOO_MANY_ORDERS = -1015  # errors.md: "Too many new orders; current limit is %s orders per %s."


class VenueRest:
    def __init__(self, session: aiohttp.ClientSession, base_url: str, api_key: str, api_secret: str,
                 recv_window_ms: int = 5000, timeout_s: float = 2.0, retry_deadline_s: float = 3.0,
                 venue_time_ms=None, ledger: DecodeLedger | None = None):
        self._session = session
        self._base = base_url.rstrip("/")
        self._key = api_key
        self._secret = api_secret.encode()
        self._recv_window = recv_window_ms
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._retry_deadline = retry_deadline_s
        # The venue's time as this node estimates it (venue_clock.py), for the signed timestamps.
        self._venue_time_ms = venue_time_ms or (lambda: time.time() * 1000)
        self.used_weight = 0
        self.blocked_until = 0.0  # monotonic: every request waits (the IP's request weight, an IP ban)
        # Only new orders wait: the account's order-count limit (-1015) counts new orders, and cancels,
        # queries and the venue clock's probes go on (Binance). Blocking everything for its Retry-After
        # (up to 10 s) left the clock unprobed and the venue "unreachable": a primary throttled under
        # load halted and handed the lock over (drill switchover-under-load).
        self.orders_blocked_until = 0.0  # monotonic
        # An IP ban (HTTP 418) as opposed to throttling (429, -1015): the node cannot trade until
        # it ends, which is what readiness and the hand-over bound are about.
        self.banned_until = 0.0
        self.requests_sent = 0
        self.errors_by_code: dict[int, int] = {}
        self.ledger = ledger or DecodeLedger()
        self.order_lists_cancelled = 0  # order lists among the entries of cancel-all replies

    # -- transport ---------------------------------------------------------------
    def _signed_query(self, params: dict) -> str:
        # An order comes with its own timestamp and recvWindow: its lease's fence (order_gate.py).
        if "timestamp" not in params:
            params = {**params, "recvWindow": self._recv_window, "timestamp": int(self._venue_time_ms())}
        query = encode_query(params)
        return f"{query}&signature={hmac.digest(self._secret, query.encode(), 'sha256').hex()}"

    async def request(self, method: str, path: str, params: dict | None = None, signed: bool = False,
                      decode=None, creates_order: bool = False):
        wait = max(self.blocked_until, self.orders_blocked_until if creates_order else 0.0) - time.monotonic()
        if wait > 0:
            raise ve.RateLimited(-1003, "backing off after a rate-limit reply", 429, wait)
        query = self._signed_query(params or {}) if signed else encode_query(params or {})
        url = f"{self._base}{path}" + (f"?{query}" if query else "")
        headers = {"X-MBX-APIKEY": self._key} if signed else {}
        self.requests_sent += 1
        try:
            async with self._session.request(method, url, headers=headers, timeout=self._timeout) as resp:
                body = await resp.read()
                weight = resp.headers.get("X-MBX-USED-WEIGHT-1M")
                if weight is not None:
                    self.used_weight = int(weight)
                if resp.status == 200:
                    try:
                        return decode(body) if decode else msgspec.json.decode(body)
                    except msgspec.DecodeError as exc:
                        # Counted and turned into a venue error: nothing undecodable escapes into the order path.
                        self.ledger.on_undecodable("rest", f"{method} {path}", exc, body)
                        error = ve.UndecodableReply(0, f"{method} {path}: undecodable reply: {exc}", resp.status)
                else:
                    retry_after = float(resp.headers.get("Retry-After", "1"))
                    try:
                        err = _error_decoder.decode(body)
                        code, msg = err.code, err.msg
                    except msgspec.DecodeError:
                        code, msg = 0, body[:200].decode(errors="replace")
                    error = ve.from_reply(resp.status, code, msg, retry_after)
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.errors_by_code[0] = self.errors_by_code.get(0, 0) + 1
            raise ve.OutcomeUnknown(0, f"{type(exc).__name__}: {exc}") from exc
        self.errors_by_code[error.code] = self.errors_by_code.get(error.code, 0) + 1
        if isinstance(error, ve.RateLimited):
            until = time.monotonic() + error.retry_after_s
            if error.code == TOO_MANY_ORDERS:
                self.orders_blocked_until = max(self.orders_blocked_until, until)
            else:
                self.blocked_until = until
            if error.http_status == 418:
                self.banned_until = self.blocked_until
        raise error

    async def _retrying(self, method: str, path: str, params: dict | None = None, signed: bool = False,
                        decode=None):
        """For requests whose repetition is harmless: retried on transport
        failures and 5xx until the deadline, never on a definite answer."""
        try:  # the first attempt without the retry machinery: it is on the hot path
            return await self.request(method, path, params, signed, decode)
        except ve.OutcomeUnknown:
            pass
        async for attempt in AsyncRetrying(
                stop=stop_after_delay(self._retry_deadline), reraise=True,
                wait=wait_exponential(multiplier=0.05, max=0.5),
                retry=retry_if_exception_type(ve.OutcomeUnknown)):
            with attempt:
                return await self.request(method, path, params, signed, decode)

    # -- endpoints ---------------------------------------------------------------
    async def server_time(self) -> int:
        """One round trip for the venue clock's estimate: not retried, its timing is the point."""
        return (await self.request("GET", "/api/v3/time", decode=_time_decoder.decode)).serverTime

    async def exchange_info(self, symbol: str) -> ExchangeInfo:
        return await self._retrying("GET", "/api/v3/exchangeInfo", {"symbol": symbol},
                                    decode=_exchange_info_decoder.decode)

    async def avg_price(self, symbol: str) -> AveragePrice:
        """The average price PERCENT_PRICE and PERCENT_PRICE_BY_SIDE judge an order against."""
        return await self._retrying("GET", "/api/v3/avgPrice", {"symbol": symbol}, decode=_avg_price_decoder.decode)

    async def depth(self, symbol: str, limit: int) -> DepthSnapshot:
        return await self._retrying("GET", "/api/v3/depth", {"symbol": symbol, "limit": limit},
                                    decode=_snapshot_decoder.decode)

    async def account(self) -> AccountInfo:
        return await self._retrying("GET", "/api/v3/account", {"omitZeroBalances": "true"}, signed=True,
                                    decode=_account_decoder.decode)

    async def open_orders(self, symbol: str) -> list[OpenOrder]:
        return await self._retrying("GET", "/api/v3/openOrders", {"symbol": symbol}, signed=True,
                                    decode=_open_orders_decoder.decode)

    async def query_order(self, symbol: str, client_order_id: str) -> OpenOrder:
        return await self._retrying("GET", "/api/v3/order", {"symbol": symbol, "origClientOrderId": client_order_id},
                                    signed=True, decode=_open_order_decoder.decode)

    async def cancel_order(self, symbol: str, client_order_id: str) -> CancelReply:
        """By client id only: a node may cancel what it can name, never a whole symbol."""
        return await self._retrying("DELETE", "/api/v3/order", {"symbol": symbol, "origClientOrderId": client_order_id},
                                    signed=True, decode=_cancel_decoder.decode)

    async def cancel_all_orders(self, symbol: str) -> list[CancelReply]:
        """The takeover's protective cancel. Only a fresh lease holder calls it (§2.3).
        The venue's reply mixes plain orders with order lists (OCO, OTO...)
        whose legs' reports sit inside them; every cancelled order comes back
        flat, legs included."""
        entries = await self._retrying("DELETE", "/api/v3/openOrders", {"symbol": symbol}, signed=True,
                                       decode=_cancel_list_decoder.decode)
        self.order_lists_cancelled += sum(1 for entry in entries if entry.is_order_list)
        return [report for entry in entries for report in entry.cancelled_orders()]

    async def _post_order_unguarded(self, params: dict) -> OrderReply:
        """Sends one order. Called only by OrderGate.send, which checks the lease first."""
        return await self.request("POST", "/api/v3/order", params, signed=True, decode=_order_decoder.decode,
                                  creates_order=True)


_time_decoder = msgspec.json.Decoder(ServerTime, strict=False)
_exchange_info_decoder = msgspec.json.Decoder(ExchangeInfo, strict=False)
_avg_price_decoder = msgspec.json.Decoder(AveragePrice, strict=False)
_snapshot_decoder = msgspec.json.Decoder(DepthSnapshot, strict=False)
_account_decoder = msgspec.json.Decoder(AccountInfo, strict=False)
_open_orders_decoder = msgspec.json.Decoder(list[OpenOrder], strict=False)
_open_order_decoder = msgspec.json.Decoder(OpenOrder, strict=False)
_cancel_decoder = msgspec.json.Decoder(CancelReply, strict=False)
_cancel_list_decoder = msgspec.json.Decoder(list[CancelAllEntry], strict=False)
_order_decoder = msgspec.json.Decoder(OrderReply, strict=False)
