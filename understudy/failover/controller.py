"""The HA loop: feeds the role state machine (`roles.py`) with heartbeats,
ticks, lease events, health and the pause flag, and carries out the actions
it returns against the engine, the trading lock and the heartbeat link.

Events are applied one at a time from a queue, so the machine never sees two
at once; slow actions (acquiring, cancelling, reconciling) run as tasks that
report back with an event.

Every task runs supervised (`supervision.py`). The link, the ticker and the
pause watch are restarted with a backoff when they fail; a takeover or
fencing step retries *any* failure with a backoff (a decoder that chokes on
a venue reply must not leave the machine waiting for an event that never
comes) and, if it cannot get through, the hand-over bound moves the lock to
a peer that can trade. A failure in the machine itself, or a loop that
keeps failing, is fatal: the lease ends at once and the node exits.
"""
import asyncio
import time
from collections import deque

from .. import logs
from ..config import NodeConfig, Secrets
from ..coordinator.backend import (BackendMisconfigured, BackendNonsense, BackendUnavailable, HistoryEntry, Pause,
                                   bounded)
from ..coordinator.trading_lock import TradingLock
from ..node import venue_errors as ve
from ..node.engine import NodeEngine
from ..supervision import Policy, Supervisor
from . import roles
from .heartbeat import Heartbeat, HeartbeatReceiver, HeartbeatSender, Readiness
from .link import HeartbeatLink
from .peer_lease import HOLDING_ROLES, PeerLeaseGrants, PeerLeaseHolder

log = logs.get("failover")
TICK_S = 0.02
PAUSE_POLL_S = 0.5
HANDOVER_MARKER_S = 5.0
HISTORY_KEPT = 1000
STEP_BACKOFF_S = (0.1, 1.0)  # a failing step retries after 0.1 s, doubling up to 1 s
UNCONFIRMED_HANDOVER_AFTER_S = 1.0  # cancels that cannot get through, given up on in a hand-over
MISCONFIGURED_RETRY_S = 1.0
EXPECTED_STEP_ERRORS = (ve.VenueError, BackendUnavailable, BackendNonsense)


