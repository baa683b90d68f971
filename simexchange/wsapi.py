"""The WebSocket API at /ws-api/v3 (web-socket-api.md): market data, trading
and account methods over the same handlers and common path as REST
(dispatch.py), plus the session's own methods and the signature-subscribed
user data stream (Binance retired the REST listenKey flow for Spot).

Every reply carries `rateLimits` unless the request (`returnRateLimits`) or
the connection URL (`?returnRateLimits=false`) says otherwise ("`rateLimits`
field is included with every response by default"); Binance's own SDK reads
it on every reply. Subscription ids count per session from 0. Connecting
costs 2 request weight ("Connecting to WebSocket API costs 2 weight").
"""
import hmac
import json
from dataclasses import dataclass, field
from urllib.parse import urlencode

from aiohttp import WSMsgType, web

from . import errors, listeners
from .dispatch import Call, Endpoint
from .rest import RestApi
from .signing import sign, ws_api_payload
from .venue import Outbound, UserDataSubscription, Venue, wall_ms, wall_us

CONNECT_WEIGHT = 2
MAX_ACTIVE_SUBSCRIPTIONS = 1000  # "A single session supports up to 1,000 active subscriptions"
MAX_SUBSCRIPTION_IDS = 65_535  # "a maximum of 65,535 total subscriptions over its lifetime"
# Methods that place orders: their replies show the ORDERS limits as well (web-socket-api.md, "Unfilled
# Order Count": "Successfully placed orders update the ORDERS rate limit type").
ORDER_METHODS = ("order.place", "orderList.place.oco")

# WebSocket API method -> the REST endpoint with the same parameters and reply (web-socket-api.md).
REST_EQUIVALENTS = {
    "exchangeInfo": "/api/v3/exchangeInfo",
    "depth": "/api/v3/depth",
    "avgPrice": "/api/v3/avgPrice",
    "ticker.book": "/api/v3/ticker/bookTicker",
    "ticker.price": "/api/v3/ticker/price",
    "order.place": "POST /api/v3/order",
    "order.cancel": "DELETE /api/v3/order",
    "order.status": "GET /api/v3/order",
    "order.amend.keepPriority": "/api/v3/order/amend/keepPriority",
    "openOrders.status": "GET /api/v3/openOrders",
    "openOrders.cancelAll": "DELETE /api/v3/openOrders",
    "account.status": "/api/v3/account",
    "orderList.place.oco": "/api/v3/orderList/oco",
    "orderList.cancel": "DELETE /api/v3/orderList",
    "orderList.status": "GET /api/v3/orderList",
    "openOrderLists.status": "/api/v3/openOrderList",
}


