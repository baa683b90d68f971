"""The invariant checker: judges a drill from its evidence (`evidence.py`).
Pure: no I/O, no clock; the same evidence always gives the same verdict.

1. lease    — no order created by a node outside a valid lease: every order
               request that reached the venue was sent by the node that
               acquired its epoch, after acquiring it and before that lease
               ended. A lease ends at the first of: the node's own record of
               losing or releasing it, its death, a later epoch (the node's
               own next one, or another node's first order), a lock backend
               restart that lost the lock (the lock's release bound after it
               serves again: ttl on Redis, 2 x ttl on Consul), and — from the
               faults themselves — the moment a node cut off from both the
               lock backend (ttl: its own lease) and its peer (silence, the
               failsafe peer lease) can no longer hold any lease.
2. overlap  — never orders of two epochs live at the venue at the same
               instant for longer than the in-flight window the design
               allows (an order in flight from a frozen ex-primary, swept).
               Every such overlap instant is counted and timed.
2b. stale-accepted — no order of an epoch accepted by the venue after the
               first accepted order of a newer epoch: the recvWindow fence
               (DESIGN §2.2) has the venue refuse an order delayed past its
               sender's lease; the refusals of late orders (-1021) are
               collected per node and epoch, to show the fence at work.
3. orphans  — no older-epoch order still resting 1 s after a takeover, and
               any older-epoch order that shows up later is gone within 1 s.
4. takeover — fault to the first new-epoch order acknowledged by the venue,
               within the budget where a takeover is required.
5. failover — the lock changes hands (other than by a planned switchover)
               exactly when the scenario warrants it.

Send times: the venue records when it *received* an order. The gate lets an
order through at most `inflight_s` (plus any delay the drill injected on the
REST link, plus any time the sender spent frozen) before that, so a lease is
only judged violated when even the earliest possible send time falls outside
it. When the audit carries the signed request timestamp, that is used instead.

Orders the drill itself placed on the account through another client (its
`foreign_client_ids`, an order list say) are no node's: they are left out.
"""
from dataclasses import dataclass, field

from .evidence import DrillEvent, Evidence, NodeEvent, OrderRequest
from .venue_record import LateRefusals, Overlap, late_refusals, overlap_instants, stale_acceptances

REQUIRED, FORBIDDEN, ALLOWED = "required", "forbidden", "allowed"


@dataclass(frozen=True)
class Rules:
    ttl_s: float = 1.0  # the holder's own lease lasts at most this long after its last renewal was sent
    lock_frees_s: float = 1.0  # the backend frees a silent holder's key within this (config.lock_frees_within_s)
    silence_s: float = 1.0
    failover: str = FORBIDDEN  # required | forbidden | allowed
    takeover_budget_s: float = 3.0
    venue_delay_s: float = 0.0  # injected one-way delay on the REST link
    inflight_s: float = 0.25  # gate to venue, without injected delay
    overlap_s: float = 0.5  # two epochs' live orders may coexist this long
    orphan_grace_s: float = 1.0
    tolerance_s: float = 0.005  # log timestamps vs the venue's clock
    planned_window_s: float = 10.0  # a switchover's target acquiring this soon after it is planned


@dataclass
class EpochRecord:
    index: int  # 1, 2, ... in order of acquisition (epochs themselves are millisecond-sized)
    epoch: int
    node: str
    acquired: float
    ended: float | None = None
    end_reason: str = ""
    first_order_acked: float | None = None
    orders: int = 0
    planned: bool = False  # acquired by a switchover's target
    change: str = "first"  # first | failover | switchover | reacquired | teardown (while the drill stopped the pair)


@dataclass
class InvariantResult:
    key: str
    title: str
    violations: list[str] = field(default_factory=list)
    facts: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations


@dataclass
class Verdict:
    invariants: list[InvariantResult]
    epochs: list[EpochRecord]
    takeover_s: float | None
    failovers: int
    switchovers: int
    overlaps: list[Overlap] = field(default_factory=list)  # two epochs' orders live at once
    late_refusals: list[LateRefusals] = field(default_factory=list)  # the venue refusing late orders

    @property
    def ok(self) -> bool:
        return all(i.ok for i in self.invariants)

    def invariant(self, key: str) -> InvariantResult:
        return next(i for i in self.invariants if i.key == key)


