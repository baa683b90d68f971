"""The role state machine: a pure function of (state, event) to (new state,
actions), in the manner of etcd's raft. No I/O, no clock of its own: every
event carries `now` (monotonic seconds). Every transition carries a reason a
person can read; the tests assert on them.

Roles:
  starting  -> standby            on start: a node never trades before holding the lock
  standby   -> candidate          the peer has been silent for `silence_s`, or it is not
                                  holding the lock either (a cold start), or it hands the lock
                                  to us; never while paused, never with nofailover
  candidate -> standby            the peer speaks again as primary, or the cluster is paused
  candidate -> primary            lock acquired: protective cancel, reconcile, then quote
  primary   -> halted             lock held but not healthy: orders cancelled, no quotes
  halted    -> primary            healthy again
  primary/halted -> fenced        lease lost: stop quoting at once, cancel own-epoch orders
  primary   -> handing-over       switchover: stop quoting, cancel own orders, release to target
  primary/halted -> handing-over  holding the lock without being able to trade (halted, or stuck
                                  in the takeover steps) for `handover_after_s` while the peer is
                                  a ready standby: the lock goes to it. Never after a PanicStop
                                  (the peer would undo it), never while paused.
  standby   -> candidate          also: the peer has been fenced without a lease for
                                  `handover_after_s` (it cannot trade and holds nothing)
  fenced/handing-over -> standby  own orders confirmed cancelled (non-preemptive rejoin); a
                                  hand-over of a node that cannot reach the venue goes on
                                  unconfirmed once no send of its can still land
"""
from dataclasses import dataclass, replace
from enum import Enum


class Role(Enum):
    STARTING = "starting"
    STANDBY = "standby"
    CANDIDATE = "candidate"
    PRIMARY = "primary"
    HALTED = "halted"
    FENCED = "fenced"
    HANDING_OVER = "handing-over"


class Phase(Enum):
    """Where a primary is in its takeover."""

    PROTECTIVE_CANCEL = "protective-cancel"
    RECONCILE = "reconcile"
    QUOTING = "quoting"


# -- events ----------------------------------------------------------------------
@dataclass(frozen=True)
class Started:
    now: float


@dataclass(frozen=True)
class Tick:
    now: float


@dataclass(frozen=True)
class PeerHeard:
    now: float
    role: str
    epoch: int | None
    ready: bool
    handover_to: str | None = None
    nofailover: bool = False


@dataclass(frozen=True)
class LeaseAcquired:
    now: float
    epoch: int


@dataclass(frozen=True)
class LeaseLost:
    now: float
    reason: str


@dataclass(frozen=True)
class HealthChanged:
    now: float
    healthy: bool
    detail: str = ""
    panicked: bool = False  # a PanicStop is latched: the lock stays put, nobody else may quote


@dataclass(frozen=True)
class PauseChanged:
    now: float
    paused: bool


@dataclass(frozen=True)
class ProtectiveCancelDone:
    now: float


@dataclass(frozen=True)
class Reconciled:
    now: float


@dataclass(frozen=True)
class OwnOrdersCancelled:
    now: float


@dataclass(frozen=True)
class SwitchoverRequested:
    now: float
    target: str


# -- actions ---------------------------------------------------------------------
@dataclass(frozen=True)
class StartAcquiring:
    pass


@dataclass(frozen=True)
class StopAcquiring:
    pass


@dataclass(frozen=True)
class ProtectiveCancel:
    """Cancel every open order on the traded symbols: only a fresh lease holder does this."""


@dataclass(frozen=True)
class Reconcile:
    pass


@dataclass(frozen=True)
class StartQuoting:
    epoch: int


@dataclass(frozen=True)
class StopQuoting:
    pass


@dataclass(frozen=True)
class CancelOwnOrders:
    """By client id, this epoch's only: never a symbol-wide cancel. Without
    `confirm` (a hand-over by a node that cannot reach the venue) it is
    done once no send of this node can still land, confirmed or not: the
    successor's protective cancel takes whatever rests."""

    epoch: int | None
    confirm: bool = True


@dataclass(frozen=True)
class ReleaseLock:
    target: str | None


@dataclass(frozen=True)
class Refused:
    """An operator's request that cannot be carried out now, and why."""

    reason: str


@dataclass(frozen=True)
class Transition:
    """Logged, recorded in the history when the lock changes, and exported."""

    previous: str
    role: str
    reason: str


