"""One venue websocket read by a task of its own into its stream's queue,
so a stream can hold two at once (a hand-over on `serverShutdown`). The
queue gets `(connection, raw)` for each message and `(connection, CLOSED)`
once the socket is done."""
import asyncio

import websockets

from .. import logs

log = logs.get("ws")
CLOSED = object()
CLOSE_TIMEOUT_S = 2.0


class WsConnection:
    what = "venue stream"  # for the log line when the connection is lost

    def __init__(self, number: int, ws):
        self.number = number
        self.ws = ws
        self.reader: asyncio.Task | None = None

    def start(self, queue: asyncio.Queue) -> None:
        self.reader = asyncio.get_running_loop().create_task(self._read(queue))

    async def _read(self, queue: asyncio.Queue) -> None:
        try:
            async for raw in self.ws:
                await queue.put((self, raw))
        except (OSError, websockets.WebSocketException, asyncio.TimeoutError) as exc:
            log.warning(f"{self.what} connection lost", connection=self.number, error=str(exc))
        finally:
            await queue.put((self, CLOSED))

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.ws.close(), CLOSE_TIMEOUT_S)
        except (OSError, websockets.WebSocketException, asyncio.TimeoutError):
            pass