# -- helpers -------------------------------------------------------------------------
def _intervals(events: list[DrillEvent], node: str, begin: set[str], end: set[str],
               until: float) -> list[tuple[float, float]]:
    """[start, stop) spans between a `begin` and an `end` event for `node`."""
    spans, opened = [], None
    for e in sorted(events, key=lambda e: e.at):
        if e.node != node:
            continue
        if e.kind in begin and opened is None:
            opened = e.at
        elif e.kind in end and opened is not None:
            spans.append((opened, e.at))
            opened = None
    if opened is not None:
        spans.append((opened, until))
    return spans


def _merged(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for start, stop in sorted(spans):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], stop))
        else:
            out.append((start, stop))
    return out


def _since(spans: list[tuple[float, float]], t: float) -> float | None:
    """When the (merged) span containing t began."""
    for start, stop in spans:
        if start <= t < stop:
            return start
    return None


class _Context:
    def __init__(self, ev: Evidence, rules: Rules):
        self.ev, self.rules = ev, rules
        foreign = ev.foreign_client_ids
        self.orders = [o for o in ev.orders if o.client_id not in foreign]
        self.lives = [life for life in ev.lives if life.client_id not in foreign]
        self.foreign_orders = len(ev.orders) - len(self.orders)
        self.nodes = sorted({e.node for e in ev.node_events} | {o.node for o in self.orders if o.node}
                            | {e.node for e in ev.drill_events if e.node})
        self.end = ev.ended
        drill = ev.drill_events
        self.frozen = {n: _intervals(drill, n, {"freeze"}, {"thaw", "kill"}, self.end) for n in self.nodes}
        # A SIGTERMed node trades on under its lease until it exits; a SIGKILLed one stops at once.
        self.dead = {n: _intervals(drill, n, {"kill", "exited"}, {"start"}, self.end) for n in self.nodes}
        self.lock_down = {n: _merged(_intervals(drill, n, {"lock-down"}, {"lock-up"}, self.end)) for n in self.nodes}
        # Heartbeats *to* a node: cut on the sender's side, recorded as node=sender, detail=receiver.
        self.deaf = {}
        for n in self.nodes:
            cut = [DrillEvent(e.at, e.kind, e.detail) for e in drill
                   if e.kind in ("hb-cut", "hb-heal") and e.detail == n]
            spans = _intervals(cut, n, {"hb-cut"}, {"hb-heal"}, self.end)
            for peer in self.nodes:
                if peer != n:  # a dead or frozen peer sends nothing either
                    spans += self.dead.get(peer, []) + self.frozen.get(peer, [])
            self.deaf[n] = _merged(spans)

    def t(self, at: float) -> str:
        """A time as the timelines show it: seconds since the drill started."""
        return f"{at - self.ev.started:.3f}"

    def earliest_send(self, o: OrderRequest) -> float:
        if o.client_ts is not None:
            return o.client_ts - 0.002  # millisecond resolution
        window = self.rules.inflight_s + self.rules.venue_delay_s
        earliest = o.recv - window
        for start, stop in self.frozen.get(o.node, []):
            if stop <= o.recv and stop > earliest:
                earliest -= stop - start  # in flight while its sender was frozen
        return earliest

    def latest_send(self, o: OrderRequest) -> float:
        return o.client_ts + 0.002 if o.client_ts is not None else o.recv

    def deaf_since(self, node: str, t: float) -> float | None:
        """Since when the node has heard nothing from its peer, if it hears nothing at t."""
        return _since(self.deaf.get(node, []), t)


