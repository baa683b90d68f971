"""The WebSocket API at /ws-api/v3, limited to what a trading node needs:
ping, time and the signature-subscribed user data stream (Binance retired
the REST listenKey flow for Spot)."""
import hmac
import itertools
import json

from aiohttp import WSMsgType, web

from . import errors, listeners, timing
from .signing import sign, ws_api_payload
from .venue import Outbound, UserDataSubscription, Venue, wall_ms, wall_us


class WebSocketApi:
    def __init__(self, venue: Venue):
        self.venue = venue
        self._subscription_ids = itertools.count()

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/ws-api/v3", self.serve)]

    async def serve(self, request: web.Request) -> web.StreamResponse:
        if self.venue.listener_bans:  # a banned listener refuses the upgrade with the ban's reply
            refusal = listeners.refusal(self.venue.listener_bans, request)
            if refusal is not None:
                return refusal.response()
        ws = web.WebSocketResponse(heartbeat=self.venue.limits.ws_ping_interval_s)
        await ws.prepare(request)
        out = Outbound(ws)
        mine: dict[int, UserDataSubscription] = {}
        self.venue.ws_api_connections.add(out)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    out.send(self._handle(msg.data, out, mine))
        finally:
            self.venue.ws_api_connections.discard(out)
            for sub in mine.values():
                self.venue.user_data.discard(sub)
            await out.close()
        return ws

    def _handle(self, text: str, out: Outbound, mine: dict) -> dict:
        request_id = None
        try:
            try:
                request = json.loads(text)
                request_id = request.get("id")
                method, params = request["method"], request.get("params") or {}
                if not isinstance(params, dict):
                    raise TypeError
            except (ValueError, KeyError, TypeError, AttributeError):
                raise errors.VenueError(-1102, "Mandatory parameter 'method' was not sent, was empty/null, or malformed.")
            result = self._dispatch(method, params, out, mine)
            return {"id": request_id, "status": 200, "result": result}
        except errors.VenueError as exc:
            return {"id": request_id, "status": exc.http_status, "error": exc.body()}

    def _dispatch(self, method: str, params: dict, out: Outbound, mine: dict):
        if method == "ping":
            return {}
        if method == "time":
            return {"serverTime": wall_ms()}
        if method == "userDataStream.subscribe.signature":
            api_key = self._authenticate(params)
            sub = UserDataSubscription(out, next(self._subscription_ids), api_key)
            mine[sub.subscription_id] = sub
            self.venue.user_data.add(sub)
            return {"subscriptionId": sub.subscription_id}
        if method == "userDataStream.unsubscribe":
            wanted = params.get("subscriptionId")
            for sid in [s for s in mine if wanted is None or s == wanted]:
                self.venue.user_data.discard(mine.pop(sid))
            return {}
        if method == "session.subscriptions":
            return [{"subscriptionId": sid} for sid in mine]
        raise errors.VenueError(-1100, f"Illegal characters found in parameter 'method'; unknown method {method!r}.")

    def _authenticate(self, params: dict) -> str:
        api_key = params.get("apiKey")
        if not api_key:
            raise errors.missing("apiKey")
        account = self.venue.engine.accounts.get(api_key)
        if account is None or account.internal:
            raise errors.unauthorized()
        signature = str(params.get("signature", ""))
        if not hmac.compare_digest(sign(account.secret, ws_api_payload(params)), signature.lower()):
            raise errors.bad_signature()
        if params.get("timestamp") in (None, ""):
            raise errors.missing("timestamp")
        # Timing security as on REST (web-socket-api.md, "Timing security"; timing.py).
        timestamp_us = timing.timestamp_us(params["timestamp"])
        recv_window_us = timing.recv_window_us(params.get("recvWindow"))
        timing.check_at_receipt(timestamp_us, recv_window_us, wall_us())
        return api_key