@dataclass(frozen=True)
class Settings:
    node: str
    peer: str
    silence_s: float = 1.0
    nofailover: bool = False
    handover_after_s: float = 2.0


@dataclass(frozen=True)
class State:
    role: Role = Role.STARTING
    reason: str = "not started"
    since: float = 0.0
    started_at: float | None = None
    peer_heard_at: float | None = None
    peer_role: str | None = None
    peer_epoch: int | None = None
    peer_ready: bool = False
    peer_nofailover: bool = False
    peer_unable_since: float | None = None  # the peer has been fenced without a lease since then
    epoch: int | None = None  # of the lease this node holds, while it holds one
    phase: Phase | None = None
    healthy: bool = False
    panicked: bool = False
    paused: bool = False
    switchover_to: str | None = None

    def silent_for(self, now: float) -> float:
        last = self.peer_heard_at if self.peer_heard_at is not None else self.started_at
        return now - last if last is not None else 0.0

    def unable_to_trade_for(self, now: float) -> float:
        """How long this lock holder has held the lock without quoting: halted,
        or still in the takeover steps (which take ~0.1 s when all is well)."""
        if self.role is Role.HALTED or (self.role is Role.PRIMARY and self.phase is not Phase.QUOTING):
            return now - self.since
        return 0.0


_NOT_HOLDING = (Role.STARTING.value, Role.STANDBY.value, Role.CANDIDATE.value)


def _move(state: State, role: Role, now: float, reason: str, actions: list, **changes) -> tuple[State, list]:
    new = replace(state, role=role, since=now, reason=reason, **changes)
    return new, [*actions, Transition(state.role.value, role.value, reason)]


def _hand_over_if_unable(settings: Settings, state: State, now: float) -> tuple[State, list]:
    """A lock must not stay with a node that cannot trade while its peer can
    (DESIGN §2.3). Bounded by `handover_after_s`, and only to a peer that is
    ready: a venue-wide outage leaves both unready, so the lock stays put."""
    unable_s = state.unable_to_trade_for(now)
    if (unable_s < settings.handover_after_s or state.paused or state.panicked
            or state.peer_role != Role.STANDBY.value or not state.peer_ready or state.peer_nofailover
            or state.silent_for(now) >= settings.silence_s):
        return state, []
    why = state.reason if state.role is Role.HALTED else f"takeover stuck in {state.phase.value}"
    return _move(state, Role.HANDING_OVER, now,
                 f"cannot trade for {unable_s:.3f} s ({why}) while {settings.peer} is ready: handing the lock over",
                 [StopQuoting(), CancelOwnOrders(state.epoch, confirm=False)], switchover_to=settings.peer, phase=None)