def _epochs(ctx: _Context) -> list[EpochRecord]:
    ev, rules = ctx.ev, ctx.rules
    acquired = sorted((e for e in ev.node_events if e.kind == "acquired" and e.epoch is not None),
                      key=lambda e: e.at)
    teardown = next((e.at for e in ev.drill_events if e.kind == "teardown"), None)
    switchovers = [e for e in ev.drill_events if e.kind == "switchover"]
    records: list[EpochRecord] = []
    for i, acq in enumerate(acquired):
        rec = EpochRecord(i + 1, acq.epoch, acq.node, acq.at)
        if records:
            prev = records[-1]
            rec.planned = any(s.node == acq.node and 0 <= acq.at - s.at <= rules.planned_window_s
                              for s in switchovers)
            rec.change = ("reacquired" if prev.node == acq.node else "switchover" if rec.planned
                          else "teardown" if teardown is not None and acq.at >= teardown else "failover")
        records.append(rec)
    by_epoch = {r.epoch: r for r in records}
    for o in ctx.orders:
        rec = by_epoch.get(o.epoch)
        if rec is not None and o.node == rec.node:
            rec.orders += 1
            if o.accepted and (rec.first_order_acked is None or o.done < rec.first_order_acked):
                rec.first_order_acked = o.done
    first_send = {}
    for o in ctx.orders:
        if o.epoch in by_epoch:
            first_send[o.epoch] = min(first_send.get(o.epoch, o.recv), ctx.latest_send(o))
    restarts = [e for e in ev.drill_events if e.kind == "backend-restart" and "without persistence" in e.detail]
    serving = sorted(e.at for e in ev.drill_events if e.kind == "backend-up")
    for i, rec in enumerate(records):
        ends: list[tuple[float, str]] = []
        for e in ev.node_events:
            if (e.node == rec.node and e.at >= rec.acquired and e.kind in ("lost", "released", "stopped")
                    and e.epoch in (rec.epoch, None)):
                what = {"lost": "losing the lease", "released": "releasing the lock", "stopped": "stopping"}[e.kind]
                ends.append((e.at, f"{rec.node} logged {what}" + (f" ({e.detail})" if e.detail else "")))
        for start, _ in ctx.dead.get(rec.node, []):
            if start >= rec.acquired:
                ends.append((start, f"{rec.node} was killed or had exited"))
        for later in records[i + 1:]:
            if later.node == rec.node:
                ends.append((later.acquired, f"{rec.node} acquired a later epoch (#{later.index})"))
            elif later.epoch in first_send:
                ends.append((first_send[later.epoch], f"{later.node} sent the first order of epoch #{later.index}"))
        for r in restarts:
            if r.at >= rec.acquired:
                # While the backend is down the holder may ride on the peer lease (DESIGN §2.4); once it serves
                # again, having forgotten the lock, nobody is granted it before the release bound has passed.
                up = next((at for at in serving if at >= r.at), r.at)
                ends.append((up + rules.lock_frees_s, "the lock backend restarted without persistence"))
        if ends:
            rec.ended, rec.end_reason = min(ends)
    return records


# -- the invariants -----------------------------------------------------------------
def _check_lease(ctx: _Context, epochs: list[EpochRecord]) -> InvariantResult:
    rules = ctx.rules
    result = InvariantResult("lease", "no order created by a node outside a valid lease")
    by_epoch = {r.epoch: r for r in epochs}
    checked = 0
    for o in ctx.orders:
        checked += 1
        where = f"order {o.client_id or '?'} (received t={ctx.t(o.recv)})"
        if o.node is None or o.epoch is None:
            result.violations.append(f"{where}: its client id names no node and epoch")
            continue
        rec = by_epoch.get(o.epoch)
        if rec is None or rec.node != o.node:
            result.violations.append(f"{where}: {o.node} never acquired epoch {o.epoch}")
            continue
        latest = ctx.latest_send(o)
        if latest < rec.acquired - rules.tolerance_s:
            result.violations.append(f"{where}: sent before {o.node} acquired epoch #{rec.index}")
            continue
        earliest = max(ctx.earliest_send(o), rec.acquired)  # nothing is sent under a lease not yet held
        if rec.ended is not None and earliest > rec.ended + rules.tolerance_s:
            result.violations.append(f"{where}: sent {earliest - rec.ended:.3f} s or more after the lease of "
                                     f"epoch #{rec.index} ended ({rec.end_reason})")
            continue
        lock_cut = _since(ctx.lock_down.get(o.node, []), earliest)
        deaf = ctx.deaf_since(o.node, earliest)
        # The node's own lease, not the backend's release bound: its safe deadline falls within ttl of the
        # last renewal it sent, whenever the backend frees the key.
        if lock_cut is not None and deaf is not None and rec.acquired < lock_cut:
            bound = max(lock_cut + rules.ttl_s, deaf + rules.silence_s)
            if earliest > bound + rules.tolerance_s:
                result.violations.append(
                    f"{where}: sent {earliest - bound:.3f} s or more after {o.node} could hold no lease (cut off "
                    f"from the lock backend since t={ctx.t(lock_cut)} and from its peer since t={ctx.t(deaf)})")
    result.facts = {"orders_checked": checked}
    if ctx.foreign_orders:
        result.facts["foreign_orders_left_out"] = ctx.foreign_orders
    return result


