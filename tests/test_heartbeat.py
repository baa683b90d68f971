"""The heartbeat protocol without I/O: what is accepted, what is dropped and
counted by reason, and that the format can evolve."""
import hashlib
import hmac

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from understudy.failover.heartbeat import MAC_BYTES, Heartbeat, HeartbeatReceiver, HeartbeatSender, encode

KEY = b"k" * 32


def pair(max_age_ms=2000):
    return HeartbeatSender("sg-1", KEY, boot=1000), HeartbeatReceiver("sg-2", "sg-1", KEY, max_age_ms)


def test_a_valid_heartbeat_is_accepted_once():
    sender, receiver = pair()
    datagram = sender.next(5000, role="primary", epoch=12, lease_left_ms=900)
    beat = receiver.receive(datagram, 5010)
    assert (beat.node, beat.seq, beat.role, beat.epoch, beat.lease_left_ms) == ("sg-1", 1, "primary", 12, 900)
    assert receiver.receive(datagram, 5020) is None
    assert receiver.rejected == {"replayed": 1} and receiver.accepted == 1


def test_forged_malformed_stale_and_foreign_datagrams_are_counted():
    sender, receiver = pair()
    good = sender.next(5000, role="primary")
    assert receiver.receive(good[:-1] + bytes([good[-1] ^ 1]), 5000) is None  # tampered MAC
    forged = HeartbeatSender("sg-1", b"x" * 32, boot=1000).next(5000, role="primary")
    assert receiver.receive(forged, 5000) is None  # wrong key
    assert receiver.receive(b"\x00" * 10, 5000) is None
    junk = b"not msgpack at all"
    assert receiver.receive(junk + hmac.new(KEY, junk, hashlib.sha256).digest(), 5000) is None
    assert receiver.receive(sender.next(1000, role="primary"), 5000) is None  # 4 s old
    own = HeartbeatSender("sg-2", KEY, boot=1).next(5000, role="standby")
    assert receiver.receive(own, 5000) is None  # our own datagram reflected back
    stranger = HeartbeatSender("sg-9", KEY, boot=1).next(5000, role="standby")
    assert receiver.receive(stranger, 5000) is None
    assert receiver.rejected == {"bad-mac": 2, "malformed": 2, "stale": 1, "own": 1, "unknown-peer": 1}
    assert receiver.receive(good, 5000) is not None  # none of that disturbed the real peer


def test_reordering_within_the_window_is_tolerated_and_old_boots_are_refused():
    sender, receiver = pair()
    datagrams = [sender.next(5000 + i, role="primary") for i in range(5)]
    for i in (0, 3, 1, 4, 2):
        assert receiver.receive(datagrams[i], 5010) is not None
    assert receiver.receive(datagrams[2], 5010) is None
    restarted = HeartbeatSender("sg-1", KEY, boot=2000)  # the peer restarted: sequences start over
    assert receiver.receive(restarted.next(5020, role="standby"), 5020).seq == 1
    assert receiver.receive(datagrams[4], 5020) is None  # a replay from the old boot
    assert receiver.rejected == {"replayed": 2}


@given(st.permutations(list(range(1, 40))))
def test_any_order_accepts_each_sequence_exactly_once(order):
    sender, receiver = pair()
    datagrams = [sender.next(5000, role="standby") for _ in range(39)]
    accepted = [receiver.receive(datagrams[i - 1], 5000) for i in order + order[:5]]
    seqs = [b.seq for b in accepted if b is not None]
    assert len(seqs) == len(set(seqs))
    assert all(b is None for b in accepted[len(order):])


def test_newer_fields_are_ignored_and_absent_ones_defaulted():
    """A rolling upgrade: a newer sender adds fields, an older one lacks some."""

    class NewerHeartbeat(Heartbeat, frozen=True, kw_only=True):
        cpu_load: float = 0.0

    newer = encode(NewerHeartbeat(node="sg-1", boot=1, seq=1, sent_ms=5000, role="standby", cpu_load=0.4), KEY)
    _, receiver = pair()
    assert receiver.receive(newer, 5000).role == "standby"

    minimal = msgspec.msgpack.encode({"v": 1, "node": "sg-1", "boot": 1, "seq": 2, "sent_ms": 5000, "role": "primary"})
    beat = receiver.receive(minimal + hmac.new(KEY, minimal, hashlib.sha256).digest(), 5000)
    assert beat.epoch is None and beat.ready.all is False and len(minimal) > MAC_BYTES