def _text(value) -> str:
    """A JSON parameter as the text REST would have carried."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _flag(value, default: bool) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return default


@dataclass(eq=False)
class Session:
    """One WebSocket API connection."""

    out: Outbound
    ip: str
    connected_ms: int
    return_rate_limits: bool
    subscriptions: dict = field(default_factory=dict)  # subscriptionId -> UserDataSubscription
    next_subscription_id: int = 0


class WebSocketApi:
    def __init__(self, venue: Venue, rest: RestApi):
        self.venue = venue
        self.dispatcher = rest.dispatcher
        by_path = rest.endpoints()
        self.methods: dict[str, Endpoint] = {name: by_path[path][1] for name, path in REST_EQUIVALENTS.items()}
        self.methods.update({
            "ping": Endpoint(1, False, self._ping),
            "time": Endpoint(1, False, self._time),
            "userDataStream.subscribe.signature": Endpoint(2, True, self._subscribe_signature),
            "userDataStream.unsubscribe": Endpoint(2, False, self._unsubscribe),
            "session.subscriptions": Endpoint(2, False, self._session_subscriptions),
            "session.status": Endpoint(2, False, self._session_status),
        })

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/ws-api/v3", self.serve)]

    async def serve(self, request: web.Request) -> web.StreamResponse:
        if self.venue.listener_bans:  # a banned listener refuses the upgrade with the ban's reply
            refusal = listeners.refusal(self.venue.listener_bans, request)
            if refusal is not None:
                return refusal.response()
        ws = web.WebSocketResponse(heartbeat=self.venue.limits.ws_ping_interval_s)
        await ws.prepare(request)
        session = Session(Outbound(ws), request.remote or "?", wall_ms(),
                          _flag(request.query.get("returnRateLimits"), True))
        self.venue.weights.add(session.ip, CONNECT_WEIGHT, wall_ms())
        self.venue.ws_api_connections.add(session.out)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    session.out.send(await self._handle(msg.data, session))
        finally:
            self.venue.ws_api_connections.discard(session.out)
            for sub in session.subscriptions.values():
                self.venue.user_data.discard(sub)
            await session.out.close()
        return ws

    async def _handle(self, text: str, session: Session) -> dict:
        received_us = wall_us()
        request_id = None
        try:
            request = json.loads(text)
            request_id = request.get("id")
            method, params = request["method"], request.get("params") or {}
            if not isinstance(method, str) or not isinstance(params, dict):
                raise TypeError
        except (ValueError, KeyError, TypeError, AttributeError):
            error = errors.missing("method")
            return {"id": request_id, "status": error.http_status, "error": error.body()}
        method = method.removeprefix("v3/")  # "Request method names may be prefixed with explicit version"
        endpoint = self.methods.get(method)
        if endpoint is None:
            error = errors.VenueError(-1100, f"Illegal characters found in parameter 'method'; "
                                             f"unknown method {method!r}.")
            return {"id": request_id, "status": error.http_status, "error": error.body()}
        call = Call({k: _text(v) for k, v in params.items() if v is not None}, session.ip,
                    _text(params.get("apiKey") or ""), lambda secret: self._signature_valid(secret, params),
                    transport="ws-api")
        call.session = session
        outcome = await self.dispatcher.execute(endpoint, call, received_us)
        reply: dict = {"id": request_id, "status": outcome.status}
        if outcome.status == 200:
            reply["result"] = outcome.body
        else:
            reply["error"] = dict(outcome.body)
            if outcome.retry_after is not None:  # "Rate-limited responses include a retryAfter field"
                now = wall_ms()
                reply["error"]["data"] = {"serverTime": now, "retryAfter": now + outcome.retry_after * 1000}
        if _flag(params.get("returnRateLimits"), session.return_rate_limits):
            reply["rateLimits"] = self._rate_limits(method, outcome)
        return reply

    def _rate_limits(self, method: str, outcome) -> list[dict]:
        limits = self.venue.limits
        out = []
        if method in ORDER_METHODS and outcome.order_counts is not None:
            ten_s, day = outcome.order_counts
            out += [{"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10,
                     "limit": limits.orders_per_10s, "count": ten_s},
                    {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1,
                     "limit": limits.orders_per_day, "count": day}]
        out.append({"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                    "limit": limits.weight_per_minute, "count": outcome.weight_used})
        return out

    @staticmethod
    def _signature_valid(secret: str, params: dict) -> bool:
        """web-socket-api.md, "SIGNED request example (HMAC)": every parameter but `signature`, sorted by
        name, as `name=value` joined by `&`, values in UTF-8, not percent-encoded. Binance's own SDK signs
        the percent-encoded form of the same parameters; the two differ only for values with characters
        that need escaping, and the SDK works against the venue: both are accepted."""
        signature = _text(params.get("signature", "")).lower()
        if hmac.compare_digest(sign(secret, ws_api_payload(params)), signature):
            return True
        encoded = urlencode(sorted((k, _text(v)) for k, v in params.items() if k != "signature"))
        return hmac.compare_digest(sign(secret, encoded), signature)

    # -- the session's own methods ------------------------------------------------------
    async def _ping(self, call: Call):
        return {}

    async def _time(self, call: Call):
        return {"serverTime": wall_ms()}

    async def _subscribe_signature(self, call: Call):
        session: Session = call.session
        if any(sub.api_key == call.account.api_key for sub in session.subscriptions.values()):
            # "You can have only one active subscription for a given account on a given connection."
            raise errors.subscription_active()
        if len(session.subscriptions) >= MAX_ACTIVE_SUBSCRIPTIONS or session.next_subscription_id >= MAX_SUBSCRIPTION_IDS:
            raise errors.VenueError(-2042, "Maximum subscription ID reached for this connection.")
        sub = UserDataSubscription(session.out, session.next_subscription_id, call.account.api_key)
        session.next_subscription_id += 1
        session.subscriptions[sub.subscription_id] = sub
        self.venue.user_data.add(sub)
        return {"subscriptionId": sub.subscription_id}

    async def _unsubscribe(self, call: Call):
        """Without `subscriptionId`, every subscription of the session ends; each ending subscription gets
        user-data-stream.md's `eventStreamTerminated` ("The subscription is stopped via the
        userDataStream.unsubscribe method")."""
        session: Session = call.session
        wanted = call.integer("subscriptionId")
        if wanted is not None and wanted not in session.subscriptions:
            raise errors.subscription_inactive()
        now = wall_ms()
        for sid in [s for s in session.subscriptions if wanted is None or s == wanted]:
            self.venue.user_data.discard(session.subscriptions.pop(sid))
            session.out.send({"subscriptionId": sid, "event": {"e": "eventStreamTerminated", "E": now}})
        return {}

    async def _session_subscriptions(self, call: Call):
        return [{"subscriptionId": sid} for sid in call.session.subscriptions]

    async def _session_status(self, call: Call):
        session: Session = call.session
        # No session.logon in the sim (it needs Ed25519 keys; the sim's accounts are HMAC): never authorized.
        return {"apiKey": None, "authorizedSince": None, "connectedSince": session.connected_ms,
                "returnRateLimits": session.return_rate_limits, "serverTime": wall_ms(),
                "userDataStream": bool(session.subscriptions)}
