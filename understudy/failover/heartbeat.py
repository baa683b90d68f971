"""The heartbeat wire protocol, sans-I/O: bytes and `now` in, heartbeats and
bytes out.

A datagram is a msgpack map followed by its HMAC-SHA256 (32 bytes) under the
pair's shared key. The map is versioned and evolvable: new fields get
defaults, and a receiver ignores fields it does not know, so a rolling
upgrade can run two versions side by side. Sequences are per boot (the
sender's start time), so a restarted peer starts afresh while a replay of an
older boot's datagram is refused.

Forged, malformed, replayed, stale or self-sent datagrams are dropped and
counted by reason — never raised. A datagram that arrives after a newer one
(reordered within the replay window) is accepted but marked late: its echo
still counts, but it says nothing about the peer's *current* state.
"""
import hashlib
import hmac
from collections import Counter

import msgspec

PROTOCOL_VERSION = 1
MAC_BYTES = 32
REPLAY_WINDOW = 64
MAX_DATAGRAM = 1024


class Readiness(msgspec.Struct, frozen=True, kw_only=True):
    market_data: bool = False
    account: bool = False
    risk: bool = False
    venue: bool = True  # its REST path and clock (an older sender does not say, and counts as ready)

    @property
    def all(self) -> bool:
        return self.market_data and self.account and self.risk and self.venue


class Heartbeat(msgspec.Struct, frozen=True, kw_only=True):
    v: int = PROTOCOL_VERSION
    node: str
    boot: int  # the sender's boot id: its start time in ms
    seq: int
    sent_ms: int  # the sender's wall clock: receivers refuse datagrams too old to mean anything
    role: str
    epoch: int | None = None
    lease_left_ms: int = 0
    ready: Readiness = Readiness()
    echo_boot: int = 0  # a standby's echo of the primary's (boot, seq): the peer lease (peer_lease.py)
    echo_seq: int = 0
    handover_to: str | None = None  # set while the sender hands the lock to this node
    paused: bool = False
    nofailover: bool = False  # the sender never takes the lock: do not hand it over to it


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Heartbeat)


def _mac(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, payload, hashlib.sha256).digest()


def encode(heartbeat: Heartbeat, key: bytes) -> bytes:
    payload = _encoder.encode(heartbeat)
    return payload + _mac(key, payload)


class _ReplayWindow:
    """Accepts each (boot, seq) once, tolerating reordering within the window."""

    def __init__(self):
        self.boot = -1
        self.highest = 0
        self.seen = 0  # bit i set: seq (highest - i) was accepted

    def admit(self, boot: int, seq: int) -> str | None:
        """"newest", "late" (accepted, but a newer one came first), or None (refused)."""
        if boot < self.boot:
            return None
        if boot > self.boot:
            self.boot, self.highest, self.seen = boot, seq, 1
            return "newest"
        if seq > self.highest:
            shift = seq - self.highest
            self.seen = ((self.seen << shift) | 1) & ((1 << REPLAY_WINDOW) - 1) if shift < REPLAY_WINDOW else 1
            self.highest = seq
            return "newest"
        offset = self.highest - seq
        if offset >= REPLAY_WINDOW or self.seen & (1 << offset):
            return None
        self.seen |= 1 << offset
        return "late"


class HeartbeatReceiver:
    def __init__(self, own_node: str, peer_node: str, key: bytes, max_age_ms: int = 2000):
        self.own_node = own_node
        self.peer_node = peer_node
        self.key = key
        self.max_age_ms = max_age_ms
        self.rejected: Counter = Counter()
        self.accepted = 0
        self.late = 0  # accepted out of order: their echo counts, their state does not
        self.last_was_late = False
        self._window = _ReplayWindow()

    def receive(self, datagram: bytes, now_ms: int) -> Heartbeat | None:
        """The heartbeat, or None with the reason counted in `rejected`."""
        if len(datagram) <= MAC_BYTES or len(datagram) > MAX_DATAGRAM:
            return self._reject("malformed")
        payload, mac = datagram[:-MAC_BYTES], datagram[-MAC_BYTES:]
        if not hmac.compare_digest(mac, _mac(self.key, payload)):
            return self._reject("bad-mac")
        try:
            beat = _decoder.decode(payload)
        except msgspec.DecodeError:
            return self._reject("malformed")
        if beat.v < PROTOCOL_VERSION:
            return self._reject("version")
        if beat.node == self.own_node:
            return self._reject("own")
        if beat.node != self.peer_node:
            return self._reject("unknown-peer")
        if abs(now_ms - beat.sent_ms) > self.max_age_ms:
            return self._reject("stale")
        admitted = self._window.admit(beat.boot, beat.seq)
        if admitted is None:
            return self._reject("replayed")
        self.accepted += 1
        self.last_was_late = admitted == "late"
        self.late += self.last_was_late
        return beat

    def _reject(self, reason: str) -> None:
        self.rejected[reason] += 1
        return None


class HeartbeatSender:
    def __init__(self, node: str, key: bytes, boot: int):
        self.node = node
        self.key = key
        self.boot = boot
        self.seq = 0

    def next(self, now_ms: int, **fields) -> bytes:
        self.seq += 1
        return encode(Heartbeat(node=self.node, boot=self.boot, seq=self.seq, sent_ms=now_ms, **fields), self.key)
