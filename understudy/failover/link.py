"""The heartbeat link: the sans-I/O protocol (`heartbeat.py`) on a UDP socket."""
import asyncio
import time
from typing import Callable

from .. import logs
from .heartbeat import Heartbeat, HeartbeatReceiver, HeartbeatSender

log = logs.get("heartbeat")


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes], None]):
        self.on_datagram = on_datagram

    def datagram_received(self, data: bytes, addr) -> None:
        self.on_datagram(data)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable while the peer is down: expected, not fatal.
        log.debug("heartbeat socket error", error=str(exc))


class HeartbeatLink:
    def __init__(self, sender: HeartbeatSender, receiver: HeartbeatReceiver, bind: tuple[str, int],
                 peer: tuple[str, int], interval_s: float, fields: Callable[[], dict],
                 on_heartbeat: Callable[[Heartbeat, bool], None], on_sent: Callable[[int], None] = lambda seq: None):
        self.sender = sender
        self.receiver = receiver
        self.bind = bind
        self.peer = peer
        self.interval_s = interval_s
        self.fields = fields
        self.on_heartbeat = on_heartbeat
        self.on_sent = on_sent
        self.last_peer: Heartbeat | None = None
        self.sent = 0
        self.send_errors = 0
        self._transport: asyncio.DatagramTransport | None = None

    def _received(self, data: bytes) -> None:
        beat = self.receiver.receive(data, time.time_ns() // 1_000_000)
        if beat is not None:
            late = self.receiver.last_was_late
            if not late:  # the peer's state only moves forward
                self.last_peer = beat
            self.on_heartbeat(beat, late)

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self._received),
                                                                 local_addr=self.bind)
        log.info("heartbeat link up", bind=f"{self.bind[0]}:{self.bind[1]}", peer=f"{self.peer[0]}:{self.peer[1]}")
        next_at = loop.time()
        try:
            while not stop.is_set():
                self.send_now()
                next_at += self.interval_s
                await asyncio.sleep(max(0.0, next_at - loop.time()))
        finally:
            self._transport.close()

    def send_now(self) -> None:
        """Also called on a role change, so the peer learns of it at once."""
        if self._transport is None:
            return
        datagram = self.sender.next(time.time_ns() // 1_000_000, **self.fields())
        self.on_sent(self.sender.seq)
        try:
            self._transport.sendto(datagram, self.peer)
            self.sent += 1
        except OSError:
            self.send_errors += 1