def _check_overlap(ctx: _Context, index: dict) -> tuple[InvariantResult, list[Overlap]]:
    rules = ctx.rules
    allowed = rules.overlap_s + 2 * rules.venue_delay_s
    result = InvariantResult("overlap", "never two epochs with live orders at once beyond the in-flight window")
    overlaps = overlap_instants(ctx.lives, ctx.end)
    for o in overlaps:
        if o.duration > allowed:
            names = ", ".join(f"#{index.get(e, '?')}" for e in o.epochs)
            result.violations.append(f"epochs {names} had live orders at once for {o.duration:.3f} s from "
                                     f"t={ctx.t(o.start)} (allowed {allowed:.3f} s)")
    result.facts = {"overlap_instants": len(overlaps),
                    "longest_s": round(max((o.duration for o in overlaps), default=0.0), 4),
                    "total_s": round(sum(o.duration for o in overlaps), 4), "allowed_s": round(allowed, 3)}
    return result, overlaps


def _check_stale_accepted(ctx: _Context, index: dict) -> tuple[InvariantResult, list[LateRefusals]]:
    result = InvariantResult("stale-accepted", "no older-epoch order accepted after a newer epoch's first order")
    stale = stale_acceptances(ctx.orders)
    for s in stale:
        o, first = s.order, s.newer
        signed = ""
        if o.client_ts is not None:
            signed = f"; signed t={ctx.t(o.client_ts)}" + (f" with a recvWindow of {o.recv_window * 1000:.0f} ms"
                                                          if o.recv_window is not None else "")
        result.violations.append(
            f"order {o.client_id} of epoch #{index.get(o.epoch, '?')} from {o.node} accepted (received "
            f"t={ctx.t(o.recv)}) {s.after_s:.3f} s after the first order of epoch #{index.get(first.epoch, '?')} "
            f"(t={ctx.t(first.recv)}){signed}")
    refusals = late_refusals(ctx.orders)
    result.facts = {"stale_accepted": len(stale), "refused_late": sum(r.count for r in refusals),
                    "refused_late_after_newer_epoch": sum(r.after_newer for r in refusals)}
    return result, refusals


def _check_orphans(ctx: _Context, epochs: list[EpochRecord], index: dict) -> InvariantResult:
    rules = ctx.rules
    grace = rules.orphan_grace_s + 2 * rules.venue_delay_s
    result = InvariantResult("orphans", "no older-epoch order resting 1 s after a takeover")
    swept = 0
    for rec in epochs[1:]:
        held = (rec.ended if rec.ended is not None else ctx.end) - rec.acquired
        if rec.orders == 0 and held < grace:
            continue  # taken and handed straight back without trading: no takeover, nothing to sweep
        deadline = rec.acquired + grace
        for life in ctx.lives:
            if life.epoch is None or life.epoch >= rec.epoch:
                continue
            stop = life.end if life.end is not None else ctx.end
            if life.start <= rec.acquired and stop > deadline:
                result.violations.append(
                    f"order {life.client_id} of epoch #{index.get(life.epoch, '?')} still resting "
                    f"{stop - rec.acquired:.3f} s after epoch #{rec.index} was acquired")
            elif life.start > rec.acquired:
                swept += 1
                if stop - life.start > grace:
                    result.violations.append(
                        f"order {life.client_id} of epoch #{index.get(life.epoch, '?')} appeared after the "
                        f"takeover (t={ctx.t(life.start)}) and rested {stop - life.start:.3f} s")
    result.facts = {"late_orphans": swept, "grace_s": round(grace, 3)}
    return result


