"""The depth stream and the REST snapshots that keep the local book in sync.

**Server shutdown.** Binance announces a market-stream server going away
with a `serverShutdown` event ("Please establish a new connection as soon as
possible to prevent interruption"). The node then opens a second connection
while the first still feeds the book, and hands over once the new stream
is contiguous with the book: its first event covers the update after the
book's last (`U <= update_id + 1`). Until then the new stream's events are
held; at the hand-over they are applied (what the book already has is
ignored, as diff events carry absolute quantities) and the old connection
is closed. The diff-depth sequence is the venue's, whichever connection
carries it, so nothing is lost and no snapshot is needed. Only when the old
connection closes before the new one is contiguous can a hole appear; the
book's own sequence check then resyncs, as after any gap.
"""
import asyncio
import time

import msgspec
import websockets

from .. import logs
from .book import BUFFER_LIMIT, Applied, LocalBook
from .decode_ledger import DecodeLedger
from .histogram import Histogram
from .messages import CombinedStreamMessage, DepthUpdate, StreamEvent
from .rest import VenueRest
from .ws_connection import CLOSED, WsConnection

log = logs.get("marketdata")
_decoder = msgspec.json.Decoder(DepthUpdate, strict=False)  # the hot path: one decode per depth event
_event_decoder = msgspec.json.Decoder(StreamEvent, strict=False)
_combined_decoder = msgspec.json.Decoder(CombinedStreamMessage)
SNAPSHOT_RETRIES = 5
SUCCESSOR_CONNECT_S = 5.0
SUCCESSOR_EVENTS_KEPT = BUFFER_LIMIT  # held from the new connection until it is contiguous
SERVER_SHUTDOWN = "serverShutdown"


class _Connection(WsConnection):
    """One websocket, read by a task of its own into the stream's queue."""
    what = "market stream"

    def __init__(self, number: int, ws):
        super().__init__(number, ws)
        self.held: list[DepthUpdate] = []  # a successor's events, until the hand-over
        self.overflowed = False


