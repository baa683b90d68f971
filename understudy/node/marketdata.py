"""The depth stream and the REST snapshots that keep the local book in sync."""
import asyncio
import time

import msgspec
import websockets

from .. import logs
from .book import Applied, LocalBook
from .histogram import Histogram
from .messages import DepthUpdate
from .rest import VenueRest

log = logs.get("marketdata")
_decoder = msgspec.json.Decoder(DepthUpdate, strict=False)
SNAPSHOT_RETRIES = 5


class MarketData:
    def __init__(self, book: LocalBook, rest: VenueRest, stream_url: str, cadence: str, snapshot_limit: int,
                 on_update, clock=time.monotonic):
        suffix = "@depth@100ms" if cadence == "100ms" else "@depth"
        self.url = f"{stream_url.rstrip('/')}/ws/{book.symbol.lower()}{suffix}"
        self.book = book
        self.rest = rest
        self.snapshot_limit = snapshot_limit
        self.on_update = on_update
        self.clock = clock
        self.connected = False
        self.reconnects = 0
        self.messages = 0
        self.malformed = 0
        self.lag = Histogram()  # venue event time to our receipt, wall clocks (kept by chrony)
        self._snapshot_task: asyncio.Task | None = None

    def handle(self, raw: bytes | str) -> Applied | None:
        try:
            event = _decoder.decode(raw)
        except msgspec.DecodeError:
            self.malformed += 1
            return None
        self.messages += 1
        self.lag.observe(max(0.0, time.time() - event.E / 1000))
        result = self.book.on_event(event, self.clock())
        if result is Applied.APPLIED:
            self.on_update()
        elif result is Applied.GAP:
            log.warning("depth sequence gap, resyncing", update_id=self.book.update_id, first=event.U)
            self._want_snapshot()
        elif result is Applied.BUFFERED:
            self._want_snapshot()
        return result

    def _want_snapshot(self) -> None:
        if self._snapshot_task is None or self._snapshot_task.done():
            self._snapshot_task = asyncio.get_running_loop().create_task(self._sync())

    async def _sync(self) -> None:
        for attempt in range(SNAPSHOT_RETRIES):
            # Let a diff or two buffer first: the snapshot must not predate the stream.
            await asyncio.sleep(0.05 * (attempt + 1))
            if self.book.is_live():
                return
            try:
                snapshot = await self.rest.depth(self.book.symbol, self.snapshot_limit)
            except Exception as exc:  # noqa: BLE001 - any failure: try again, then reconnect
                log.warning("depth snapshot failed", error=str(exc))
                continue
            if self.book.on_snapshot(snapshot, self.clock()):
                log.info("book synced", update_id=self.book.update_id, resyncs=self.book.resyncs)
                self.on_update()
                return
        log.error("book could not be synced; waiting for the stream to buffer afresh")
        self.book.reset()

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 0.1
        while not stop.is_set():
            try:
                async with websockets.connect(self.url, open_timeout=5, ping_interval=20,
                                              max_size=2**22) as ws:
                    self.connected = True
                    backoff = 0.1
                    self.book.reset()
                    async for raw in ws:
                        self.handle(raw)
            except (OSError, websockets.WebSocketException, asyncio.TimeoutError) as exc:
                log.warning("market stream down", error=str(exc), url=self.url)
            finally:
                self.connected = False
            if stop.is_set():
                break
            self.reconnects += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)
