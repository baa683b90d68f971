"""The HA loop: feeds the role state machine (`roles.py`) with heartbeats,
ticks, lease events, health and the pause flag, and carries out the actions
it returns against the engine, the trading lock and the heartbeat link.

Events are applied one at a time from a queue, so the machine never sees two
at once; slow actions (acquiring, cancelling, reconciling) run as tasks that
report back with an event.
"""
import asyncio
import time
from collections import deque

from .. import logs
from ..config import NodeConfig, Secrets
from ..coordinator.backend import BackendUnavailable, HistoryEntry, Pause
from ..coordinator.trading_lock import TradingLock
from ..node import venue_errors as ve
from ..node.engine import NodeEngine
from . import roles
from .heartbeat import Heartbeat, HeartbeatReceiver, HeartbeatSender, Readiness
from .link import HeartbeatLink
from .peer_lease import HOLDING_ROLES, PeerLeaseGrants, PeerLeaseHolder

log = logs.get("failover")
TICK_S = 0.02
PAUSE_POLL_S = 0.5
HANDOVER_MARKER_S = 5.0
HISTORY_KEPT = 1000


class FailoverController:
    def __init__(self, config: NodeConfig, secrets: Secrets, engine: NodeEngine, lock: TradingLock,
                 clock=time.monotonic):
        self.cfg = config
        self.engine = engine
        self.lock = lock
        self.clock = clock
        k = config.cluster
        self.settings = roles.Settings(node=config.node.id, peer=k.peer, silence_s=k.silence_s,
                                       nofailover=k.nofailover)
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
        self._tasks: set[asyncio.Task] = set()
        self._last_health: bool | None = None
        lock.on_lost = lambda reason: self.submit(roles.LeaseLost(self.clock(), reason))
        lock.failsafe_until = lambda: self.peer_lease.until
        engine.trading_lock = lock
        engine.ha = self  # for /metrics

    # -- plumbing ----------------------------------------------------------------
    def submit(self, event) -> None:
        self.events.put_nowait(event)

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

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
            "ready": Readiness(market_data=ready["market_data"], account=ready["account"], risk=ready["risk"]),
            "handover_to": handover, "paused": self.state.paused,
        }

    def _on_heartbeat(self, beat: Heartbeat) -> None:
        now = self.clock()
        if beat.epoch is not None:
            self.lock.observe_epoch(beat.epoch)
        self.grants.on_heartbeat(beat.boot, beat.seq, beat.role, now)
        self.peer_lease.on_heartbeat(beat.role, beat.echo_boot, beat.echo_seq)
        self.submit(roles.PeerHeard(now, beat.role, beat.epoch, beat.ready.all, beat.handover_to))

    # -- the loop ----------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        self._spawn(self.link.run(stop))
        self._spawn(self._ticker(stop))
        self._spawn(self._pause_watch(stop))
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
            self.apply(getter.result())

    def apply(self, event) -> list:
        self.state, actions = roles.step(self.settings, self.state, event)
        for action in actions:
            self._carry_out(action)
        return actions

    async def _ticker(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(TICK_S)
            now = self.clock()
            healthy = all(self.engine.readiness().values())
            if healthy != self._last_health:
                self._last_health = healthy
                detail = ",".join(k for k, ok in self.engine.readiness().items() if not ok)
                self.submit(roles.HealthChanged(now, healthy, detail))
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
            except BackendUnavailable as exc:
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
                self._acquiring = self._spawn(self._acquire())
        elif isinstance(action, roles.StopAcquiring):
            if self._acquiring is not None and self._acquiring is not asyncio.current_task():
                self._acquiring.cancel()
            self._acquiring = None
        elif isinstance(action, roles.ProtectiveCancel):
            self.timings["acquired"] = now
            self._spawn(self._step(self.engine.protective_cancel, roles.ProtectiveCancelDone, "protective cancel",
                                   lambda _: True))
        elif isinstance(action, roles.Reconcile):
            self.timings["protective_cancel_done"] = now
            self._spawn(self._step(self.engine.reconcile, roles.Reconciled, "reconcile", lambda _: True))
        elif isinstance(action, roles.StartQuoting):
            self.timings["reconciled"] = now
            self._spawn(self._start_quoting(action.epoch))
        elif isinstance(action, roles.StopQuoting):
            self.engine.set_trading(False)
        elif isinstance(action, roles.CancelOwnOrders):
            reason = f"own epoch {action.epoch}"
            self._spawn(self._step(lambda: self.engine.cancel_own_orders(reason), roles.OwnOrdersCancelled,
                                   "own-order cancel", lambda remaining: remaining == 0))
        elif isinstance(action, roles.ReleaseLock):
            if action.target is not None:
                self.handover_to = (action.target, now + HANDOVER_MARKER_S)
            self._spawn(self._release(action.target))
        elif isinstance(action, roles.Refused):
            self.last_refusal = action.reason
            log.warning("request refused", reason=action.reason)

    async def _acquire(self) -> None:
        # The role is checked before every attempt, not only left to cancel(): a loop that outlived
        # its candidacy would take the lock the moment it lapses, and the epoch it burns keeps a
        # primary riding a backend outage from restoring its own.
        me = asyncio.current_task()
        while self.state.role is roles.Role.CANDIDATE and self._acquiring is me:
            try:
                lease = await self.lock.try_acquire(not_before=self.grants.expires_at)
                if lease is not None:
                    self.submit(roles.LeaseAcquired(self.clock(), lease.epoch))
                    return
                await self.lock.backend.wait_until_free(0.25, self.clock() + 0.5)
            except BackendUnavailable as exc:
                log.warning("lock backend unavailable while acquiring", error=str(exc))
                await asyncio.sleep(0.05)

    async def _step(self, run, done_event, what: str, succeeded) -> None:
        """Runs a takeover or fencing step until `succeeded(result)`: a venue
        hiccup retries; the machine is never left waiting for an event that never comes."""
        while True:
            try:
                result = await run()
                if succeeded(result):
                    self.submit(done_event(self.clock()))
                    return
                log.warning(f"{what} incomplete; again", result=result)
            except (ve.VenueError, BackendUnavailable) as exc:
                log.warning(f"{what} failed; retrying", error=str(exc))
            await asyncio.sleep(0.1)

    async def _release(self, target: str | None) -> None:
        try:
            released = await self.lock.release(target=target, marker_ttl_s=HANDOVER_MARKER_S)
            log.info("trading lock released", to=target, released=released)
        except BackendUnavailable as exc:
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
        try:
            await self.lock.backend.append_history(entry, HISTORY_KEPT, self.clock() + 1.0)
        except BackendUnavailable as exc:
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
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
