"""The user data stream over the WebSocket API (signature subscription)."""
import asyncio
import hashlib
import hmac
import json
import time

import msgspec
import websockets

from .. import logs
from .messages import AccountPosition, EventType, ExecutionReport, UserEvent

log = logs.get("userstream")
_envelope = msgspec.json.Decoder(UserEvent)
_event_type = msgspec.json.Decoder(EventType)
_execution = msgspec.json.Decoder(ExecutionReport, strict=False)
_position = msgspec.json.Decoder(AccountPosition, strict=False)


def subscribe_request(api_key: str, api_secret: str, request_id: str) -> str:
    params = {"apiKey": api_key, "timestamp": int(time.time() * 1000)}
    payload = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
    params["signature"] = hmac.new(api_secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
    return json.dumps({"id": request_id, "method": "userDataStream.subscribe.signature", "params": params})


class UserStream:
    def __init__(self, url: str, api_key: str, api_secret: str, on_execution, on_position, on_resubscribed):
        self.url = url
        self._key = api_key
        self._secret = api_secret
        self.on_execution = on_execution
        self.on_position = on_position
        self.on_resubscribed = on_resubscribed
        self.subscribed = asyncio.Event()
        self.reconnects = 0
        self.malformed = 0

    @property
    def connected(self) -> bool:
        return self.subscribed.is_set()

    def handle(self, raw: bytes | str) -> None:
        try:
            envelope = _envelope.decode(raw)
            kind = _event_type.decode(envelope.event).e
            if kind == "executionReport":
                self.on_execution(_execution.decode(envelope.event))
            elif kind == "outboundAccountPosition":
                self.on_position(_position.decode(envelope.event))
        except msgspec.DecodeError as exc:
            self.malformed += 1
            log.warning("malformed user data message", error=str(exc))

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 0.1
        while not stop.is_set():
            try:
                async with websockets.connect(self.url, open_timeout=5, ping_interval=20) as ws:
                    await ws.send(subscribe_request(self._key, self._secret, "user-data"))
                    reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
                    if reply.get("status") != 200:
                        log.error("user data subscription refused", error=reply.get("error"))
                        raise ConnectionError(f"subscription refused: {reply.get('error')}")
                    self.subscribed.set()
                    backoff = 0.1
                    # Events missed while disconnected exist only on REST now.
                    self.on_resubscribed()
                    async for raw in ws:
                        self.handle(raw)
            except (OSError, ConnectionError, websockets.WebSocketException, asyncio.TimeoutError, ValueError) as exc:
                log.warning("user data stream down", error=str(exc))
            finally:
                self.subscribed.clear()
            if stop.is_set():
                break
            self.reconnects += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)
