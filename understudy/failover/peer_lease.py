"""The failsafe peer lease (DESIGN §2.4), sans-I/O: `now` is always passed in.

While the primary cannot reach the lock backend but still hears the
standby, the standby's echoes of the primary's heartbeat sequence numbers
are a lease: by echoing sequence `s` the standby promises not to trade until
the primary's permission from `s` has run out. The primary may trade until

    send time of the last echoed heartbeat + silence × (1 − drift) − margin

on its own monotonic clock. Both halves live here:

- `PeerLeaseHolder` (the primary): remembers when it sent each heartbeat and
  turns echoes into a deadline. Only echoes of heartbeats sent during the
  current tenure count, and only from a peer that calls itself standby.
- `PeerLeaseGrants` (the standby): decides what to echo and remembers, on
  its own clock, when every lease it granted has certainly expired
  (`receive time + silence`, the receive time being no earlier than the
  primary's send time). A node that wants the lock stops echoing, and the
  lock it then acquires lets it trade only from that instant on.

A peer that later says it is not primary (a higher sequence from the same
boot, or any sequence from a newer boot) has given its peer lease up, so the
grants are void: that is what keeps a planned switchover fast.
"""
import math
from collections import OrderedDict

HOLDING_ROLES = frozenset({"primary", "halted"})
SENT_REMEMBERED = 128  # heartbeats whose send times the primary keeps: ~13 s at 100 ms


class PeerLeaseHolder:
    def __init__(self, boot: int, silence_s: float, drift: float, margin_s: float):
        self.boot = boot
        self.life_s = silence_s * (1.0 - drift) - margin_s
        self._sent: OrderedDict[int, float] = OrderedDict()
        self._tenure_from_seq: int | None = None
        self.until = -math.inf

    def on_sent(self, seq: int, now: float) -> None:
        self._sent[seq] = now
        while len(self._sent) > SENT_REMEMBERED:
            self._sent.popitem(last=False)

    def begin_tenure(self, next_seq: int) -> None:
        """This node became the lock holder; only heartbeats from `next_seq` on earn it a peer lease."""
        self._tenure_from_seq = next_seq
        self.until = -math.inf

    @property
    def in_tenure(self) -> bool:
        return self._tenure_from_seq is not None

    def end_tenure(self) -> None:
        """Whatever the standby echoes from now on, this node may not trade on it."""
        self._tenure_from_seq = None
        self.until = -math.inf

    def on_heartbeat(self, peer_role: str, echo_boot: int, echo_seq: int) -> None:
        if self._tenure_from_seq is None or peer_role != "standby" or echo_boot != self.boot:
            return
        if echo_seq < self._tenure_from_seq:
            return
        sent_at = self._sent.get(echo_seq)
        if sent_at is not None:
            self.until = max(self.until, sent_at + self.life_s)

    def time_left(self, now: float) -> float:
        return max(0.0, self.until - now)


class PeerLeaseGrants:
    def __init__(self, silence_s: float):
        self.silence_s = silence_s
        self._highest: tuple[int, int] = (-1, -1)  # (boot, seq) of the newest heartbeat heard
        self._pending: tuple[int, int, float] | None = None  # (boot, seq, received at) that may be echoed
        self.expires_at = -math.inf  # every lease this node granted has expired by then
        self.renounced = 0

    def on_heartbeat(self, boot: int, seq: int, role: str, now: float) -> None:
        if (boot, seq) <= self._highest:
            return  # reordered: the newer heartbeat already spoke
        self._highest = (boot, seq)
        if role in HOLDING_ROLES:
            self._pending = (boot, seq, now)
            return
        self._pending = None
        if self.expires_at > now:
            # Sent after the peer stopped holding: it gave up every lease it had from us.
            self.expires_at = -math.inf
            self.renounced += 1

    def echo(self, now: float, granting: bool) -> tuple[int, int]:
        """The (boot, seq) to echo in the heartbeat being sent now; (0, 0) echoes nothing."""
        if not granting or self._pending is None:
            return 0, 0
        boot, seq, received_at = self._pending
        self.expires_at = max(self.expires_at, received_at + self.silence_s)
        return boot, seq

    def wait_left(self, now: float) -> float:
        return max(0.0, self.expires_at - now)