def step(settings: Settings, state: State, event) -> tuple[State, list]:
    """The whole protocol. Returns the new state and the actions to carry out, in order."""
    role = state.role
    now = event.now

    if isinstance(event, PeerHeard):
        unable = event.role == Role.FENCED.value and event.epoch is None
        state = replace(state, peer_heard_at=now, peer_role=event.role, peer_epoch=event.epoch,
                        peer_ready=event.ready, peer_nofailover=event.nofailover,
                        peer_unable_since=(state.peer_unable_since if state.peer_unable_since is not None
                                           else now) if unable else None)
        if role is Role.CANDIDATE and event.role in (Role.PRIMARY.value, Role.HALTED.value):
            return _move(state, Role.STANDBY, now, f"peer {settings.peer} speaks again as {event.role}",
                         [StopAcquiring()])
        if (role is Role.STANDBY and event.handover_to == settings.node and not settings.nofailover
                and event.role not in (Role.PRIMARY.value, Role.HALTED.value)):  # a stale marker of a holder
            return _move(state, Role.CANDIDATE, now, f"peer {settings.peer} hands the lock over to us",
                         [StartAcquiring()])
        return state, []

    if isinstance(event, Started):
        if role is not Role.STARTING:
            return state, []
        return _move(replace(state, started_at=now), Role.STANDBY, now,
                     "started: joining as standby (never trade before holding the lock)", [])

    if isinstance(event, PauseChanged):
        state = replace(state, paused=event.paused)
        if event.paused and role is Role.CANDIDATE:
            return _move(state, Role.STANDBY, now, "cluster paused: no automatic failover", [StopAcquiring()])
        return state, []

    if isinstance(event, HealthChanged):
        state = replace(state, healthy=event.healthy, panicked=event.panicked)
        if role is Role.PRIMARY and state.phase is Phase.QUOTING and not event.healthy:
            return _move(state, Role.HALTED, now, f"not healthy enough to trade: {event.detail}",
                         [StopQuoting()])
        if role is Role.HALTED and event.healthy and state.epoch is not None:
            return _move(state, Role.PRIMARY, now, "healthy again: quoting", [StartQuoting(state.epoch)],
                         phase=Phase.QUOTING)
        return state, []

    if isinstance(event, Tick):
        if role in (Role.PRIMARY, Role.HALTED):
            return _hand_over_if_unable(settings, state, now)
        if role is not Role.STANDBY or state.paused or settings.nofailover:
            return state, []
        silent = state.silent_for(now)
        if silent >= settings.silence_s:
            heard = "never heard" if state.peer_heard_at is None else f"silent for {silent:.3f} s"
            return _move(state, Role.CANDIDATE, now, f"peer {settings.peer} {heard}: seizing the lock",
                         [StartAcquiring()])
        if state.peer_role in _NOT_HOLDING and state.healthy:
            # Nobody trades (a cold start, or both rejoined): the lock decides who will.
            return _move(state, Role.CANDIDATE, now, f"no primary (peer {settings.peer} is {state.peer_role}): "
                         "contending for the lock", [StartAcquiring()])
        if (state.peer_unable_since is not None and state.healthy
                and now - state.peer_unable_since >= settings.handover_after_s):
            return _move(state, Role.CANDIDATE, now, f"peer {settings.peer} fenced without a lease for "
                         f"{now - state.peer_unable_since:.3f} s: contending for the lock", [StartAcquiring()])
        return state, []

    if isinstance(event, LeaseAcquired):
        if role is not Role.CANDIDATE:
            # Acquired after giving up (the peer spoke again): hand it straight back.
            return state, [ReleaseLock(None)]
        return _move(state, Role.PRIMARY, now, f"lock acquired at epoch {event.epoch}: protective cancel",
                     [StopAcquiring(), ProtectiveCancel()], epoch=event.epoch, phase=Phase.PROTECTIVE_CANCEL)

    if isinstance(event, ProtectiveCancelDone):
        if role is Role.PRIMARY and state.phase is Phase.PROTECTIVE_CANCEL:
            return replace(state, phase=Phase.RECONCILE), [Reconcile()]
        return state, []

    if isinstance(event, Reconciled):
        if role is Role.PRIMARY and state.phase is Phase.RECONCILE:
            if state.healthy:
                return _move(state, Role.PRIMARY, now, "reconciled and healthy: quoting",
                             [StartQuoting(state.epoch)], phase=Phase.QUOTING)
            return _move(state, Role.HALTED, now, "reconciled but not healthy: holding the lock without quoting",
                         [], phase=Phase.QUOTING)
        return state, []

    if isinstance(event, LeaseLost):
        if role in (Role.PRIMARY, Role.HALTED, Role.HANDING_OVER):
            return _move(state, Role.FENCED, now, f"lease lost ({event.reason}): fenced",
                         [StopQuoting(), CancelOwnOrders(state.epoch)], phase=None)
        return state, []

    if isinstance(event, SwitchoverRequested):
        if role is not Role.PRIMARY or state.phase is not Phase.QUOTING:
            return state, [Refused(f"switchover needs a quoting primary; this node is {role.value}")]
        if event.target != settings.peer:
            return state, [Refused(f"unknown target {event.target!r}; the peer is {settings.peer}")]
        if state.silent_for(now) >= settings.silence_s:
            return state, [Refused(f"{event.target} has been silent for {state.silent_for(now):.3f} s")]
        if not state.peer_ready:
            return state, [Refused(f"{event.target} is not ready (market data, account or risk)")]
        return _move(state, Role.HANDING_OVER, now, f"switchover to {event.target}: cancelling own orders",
                     [StopQuoting(), CancelOwnOrders(state.epoch)], switchover_to=event.target, phase=None)

    if isinstance(event, OwnOrdersCancelled):
        if role is Role.HANDING_OVER:
            return _move(state, Role.STANDBY, now, f"orders cancelled: lock released to {state.switchover_to}",
                         [ReleaseLock(state.switchover_to)], epoch=None, switchover_to=None,
                         peer_heard_at=now)
        if role is Role.FENCED:
            # Non-preemptive: rejoin as standby; the silence clock starts afresh.
            return _move(state, Role.STANDBY, now, "own orders cancelled: rejoining as standby", [],
                         epoch=None, peer_heard_at=now)
        return state, []

    raise TypeError(f"unknown event {event!r}")