def _fault(ev: Evidence) -> DrillEvent | None:
    return next((e for e in sorted(ev.drill_events, key=lambda e: e.at) if e.kind == "fault"), None)


def _check_takeover(ctx: _Context, epochs: list[EpochRecord]) -> tuple[InvariantResult, float | None]:
    rules = ctx.rules
    result = InvariantResult("takeover", f"takeover within {rules.takeover_budget_s:g} s of the fault")
    fault = _fault(ctx.ev)
    if fault is None:
        if rules.failover == REQUIRED:
            result.violations.append("the drill recorded no fault instant")
        return result, None
    before = [r for r in epochs if r.acquired <= fault.at]
    holder = before[-1].node if before else None
    # The first later epoch of another node that traded (an epoch taken and handed straight back, with
    # no order, is no takeover), else the first later epoch at all, to say what went wrong.
    later = [r for r in epochs if r.acquired > fault.at and r.node != holder]
    successor = next((r for r in later if r.first_order_acked is not None), later[0] if later else None)
    takeover_s = None
    if successor is not None and successor.first_order_acked is not None:
        takeover_s = successor.first_order_acked - fault.at
    result.facts = {"fault_t": ctx.t(fault.at), "holder": holder,
                    "successor": successor.node if successor else None,
                    "takeover_s": round(takeover_s, 4) if takeover_s is not None else None}
    if rules.failover == REQUIRED:
        if successor is None:
            result.violations.append(f"no other node took the lock after the fault ({fault.detail})")
        elif takeover_s is None:
            result.violations.append(f"{successor.node} took the lock at epoch #{successor.index} but no order "
                                     "of that epoch was acknowledged")
        elif takeover_s > rules.takeover_budget_s:
            result.violations.append(f"the first order of epoch #{successor.index} was acknowledged "
                                     f"{takeover_s:.3f} s after the fault (budget {rules.takeover_budget_s} s)")
    return result, takeover_s


def _check_failover(ctx: _Context, epochs: list[EpochRecord]) -> tuple[InvariantResult, int, int]:
    rules = ctx.rules
    result = InvariantResult("failover", f"failover {rules.failover} in this scenario")
    failovers = [r for r in epochs if r.change == "failover"]
    switchovers = [r for r in epochs if r.change == "switchover"]
    described = ", ".join(f"#{r.index} by {r.node} at t={ctx.t(r.acquired)}" for r in failovers)
    if rules.failover == FORBIDDEN and failovers:
        result.violations.append(f"the lock changed hands without a switchover: {described}")
    if rules.failover == REQUIRED and len(failovers) != 1:
        result.violations.append("expected exactly one failover (non-preemptive), saw "
                                 f"{len(failovers)}" + (f": {described}" if failovers else ""))
    result.facts = {"failovers": len(failovers), "switchovers": len(switchovers),
                    "reacquisitions": sum(r.change == "reacquired" for r in epochs), "epochs": len(epochs)}
    return result, len(failovers), len(switchovers)


def check(ev: Evidence, rules: Rules) -> Verdict:
    ctx = _Context(ev, rules)
    epochs = _epochs(ctx)
    index = {r.epoch: r.index for r in epochs}
    lease = _check_lease(ctx, epochs)
    overlap, overlaps = _check_overlap(ctx, index)
    stale, refusals = _check_stale_accepted(ctx, index)
    orphans = _check_orphans(ctx, epochs, index)
    takeover, takeover_s = _check_takeover(ctx, epochs)
    failover, failovers, switchovers = _check_failover(ctx, epochs)
    return Verdict([lease, overlap, stale, orphans, takeover, failover], epochs, takeover_s, failovers,
                   switchovers, overlaps, refusals)


def node_events(ev: Evidence, node: str, kind: str) -> list[NodeEvent]:
    return [e for e in ev.node_events if e.node == node and e.kind == kind]
