"""The role state machine, without I/O: scripted paths with their reasons,
and a hypothesis stateful test of the invariants over arbitrary event orders."""
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from understudy.failover import roles as r

S = r.Settings(node="sg-2", peer="sg-1", silence_s=1.0)


def run(events, settings=S, state=None):
    state = state or r.State()
    out = []
    for event in events:
        state, actions = r.step(settings, state, event)
        out += actions
    return state, out


def reasons(actions):
    return [a.reason for a in actions if isinstance(a, r.Transition)]


def test_silent_primary_is_replaced_through_every_takeover_step():
    state, actions = run([r.Started(0.0), r.PeerHeard(0.1, "primary", 7, True), r.Tick(1.0), r.Tick(1.2)])
    assert state.role is r.Role.CANDIDATE
    assert reasons(actions) == ["started: joining as standby (never trade before holding the lock)",
                                "peer sg-1 silent for 1.100 s: seizing the lock"]
    assert isinstance(actions[-2], r.StartAcquiring)

    state, actions = run([r.HealthChanged(1.3, True), r.LeaseAcquired(1.4, 8)], state=state)
    assert (state.role, state.phase, state.epoch) == (r.Role.PRIMARY, r.Phase.PROTECTIVE_CANCEL, 8)
    assert [type(a) for a in actions] == [r.StopAcquiring, r.ProtectiveCancel, r.Transition]
    state, actions = run([r.ProtectiveCancelDone(1.5)], state=state)
    assert actions == [r.Reconcile()]
    state, actions = run([r.Reconciled(1.6)], state=state)
    assert actions[0] == r.StartQuoting(8) and reasons(actions) == ["reconciled and healthy: quoting"]


def test_unhealthy_takeover_holds_the_lock_halted_until_healthy():
    state, _ = run([r.Started(0), r.Tick(1.0), r.LeaseAcquired(1.1, 3), r.ProtectiveCancelDone(1.2),
                    r.Reconciled(1.3)])
    assert state.role is r.Role.HALTED
    state, actions = run([r.HealthChanged(2.0, True)], state=state)
    assert state.role is r.Role.PRIMARY and actions[0] == r.StartQuoting(3)
    state, actions = run([r.HealthChanged(3.0, False, "book stale")], state=state)
    assert state.role is r.Role.HALTED and reasons(actions) == ["not healthy enough to trade: book stale"]


def test_peer_speaking_again_stops_the_candidate():
    state, actions = run([r.Started(0), r.Tick(1.5), r.PeerHeard(1.6, "primary", 4, True)])
    assert state.role is r.Role.STANDBY and isinstance(actions[-2], r.StopAcquiring)
    assert reasons(actions)[-1] == "peer sg-1 speaks again as primary"
    # A lease that arrives after giving up is handed straight back.
    state, actions = run([r.LeaseAcquired(1.7, 5)], state=state)
    assert state.role is r.Role.STANDBY and actions == [r.ReleaseLock(None)]


def test_lost_lease_fences_then_rejoins_as_standby():
    state, _ = run([r.Started(0), r.HealthChanged(0, True), r.Tick(1.0), r.LeaseAcquired(1.1, 9),
                    r.ProtectiveCancelDone(1.2), r.Reconciled(1.3)])
    state, actions = run([r.LeaseLost(5.0, "renewal found the lock owned by someone else")], state=state)
    assert state.role is r.Role.FENCED
    assert actions[:2] == [r.StopQuoting(), r.CancelOwnOrders(9)]
    state, actions = run([r.OwnOrdersCancelled(5.1), r.Tick(5.5)], state=state)
    assert state.role is r.Role.STANDBY and state.epoch is None
    state, _ = run([r.Tick(6.2)], state=state)  # non-preemptive, but the usual silence rule applies
    assert state.role is r.Role.CANDIDATE


def test_pause_and_nofailover_prevent_failover():
    state, _ = run([r.Started(0), r.PauseChanged(0.5, True), r.Tick(5.0)])
    assert state.role is r.Role.STANDBY
    state, actions = run([r.PauseChanged(6.0, False), r.Tick(6.0)], state=state)
    assert state.role is r.Role.CANDIDATE
    state, _ = run([r.Started(0), r.Tick(99.0)], settings=r.Settings("sg-2", "sg-1", nofailover=True))
    assert state.role is r.Role.STANDBY