class MarketData:
    def __init__(self, book: LocalBook, rest: VenueRest, stream_url: str, cadence: str, snapshot_limit: int,
                 on_update, clock=time.monotonic, *, ledger: DecodeLedger | None = None):
        suffix = "@depth@100ms" if cadence == "100ms" else "@depth"
        self.url = f"{stream_url.rstrip('/')}/ws/{book.symbol.lower()}{suffix}"
        self.book = book
        self.rest = rest
        self.snapshot_limit = snapshot_limit
        self.on_update = on_update
        self.clock = clock
        self.ledger = ledger or DecodeLedger()
        self.connected = False
        self.reconnects = 0  # cold reconnects: the book resyncs from a snapshot after each
        self.handovers = 0  # early reconnects after serverShutdown, the book kept
        self.shutdown_notices = 0
        self.messages = 0
        self.malformed = 0
        self.lag = Histogram()  # venue event time to our receipt, wall clocks (kept by chrony)
        self._snapshot_task: asyncio.Task | None = None
        self._connections = 0
        self._last_seen_u = 0  # the last update id the feeding connection delivered, applied or buffered

    # -- decoding ----------------------------------------------------------------------
    def _decode(self, raw: bytes | str) -> DepthUpdate | str | None:
        """A depth event, or the type of another event, or None (counted) when unreadable."""
        try:
            return _decoder.decode(raw)
        except msgspec.DecodeError:
            pass
        try:
            kind = _event_decoder.decode(raw).e
        except msgspec.DecodeError as exc:
            try:  # a combined-stream wrapper around one of the above
                inner = _combined_decoder.decode(raw).data
            except msgspec.DecodeError:
                self.malformed += 1
                self.ledger.on_undecodable("market-stream", "depthUpdate", exc, raw)
                return None
            return self._decode(inner)
        if kind == "depthUpdate":
            self.malformed += 1
            self.ledger.on_undecodable("market-stream", "depthUpdate", ValueError("not a diff-depth event"), raw)
            return None
        if kind != SERVER_SHUTDOWN:
            self.ledger.on_unknown_event("market-stream", kind, raw)
        return kind

    def handle(self, raw: bytes | str) -> Applied | None:
        """One message of the connection that feeds the book."""
        event = self._decode(raw)
        if event is None or isinstance(event, str):
            return None
        return self._apply(event)

    def _apply(self, event: DepthUpdate) -> Applied:
        self.messages += 1
        self._last_seen_u = max(self._last_seen_u, event.u)
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

    # -- snapshots ---------------------------------------------------------------------
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

    # -- connections -------------------------------------------------------------------
    async def _connect(self) -> _Connection:
        ws = await websockets.connect(self.url, open_timeout=5, ping_interval=20, max_size=2**22)
        self._connections += 1
        return _Connection(self._connections, ws)

    async def _open_successor(self, queue: asyncio.Queue) -> None:
        try:
            conn = await asyncio.wait_for(self._connect(), SUCCESSOR_CONNECT_S)
        except (OSError, websockets.WebSocketException, asyncio.TimeoutError) as exc:
            log.warning("could not open the successor market stream", error=str(exc))
            await queue.put((None, exc))
            return
        await queue.put((None, conn))

    def _contiguous(self, successor: _Connection) -> bool:
        """The successor may take over: its first held event continues, without a hole, what
        the feeding connection delivered (applied to the book, or buffered while it syncs)."""
        return bool(successor.held) and successor.held[0].U <= self._last_seen_u + 1

    def _hand_over(self, successor: _Connection) -> None:
        held, successor.held = successor.held, []
        for event in held:
            self._apply(event)
        self.handovers += 1
        log.info("market stream handed over to a new connection", connection=successor.number,
                 update_id=self.book.update_id, held_events=len(held), resyncs=self.book.resyncs)

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 0.1
        while not stop.is_set():
            try:
                current = await self._connect()
            except (OSError, websockets.WebSocketException, asyncio.TimeoutError) as exc:
                log.warning("market stream down", error=str(exc), url=self.url)
            else:
                self.connected = True
                backoff = 0.1
                self.book.reset()
                self._last_seen_u = 0
                try:
                    await self._serve(current)
                finally:
                    self.connected = False
            if stop.is_set():
                break
            self.reconnects += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def _serve(self, current: _Connection) -> None:
        """Feeds the book from `current` and, after a serverShutdown, from its successor;
        returns when no connection is left to feed it."""
        queue: asyncio.Queue = asyncio.Queue(maxsize=10_000)
        current.start(queue)
        successor: _Connection | None = None
        opening: asyncio.Task | None = None
        retired: list[_Connection] = []  # handed over, their readers still draining
        try:
            while True:
                conn, item = await queue.get()
                if conn is None:  # the successor's connection attempt ended
                    opening = None
                    if isinstance(item, _Connection):
                        successor = item
                        successor.start(queue)
                        if current is None:  # the old one is gone already: take over at once
                            current, successor = successor, None
                            self._hand_over(current)
                    elif current is None:
                        return  # no successor, and nothing left to read: a cold reconnect
                    continue
                if item is CLOSED:
                    if conn is current:
                        current = None
                        if successor is not None:
                            current, successor = successor, None
                            self._hand_over(current)
                        elif opening is None:
                            return
                    elif conn is successor:
                        log.warning("the successor market stream closed before taking over")
                        successor = None
                    elif conn in retired:
                        retired.remove(conn)
                    continue
                if conn is current:
                    event = self._decode(item)
                    if isinstance(event, DepthUpdate):
                        self._apply(event)
                    elif event == SERVER_SHUTDOWN:
                        self.shutdown_notices += 1
                        if successor is None and opening is None:
                            log.warning("serverShutdown on the market stream: opening a new connection",
                                        connection=current.number)
                            opening = asyncio.get_running_loop().create_task(self._open_successor(queue))
                elif conn is successor:
                    event = self._decode(item)
                    if isinstance(event, DepthUpdate):
                        if len(successor.held) >= SUCCESSOR_EVENTS_KEPT:
                            successor.overflowed = True  # the old stream lags too far: take over, resync
                        else:
                            successor.held.append(event)
                    elif event == SERVER_SHUTDOWN:
                        self.shutdown_notices += 1
                else:
                    continue  # a retired connection's last messages: its successor carries them too
                if successor is not None and current is not None and (self._contiguous(successor)
                                                                      or successor.overflowed):
                    old, current, successor = current, successor, None
                    retired.append(old)
                    self._hand_over(current)
                    asyncio.get_running_loop().create_task(old.close())
        finally:
            for conn in [current, successor, *retired]:
                if conn is not None:
                    if conn.reader is not None:
                        conn.reader.cancel()
                    await conn.close()
            if opening is not None:
                opening.cancel()