class FailoverController:
    def __init__(self, config: NodeConfig, secrets: Secrets, engine: NodeEngine, lock: TradingLock,
                 clock=time.monotonic):
        self.cfg = config
        self.engine = engine
        self.lock = lock
        self.clock = clock
        k = config.cluster
        self.settings = roles.Settings(node=config.node.id, peer=k.peer, silence_s=k.silence_s,
                                       nofailover=k.nofailover, handover_after_s=k.handover_after_s)
        self.state = roles.State()
        boot = time.time_ns() // 1_000_000
        self.peer_lease = PeerLeaseHolder(boot, k.silence_s, lock.drift, lock.margin_s)
        self.grants = PeerLeaseGrants(k.silence_s)
        self.link = HeartbeatLink(
            HeartbeatSender(config.node.id, secrets.heartbeat_key, boot),
            HeartbeatReceiver(config.node.id, k.peer, secrets.heartbeat_key, int(k.max_heartbeat_age_s * 1000)),
            (k.bind_host, k.bind_port), (k.peer_host, k.peer_port), k.heartbeat_interval_s,
            self._heartbeat_fields, self._on_heartbeat, lambda seq: self.peer_lease.on_sent(seq, self.clock()))
        self.events: asyncio.Queue = asyncio.Queue()
        self.transitions: list[dict] = []
        self.failovers = 0
        self.last_refusal: str | None = None
        self.handover_to: tuple[str, float] | None = None
        self.timings: dict[str, float] = {}
        self.takeover_reason = ""
        self._recorded_epoch: int | None = None
        self.completed_takeovers: deque[tuple[str, dict[str, float]]] = deque(maxlen=100)  # for /metrics
        self.on_peer_lease = False
        self.failsafe_entries = 0  # times the lock lease ran out and the peer lease carried on
        self._acquiring: asyncio.Task | None = None
        self._last_health: tuple | None = None
        self.on_fatal = None  # set by the process (run.py)
        self.supervisor = Supervisor(self._fatal)
        self.step_failures: dict[str, int] = {}  # by step, unexpected errors included, for /metrics
        self.handovers_unable = 0  # locks handed on because this node could not trade
        lock.on_lost = lambda reason: self.submit(roles.LeaseLost(self.clock(), reason))
        lock.failsafe_until = lambda: self.peer_lease.until
        engine.trading_lock = lock
        engine.ha = self  # for /metrics

    # -- plumbing ----------------------------------------------------------------
    def submit(self, event) -> None:
        self.events.put_nowait(event)

    def _spawn(self, coro, name: str = "ha-step") -> asyncio.Task:
        """A one-shot action: it handles its own failures, so one escaping it is a bug, and fatal."""
        return self.supervisor.spawn(name, lambda: coro, Policy.FATAL)

    def _fatal(self, reason: str) -> None:
        if self.on_fatal is not None:
            self.on_fatal(reason)

    def _heartbeat_fields(self) -> dict:
        lease = self.lock.lease
        now = self.clock()
        ready = self.engine.readiness()
        handover = self.handover_to[0] if self.handover_to and self.handover_to[1] > now else None
        # Only a standby vouches for the primary; a node that wants the lock stops echoing.
        echo_boot, echo_seq = self.grants.echo(now, granting=self.state.role is roles.Role.STANDBY)
        return {
            "echo_boot": echo_boot, "echo_seq": echo_seq,
            "role": self.state.role.value, "epoch": lease.epoch if lease else None,
            "lease_left_ms": int(lease.time_left(now) * 1000) if lease else 0,
            "ready": Readiness(market_data=ready["market_data"], account=ready["account"], risk=ready["risk"],
                               venue=ready["venue"]),
            "handover_to": handover, "paused": self.state.paused, "nofailover": self.settings.nofailover,
        }

    def _on_heartbeat(self, beat: Heartbeat, late: bool = False) -> None:
        """A late heartbeat (a newer one came first) still carries a valid
        echo and a valid epoch floor, but not the peer's current state: its
        role, readiness and time heard never roll back."""
        now = self.clock()
        if beat.epoch is not None:
            self.lock.observe_epoch(beat.epoch)
        self.peer_lease.on_heartbeat(beat.role, beat.echo_boot, beat.echo_seq)
        if late:
            return
        if self.handover_to is not None and self.handover_to[0] == self.settings.peer and beat.role in HOLDING_ROLES:
            # The target holds the lock: the hand-over is done. Left in our heartbeats, the marker would
            # still say "take it" when the target hands the lock back to us (a switchover back within
            # HANDOVER_MARKER_S), and the target, standby again, would contend against its own release.
            self.handover_to = None
        self.grants.on_heartbeat(beat.boot, beat.seq, beat.role, now)
        self.submit(roles.PeerHeard(now, beat.role, beat.epoch, beat.ready.all, beat.handover_to, beat.nofailover))

    # -- the loop ----------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        self.supervisor.spawn("heartbeat-link", lambda: self.link.run(stop), Policy.RESTART)
        self.supervisor.spawn("ha-ticker", lambda: self._ticker(stop), Policy.RESTART)
        self.supervisor.spawn("pause-watch", lambda: self._pause_watch(stop), Policy.RESTART)
        self.submit(roles.Started(self.clock()))
        while not stop.is_set():
            getter = asyncio.ensure_future(self.events.get())
            stopper = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                stopper.cancel()
                break
            stopper.cancel()
            try:
                self.apply(getter.result())
            except Exception as exc:  # noqa: BLE001 - the machine itself failed: nothing it says can be trusted
                log.exception("role machine failed", error=repr(exc))
                self.supervisor.fail(f"role machine failed: {type(exc).__name__}: {exc}")
                return

    def apply(self, event) -> list:
        self.state, actions = roles.step(self.settings, self.state, event)
        for action in actions:
            self._carry_out(action)
        return actions

    async def _ticker(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(TICK_S)
            now = self.clock()
            readiness = self.engine.readiness()
            healthy = all(readiness.values())
            panicked = self.engine.panic_reason is not None
            if (healthy, panicked) != self._last_health:
                self._last_health = (healthy, panicked)
                detail = ",".join(k for k, ok in readiness.items() if not ok)
                if not readiness["venue"]:
                    detail += f" ({self.engine.venue_problem()})"
                self.submit(roles.HealthChanged(now, healthy, detail, panicked))
            self._note_failsafe(now)
            self.submit(roles.Tick(now))

    def _note_failsafe(self, now: float) -> None:
        """Logs the moments trading starts and stops resting on the peer lease alone."""
        on_peer_lease = self.lock.on_failsafe(now)
        if on_peer_lease != self.on_peer_lease:
            self.on_peer_lease = on_peer_lease
            lease = self.lock.lease
            if on_peer_lease:
                self.failsafe_entries += 1
                log.warning("lock lease ran out with the backend unreachable: trading on the peer lease",
                            epoch=lease.epoch if lease else None,
                            peer_lease_left_s=round(self.peer_lease.time_left(now), 3))
            else:
                log.warning("no longer trading on the peer lease",
                            lock_lease_left_s=round(lease.time_left(now), 3) if lease else 0.0)

    async def _pause_watch(self, stop: asyncio.Event) -> None:
        paused = None
        while not stop.is_set():
            try:
                pause = await self.lock.backend.get_pause(self.clock() + PAUSE_POLL_S)
                if pause.paused != paused:
                    paused = pause.paused
                    log.warning("cluster paused" if paused else "cluster resumed", by=pause.by, reason=pause.reason)
                    self.submit(roles.PauseChanged(self.clock(), paused))
            except (BackendUnavailable, BackendNonsense) as exc:
                log.debug("pause flag unreadable", error=str(exc))
            await asyncio.sleep(PAUSE_POLL_S)

    # -- actions -----------------------------------------------------------------
    def _carry_out(self, action) -> None:
        now = self.clock()
        if isinstance(action, roles.Transition):
            log.info("role changed", previous=action.previous, new=action.role, reason=action.reason)
            logs.CONTEXT.role = action.role
            logs.CONTEXT.epoch = self.state.epoch
            self.engine.role = action.role
            if action.role in HOLDING_ROLES and action.previous not in HOLDING_ROLES:
                self.peer_lease.begin_tenure(self.link.sender.seq + 1)
            elif action.role not in HOLDING_ROLES:
                self.peer_lease.end_tenure()
            self.transitions.append({"at": time.time(), "from": action.previous, "to": action.role,
                                     "reason": action.reason})
            del self.transitions[:-100]
            if action.role == roles.Role.CANDIDATE.value:
                self.timings = {"detected": now}
                self.takeover_reason = action.reason
            self.link.send_now()  # the peer learns of a role change at once
        elif isinstance(action, roles.StartAcquiring):
            if self._acquiring is None or self._acquiring.done():
                self._acquiring = self._spawn(self._acquire(), "acquire")
        elif isinstance(action, roles.StopAcquiring):
            if self._acquiring is not None and self._acquiring is not asyncio.current_task():
                self._acquiring.cancel()
            self._acquiring = None
        elif isinstance(action, roles.ProtectiveCancel):
            self.timings["acquired"] = now
            self.handover_to = None  # whatever this node handed over before, it holds the lock now
            self._spawn(self._step(self.engine.protective_cancel, roles.ProtectiveCancelDone, "protective cancel",
                                   lambda older_left: older_left == 0), "protective-cancel")
        elif isinstance(action, roles.Reconcile):
            self.timings["protective_cancel_done"] = now
            self._spawn(self._step(self.engine.reconcile, roles.Reconciled, "reconcile", lambda _: True), "reconcile")
        elif isinstance(action, roles.StartQuoting):
            self.timings["reconciled"] = now
            self._spawn(self._start_quoting(action.epoch), "start-quoting")
        elif isinstance(action, roles.StopQuoting):
            self.engine.set_trading(False)
        elif isinstance(action, roles.CancelOwnOrders):
            reason = f"own epoch {action.epoch}"
            give_up_at = None if action.confirm else now + UNCONFIRMED_HANDOVER_AFTER_S
            if not action.confirm:
                self.handovers_unable += 1
            self._spawn(self._step(lambda: self.engine.cancel_own_orders(reason), roles.OwnOrdersCancelled,
                                   "own-order cancel", lambda remaining: remaining == 0, give_up_at),
                        "own-order-cancel")
        elif isinstance(action, roles.ReleaseLock):
            if action.target is not None:
                self.handover_to = (action.target, now + HANDOVER_MARKER_S)
            self._spawn(self._release(action.target), "release")
        elif isinstance(action, roles.Refused):
            self.last_refusal = action.reason
            log.warning("request refused", reason=action.reason)

    async def _acquire(self) -> None:
        # The role is checked before every attempt, not only left to cancel(): a loop that outlived
        # its candidacy would take the lock the moment it lapses, and the epoch it burns keeps a
        # primary riding a backend outage from restoring its own.
        me = asyncio.current_task()
        failures = 0
        while self.state.role is roles.Role.CANDIDATE and self._acquiring is me:
            try:
                lease = await self.lock.try_acquire(not_before=self.grants.expires_at)
                if lease is not None:
                    self.submit(roles.LeaseAcquired(self.clock(), lease.epoch))
                    return
                await bounded(self.lock.backend.wait_until_free(0.25, self.clock() + 0.5), self.clock() + 0.6,
                              "wait")
                failures = 0
            except (BackendUnavailable, BackendNonsense) as exc:
                log.warning("lock backend unavailable while acquiring", error=str(exc))
                failures += 1
                await asyncio.sleep(min(0.05 * failures, 0.5))
            except BackendMisconfigured as exc:
                # Reconfigured under us since the start-up check (a Consul session_ttl_min raised, say):
                # no lock can be had until an operator fixes it; say so loudly and keep asking.
                self.step_failures["acquire"] = self.step_failures.get("acquire", 0) + 1
                log.critical("the lock backend cannot hold this lock", error=str(exc))
                await asyncio.sleep(MISCONFIGURED_RETRY_S)
            except Exception as exc:  # noqa: BLE001 - a candidate that stops trying leaves nobody trading
                self.step_failures["acquire"] = self.step_failures.get("acquire", 0) + 1
                log.exception("acquire attempt failed unexpectedly; again", error=repr(exc))
                failures += 1
                await asyncio.sleep(min(0.05 * failures, 0.5))

    async def _step(self, run, done_event, what: str, succeeded, give_up_at: float | None = None) -> None:
        """Runs a takeover or fencing step until `succeeded(result)`. Any
        failure retries with a backoff — the unforeseen ones too, logged with
        their traceback: the machine is never left waiting for an event that
        never comes, and a step that cannot get through is what the hand-over
        bound is for. With `give_up_at` (a hand-over by a node that cannot
        reach the venue) the step is declared done at that time, once no send
        of this node can still land."""
        backoff = STEP_BACKOFF_S[0]
        while True:
            try:
                if give_up_at is None:
                    result = await run()
                else:  # a cancel stuck on a dead venue path must not hold the hand-over past its bound
                    attempt = asyncio.ensure_future(run())
                    done, _ = await asyncio.wait({attempt}, timeout=max(0.01, give_up_at - self.clock()))
                    if not done:
                        attempt.cancel()  # not awaited: it may not go quietly
                        attempt.add_done_callback(lambda t: t.cancelled() or t.exception())
                        raise TimeoutError("no answer by the hand-over bound")
                    result = attempt.result()
                if succeeded(result):
                    self.submit(done_event(self.clock()))
                    return
                log.warning(f"{what} incomplete; again", result=result)
            except (TimeoutError, *EXPECTED_STEP_ERRORS) as exc:
                log.warning(f"{what} failed; retrying", error=str(exc) or type(exc).__name__)
            except Exception as exc:  # noqa: BLE001 - see the docstring
                self.step_failures[what] = self.step_failures.get(what, 0) + 1
                log.exception(f"{what} failed unexpectedly; retrying", error=repr(exc))
            if give_up_at is not None and self.clock() >= give_up_at:
                await self.engine.sends_settled()
                log.error(f"{what} unconfirmed: handing over anyway (the successor's protective cancel takes "
                          "whatever rests; no send of ours can still land)")
                self.submit(done_event(self.clock()))
                return
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, STEP_BACKOFF_S[1])

    async def _release(self, target: str | None) -> None:
        try:
            released = await self.lock.release(target=target, marker_ttl_s=HANDOVER_MARKER_S)
            log.info("trading lock released", to=target, released=released)
        except (BackendUnavailable, BackendNonsense) as exc:
            # The lease has already ended locally; the key expires by itself.
            log.warning("lock release failed; it will expire", error=str(exc))

    async def _start_quoting(self, epoch: int) -> None:
        """Quotes once every peer lease this node granted has run out (the
        gate refuses before that anyway; waiting keeps the refusals out of the counts)."""
        lease = self.lock.lease
        if lease is not None and lease.not_before > self.clock():
            log.warning("waiting for the peer lease we granted to run out before quoting",
                        wait_s=round(lease.not_before - self.clock(), 3))
            await asyncio.sleep(lease.not_before - self.clock())
        if self.state.role is not roles.Role.PRIMARY or self.state.epoch != epoch:
            return
        self.engine.set_trading(True)
        if self._recorded_epoch != epoch:  # not again when a halted primary recovers
            self._recorded_epoch = epoch
            await self._record_takeover(epoch)

    async def _record_takeover(self, epoch: int) -> None:
        """Waits for the first quote of the new epoch to be acknowledged, then
        records the lock change with its timings."""
        started = self.clock()
        while self.clock() - started < 5.0:
            if self.engine.gate and any(o.epoch == epoch and o.acked_at for o in self.engine.oms.live.values()):
                self.timings["first_quote"] = self.clock()
                break
            if self.state.role is not roles.Role.PRIMARY:
                break
            await asyncio.sleep(0.005)
        t0 = self.timings.get("detected")
        timings = {k: round(v - t0, 4) for k, v in self.timings.items() if t0 is not None and k != "detected"}
        self.failovers += 1
        self.completed_takeovers.append((self.takeover_reason, dict(self.timings)))
        log.info("takeover complete", epoch=epoch, **{f"{k}_s": v for k, v in timings.items()})
        entry = HistoryEntry(epoch, self.settings.peer, self.settings.node, self.takeover_reason, time.time(), timings)
        deadline = self.clock() + 1.0
        try:
            await bounded(self.lock.backend.append_history(entry, HISTORY_KEPT, deadline), deadline, "history")
        except (BackendUnavailable, BackendNonsense) as exc:
            log.warning("could not record the lock change", error=str(exc))

    # -- operator requests --------------------------------------------------------
    async def switchover(self, target: str, timeout_s: float = 10.0) -> dict:
        self.last_refusal = None
        self.submit(roles.SwitchoverRequested(self.clock(), target))
        started = self.clock()
        while self.clock() - started < timeout_s:
            await asyncio.sleep(0.01)
            if self.last_refusal:
                return {"ok": False, "reason": self.last_refusal}
            if self.state.role is roles.Role.STANDBY:
                return {"ok": True, "handed_to": target, "took_s": round(self.clock() - started, 3)}
        return {"ok": False, "reason": f"not handed over within {timeout_s} s; role {self.state.role.value}"}

    def status(self) -> dict:
        peer = self.link.last_peer
        now_ms = time.time_ns() // 1_000_000
        now_mono = self.clock()
        lease = self.lock.lease
        return {
            "role": self.state.role.value, "reason": self.state.reason, "paused": self.state.paused,
            "nofailover": self.settings.nofailover,
            "epoch": lease.epoch if lease else None,
            "lease_left_s": round(lease.time_left(now_mono), 3) if lease else 0.0,
            "peer": {"node": self.settings.peer, "role": peer.role if peer else None,
                     "epoch": peer.epoch if peer else None,
                     "heartbeat_age_s": round((now_ms - peer.sent_ms) / 1000, 3) if peer else None,
                     "ready": peer.ready.all if peer else False},
            "heartbeats": {"sent": self.link.sent, "accepted": self.link.receiver.accepted,
                           "rejected": dict(self.link.receiver.rejected)},
            "failsafe": {"on_peer_lease": self.lock.on_failsafe(now_mono), "entries": self.failsafe_entries,
                         "peer_lease_left_s": round(self.peer_lease.time_left(now_mono), 3),
                         "granted_wait_left_s": round(self.grants.wait_left(now_mono), 3)},
            "failovers": self.failovers, "transitions": self.transitions[-10:],
        }

    async def set_pause(self, paused: bool, by: str, reason: str) -> None:
        await self.lock.backend.set_pause(Pause(paused, by, reason, time.time()), self.clock() + 2.0)

    async def close(self) -> None:
        """Never hangs: a task that swallows its cancellation is left behind after a second."""
        tasks = self.supervisor.cancel_all()
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)