def test_switchover_hands_the_lock_to_a_ready_peer_only():
    state, _ = run([r.Started(0), r.HealthChanged(0, True), r.Tick(1.0), r.LeaseAcquired(1.0, 2),
                    r.ProtectiveCancelDone(1.0), r.Reconciled(1.0), r.PeerHeard(2.0, "standby", None, False)])
    state, actions = run([r.SwitchoverRequested(2.1, "sg-1")], state=state)
    assert actions == [r.Refused("sg-1 is not ready (market data, account or risk)")]
    state, actions = run([r.SwitchoverRequested(2.1, "sg-9")], state=state)
    assert actions == [r.Refused("unknown target 'sg-9'; the peer is sg-1")]
    state, actions = run([r.PeerHeard(2.2, "standby", None, True), r.SwitchoverRequested(2.3, "sg-1")], state=state)
    assert state.role is r.Role.HANDING_OVER and actions[:2] == [r.StopQuoting(), r.CancelOwnOrders(2)]
    state, actions = run([r.OwnOrdersCancelled(2.4)], state=state)
    assert state.role is r.Role.STANDBY and actions[0] == r.ReleaseLock("sg-1")


def test_the_named_target_takes_a_handed_over_lock_at_once():
    state, actions = run([r.Started(0), r.PeerHeard(0.5, "standby", 2, True, handover_to="sg-2")])
    assert state.role is r.Role.CANDIDATE and reasons(actions)[-1] == "peer sg-1 hands the lock over to us"


events = st.one_of(
    st.builds(r.Tick, st.just(0)),
    st.builds(r.PeerHeard, st.just(0), st.sampled_from(["standby", "primary", "halted", "candidate"]),
              st.none() | st.integers(1, 5), st.booleans(), st.sampled_from([None, "sg-2"])),
    st.builds(r.LeaseAcquired, st.just(0), st.integers(1, 100)),
    st.builds(r.LeaseLost, st.just(0), st.just("test")),
    st.builds(r.HealthChanged, st.just(0), st.booleans()),
    st.builds(r.PauseChanged, st.just(0), st.booleans()),
    st.builds(r.ProtectiveCancelDone, st.just(0)),
    st.builds(r.Reconciled, st.just(0)),
    st.builds(r.OwnOrdersCancelled, st.just(0)),
    st.builds(r.SwitchoverRequested, st.just(0), st.sampled_from(["sg-1", "sg-3"])),
)


class RoleMachine(RuleBasedStateMachine):
    """Arbitrary events at arbitrary times: the invariants must hold throughout."""

    def __init__(self):
        super().__init__()
        self.state = r.State()
        self.now = 0.0
        self.quoting = False
        self.acquiring = False
        self.state, _ = r.step(S, self.state, r.Started(0.0))

    @rule(event=events, dt=st.floats(0, 2))
    def feed(self, event, dt):
        self.now += dt
        event = type(event)(**{**event.__dict__, "now": self.now})
        before = self.state
        self.state, actions = r.step(S, self.state, event)
        for action in actions:
            if isinstance(action, r.StartQuoting):
                assert self.state.role is r.Role.PRIMARY and action.epoch == self.state.epoch is not None
                assert before.role in (r.Role.PRIMARY, r.Role.HALTED)
                self.quoting = True
            elif isinstance(action, r.StopQuoting):
                self.quoting = False
            elif isinstance(action, r.StartAcquiring):
                assert not self.state.paused or isinstance(event, r.PeerHeard)
                self.acquiring = True
            elif isinstance(action, r.StopAcquiring):
                self.acquiring = False
            elif isinstance(action, r.Transition):
                assert action.reason and action.role == self.state.role.value
        if isinstance(event, r.LeaseLost) and before.role in (r.Role.PRIMARY, r.Role.HALTED):
            assert r.StopQuoting() in actions and self.state.role is r.Role.FENCED

    @invariant()
    def only_a_lock_holder_quotes(self):
        if self.quoting:
            assert self.state.role is r.Role.PRIMARY and self.state.epoch is not None
            assert self.state.phase is r.Phase.QUOTING

    @invariant()
    def a_standby_holds_no_epoch(self):
        if self.state.role in (r.Role.STANDBY, r.Role.CANDIDATE):
            assert self.state.epoch is None


RoleMachine.TestCase.settings = hsettings(max_examples=300, stateful_step_count=40, deadline=None)
test_role_machine = RoleMachine.TestCase


# -- a lock held by a node that cannot trade is handed on --------------------------
H = r.Settings(node="sg-1", peer="sg-2", silence_s=1.0, handover_after_s=2.0)


