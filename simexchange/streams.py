"""Market streams: /ws/<stream>[/<stream>...] (raw payloads) and
/stream?streams=a/b (combined payloads), with live SUBSCRIBE/UNSUBSCRIBE.

A name in the path that is no stream of the sim (ccxt connects to /ws/0,
/ws/1 ... and then subscribes; Binance's SDK to /stream alone) opens the
connection with nothing subscribed, as the venue does, rather than refusing
the upgrade. The sim's stream names are listed in README.md."""
import json

from aiohttp import WSMsgType, web

from . import listeners
from .venue import Outbound, StreamClient, Venue


class MarketStreams:
    def __init__(self, venue: Venue):
        self.venue = venue

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/ws", self.raw),
            web.get("/ws/{streams:.*}", self.raw),
            web.get("/stream", self.combined),
        ]

    async def raw(self, request: web.Request) -> web.StreamResponse:
        names = [s for s in request.match_info.get("streams", "").split("/") if s]
        return await self._serve(request, names, combined=False)

    async def combined(self, request: web.Request) -> web.StreamResponse:
        names = [s for s in request.query.get("streams", "").split("/") if s]
        return await self._serve(request, names, combined=True)

    async def _serve(self, request: web.Request, names: list[str], combined: bool) -> web.StreamResponse:
        if self.venue.listener_bans:  # a banned listener refuses the upgrade with the ban's reply
            refusal = listeners.refusal(self.venue.listener_bans, request)
            if refusal is not None:
                return refusal.response()
        known = self.venue.stream_names()
        ws = web.WebSocketResponse(heartbeat=self.venue.limits.ws_ping_interval_s)
        await ws.prepare(request)
        client = StreamClient(Outbound(ws), combined, {n for n in names if n in known})
        self.venue.stream_clients.add(client)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._control(client, msg.data, known)
        finally:
            self.venue.stream_clients.discard(client)
            await client.out.close()
        return ws

    def _control(self, client: StreamClient, text: str, known: set[str]) -> None:
        try:
            request = json.loads(text)
            method, params, request_id = request["method"], request.get("params", []), request.get("id")
        except (ValueError, KeyError, TypeError):
            client.out.send({"error": {"code": 3, "msg": "Invalid JSON: expected a request object"}})
            return
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not isinstance(params, list) or any(p not in known for p in params):
                client.out.send({"error": {"code": 2, "msg": "Invalid request: unknown stream"}, "id": request_id})
                return
            if method == "SUBSCRIBE":
                client.streams.update(params)
            else:
                client.streams.difference_update(params)
            client.out.send({"result": None, "id": request_id})
        elif method == "LIST_SUBSCRIPTIONS":
            client.out.send({"result": sorted(client.streams), "id": request_id})
        elif method == "SET_PROPERTY" and params[:1] == ["combined"] and len(params) == 2:
            client.combined = bool(params[1])
            client.out.send({"result": None, "id": request_id})
        elif method == "GET_PROPERTY" and params == ["combined"]:
            client.out.send({"result": client.combined, "id": request_id})
        else:
            client.out.send({"error": {"code": 2, "msg": f"Invalid request: unknown method {method!r}"},
                             "id": request_id})