def _halted_primary(at: float = 10.0):
    """sg-1 holds epoch 9, quoting, then goes halted at `at` (its venue path went down); sg-2 is a ready standby."""
    state, _ = run([r.Started(0), r.HealthChanged(0.1, True), r.PeerHeard(0.2, "standby", None, True),
                    r.Tick(0.3), r.LeaseAcquired(0.4, 9), r.ProtectiveCancelDone(0.5), r.Reconciled(0.6)],
                   settings=H)
    assert state.role is r.Role.PRIMARY
    state, _ = run([r.HealthChanged(at, False, "venue (venue-unreachable)")], settings=H, state=state)
    assert state.role is r.Role.HALTED
    return state


def _beats(state, start: float, end: float, role="standby", ready=True, **kw):
    t, events = start, []
    while t <= end:
        events += [r.PeerHeard(t, role, kw.get("epoch"), ready, nofailover=kw.get("nofailover", False)), r.Tick(t)]
        t = round(t + 0.1, 3)
    return run(events, settings=H, state=state)


def test_a_halted_primary_hands_the_lock_to_a_ready_standby_after_the_bound():
    state = _halted_primary(10.0)
    state, actions = _beats(state, 10.1, 11.9)
    assert state.role is r.Role.HALTED and not actions  # within the bound: it may recover by itself
    state, actions = _beats(state, 12.0, 12.0)
    assert state.role is r.Role.HANDING_OVER and state.switchover_to == "sg-2"
    assert r.CancelOwnOrders(9, confirm=False) in actions and r.StopQuoting() in actions
    assert reasons(actions) == ["cannot trade for 2.000 s (not healthy enough to trade: venue (venue-unreachable)) "
                                "while sg-2 is ready: handing the lock over"]
    state, actions = run([r.OwnOrdersCancelled(12.5)], settings=H, state=state)
    assert state.role is r.Role.STANDBY and actions[0] == r.ReleaseLock("sg-2")


def test_a_takeover_stuck_in_its_steps_is_handed_on_too():
    state, _ = run([r.Started(0), r.HealthChanged(0.1, True), r.PeerHeard(0.2, "standby", None, True),
                    r.Tick(0.3), r.LeaseAcquired(0.4, 9)], settings=H)
    assert (state.role, state.phase) == (r.Role.PRIMARY, r.Phase.PROTECTIVE_CANCEL)
    state, actions = _beats(state, 0.5, 2.5)
    assert state.role is r.Role.HANDING_OVER
    assert "takeover stuck in protective-cancel" in reasons(actions)[0]


def test_no_hand_over_to_a_peer_that_cannot_take_it_or_after_a_panic_stop():
    for kwargs in ({"ready": False}, {"role": "candidate"}, {"nofailover": True}):
        state, actions = _beats(_halted_primary(10.0), 10.1, 15.0, **kwargs)
        assert state.role is r.Role.HALTED and not reasons(actions), kwargs
    # A silent peer: nobody to hand to.
    state, actions = run([r.Tick(13.0), r.Tick(14.0)], settings=H, state=_halted_primary(10.0))
    assert state.role is r.Role.HALTED
    # Paused: no automatic moves of the lock.
    paused, _ = run([r.PauseChanged(10.05, True)], settings=H, state=_halted_primary(10.0))
    state, actions = _beats(paused, 10.1, 15.0)
    assert state.role is r.Role.HALTED
    # A PanicStop is latched here: handing over would let the peer undo it.
    panicked, _ = run([r.HealthChanged(10.05, False, "risk", panicked=True)], settings=H, state=_halted_primary(10.0))
    state, actions = _beats(panicked, 10.1, 15.0)
    assert state.role is r.Role.HALTED


def test_a_standby_contends_when_its_peer_is_fenced_without_a_lease_for_the_bound():
    start, _ = run([r.Started(0), r.HealthChanged(0.1, True)], settings=H)
    state, actions = _beats(start, 0.2, 2.1, role="primary", epoch=5)
    state, actions = _beats(state, 2.2, 4.1, role="fenced")  # stuck cancelling: its venue path is down
    assert state.role is r.Role.STANDBY
    state, actions = _beats(state, 4.2, 4.2, role="fenced")
    assert state.role is r.Role.CANDIDATE and reasons(actions) == [
        "peer sg-2 fenced without a lease for 2.000 s: contending for the lock"]
    # A fenced peer heard holding a lease again in between resets the clock.
    state, _ = _beats(start, 0.2, 1.0, role="fenced")
    state, _ = _beats(state, 1.1, 1.1, role="halted", epoch=6)
    state, actions = _beats(state, 1.2, 3.0, role="fenced")
    assert state.role is r.Role.STANDBY
