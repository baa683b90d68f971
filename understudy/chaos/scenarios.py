"""The drill scenarios: what each one does to a running pair, what it
warrants (a failover required, forbidden or allowed) and how it proves the
fault really took effect — a "no failover" result means nothing if the
fault never happened.

Every scenario starts both nodes at once, waits for a quoting primary and a
ready standby, trades a moment, injects its fault, heals it, and ends with a
quoting primary and a ready standby again (the runner checks that last part).

Every scenario runs on either lock backend (`--lock redis|consul`) unless it
names the backends it needs (`backends`): a Consul leader election needs a
Consul cluster. The backend faults mean the same on both: a restart without
persistence is Redis without AOF or a Consul dev agent (in memory), one with
persistence is Redis with AOF or a Consul server with a data directory.
"""
import asyncio
import inspect
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

from .checker import ALLOWED, FORBIDDEN, REQUIRED
from .drill import Drill, _role
from .evidence import Evidence
from .venue_record import is_late_refusal

TRADE_BEFORE_FAULT_S = 1.0


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    act: Callable[[Drill], Awaitable[None]]
    failover: str = FORBIDDEN
    after: Callable[[Drill, Evidence], None] | None = None
    venue_delay_s: float = 0.0  # one-way delay injected on REST, widens the in-flight allowances
    overlap_s: float = 0.5  # zero for planned switchovers: the design promises no overlap
    persistence: bool = False  # the lock backend keeps its data across a restart (Redis AOF, a Consul data dir)
    backends: tuple[str, ...] = ("redis", "consul")  # the lock backends it means something on
    lock_servers: int = 1  # Consul servers it needs (Redis is always one)
    silent_primary: bool = False  # kill, freeze, isolate: the takeover budget applies
    handover: bool = False  # the primary cannot trade and hands over: the budget grows by handover_after_s
    ends_healthy: bool = True  # the runner waits for a quoting primary and a ready standby at the end


SCENARIOS: dict[str, Scenario] = {}


def applies_to(sc: Scenario, lock: str) -> bool:
    return lock in sc.backends


def scenario(**kwargs):
    def register(act):
        name = act.__name__.replace("_", "-")
        SCENARIOS[name] = Scenario(name=name, summary=(act.__doc__ or "").strip(), act=act, **kwargs)
        return act
    return register


def _saw(ev: Evidence, node: str, kind: str, after: float, role: str | None = None) -> bool:
    return any(e.node == node and e.kind == kind and e.at >= after and (role is None or e.role == role)
               for e in ev.node_events)


def _fault_at(d: Drill) -> float:
    return next(e.at for e in d.events if e.kind == "fault")


async def _pair(d: Drill) -> tuple[str, str]:
    primary, standby = await d.ready_pair()
    await asyncio.sleep(TRADE_BEFORE_FAULT_S)
    return primary, standby


# -- a silent primary: the standby must take over within 3 s ------------------------
def _took_over_and_rejoined(d: Drill, ev: Evidence) -> None:
    primary = d.roles_at_fault[0]
    d.expect(_saw(ev, primary, "role", _fault_at(d), "standby"),
             f"{primary} never rejoined as standby after the fault")


@scenario(failover=REQUIRED, silent_primary=True, after=_took_over_and_rejoined)
async def kill_primary(d: Drill) -> None:
    """SIGKILL the quoting primary; the standby takes over; the dead node is restarted and rejoins as standby."""
    primary, standby = d.roles_at_fault = await _pair(d)
    d.fault(f"SIGKILL {primary}")
    d.kill(primary)
    await d.wait_quoting(standby, 15)
    d.start(primary)


@scenario(failover=REQUIRED, silent_primary=True, after=_took_over_and_rejoined)
async def freeze_primary(d: Drill) -> None:
    """SIGSTOP the primary past its lease (3 s), then SIGCONT: the thawed node must not trade and rejoins as standby."""
    primary, standby = d.roles_at_fault = await _pair(d)
    at = d.fault(f"SIGSTOP {primary}")
    d.freeze(primary)
    await d.wait_quoting(standby, 15)
    await d.sleep_until(at + 3.0)
    d.thaw(primary)
    await d.wait_role(primary, "standby", 15)


def _isolated_primary_fenced(d: Drill, ev: Evidence) -> None:
    _took_over_and_rejoined(d, ev)
    primary = d.roles_at_fault[0]
    d.expect(_saw(ev, primary, "lost", _fault_at(d)), f"{primary} never recorded losing its lease while isolated")


@scenario(failover=REQUIRED, silent_primary=True, after=_isolated_primary_fenced)
async def isolate_primary(d: Drill) -> None:
    """Cut the primary off from its peer (both ways) and the lock backend, venue still reachable: it self-fences, the standby takes over."""
    primary, standby = d.roles_at_fault = await _pair(d)
    at = d.fault(f"isolate {primary}: heartbeats both ways and its lock link")
    d.partition()
    d.lock_down(primary)
    await d.wait_quoting(standby, 15)
    await d.sleep_until(at + 3.5)
    d.record("heal")
    d.lock_up(primary)
    d.heal_partition()
    await d.wait_role(primary, "standby", 15)


# -- partitions in which nobody may take over ---------------------------------------
def _standby_tried(d: Drill, ev: Evidence) -> None:
    standby = d.roles_at_fault[1]
    d.expect(_saw(ev, standby, "role", _fault_at(d), "candidate"),
             f"{standby} never declared the primary silent: the heartbeat fault did not take")


@scenario(failover=FORBIDDEN, after=_standby_tried)
async def heartbeat_partition(d: Drill) -> None:
    """Cut the heartbeat link both ways for 4 s, both nodes still see the lock: the standby contends, fails, and nothing changes hands."""
    d.roles_at_fault = await _pair(d)
    at = d.fault("heartbeats cut both ways")
    d.partition()
    await d.sleep_until(at + 4.0)
    d.record("heal")
    d.heal_partition()


@scenario(failover=FORBIDDEN, after=_standby_tried)
async def asymmetric_standby_deaf(d: Drill) -> None:
    """Drop heartbeats primary -> standby only, for 4 s: the standby thinks the primary silent, but the lock is held."""
    primary, standby = d.roles_at_fault = await _pair(d)
    at = d.fault(f"heartbeats {primary} -> {standby} cut")
    d.cut(primary, standby)
    await d.sleep_until(at + 2.5)
    await _still_hears(d, primary, standby)
    await d.sleep_until(at + 4.0)
    d.record("heal")
    d.heal(primary, standby)


async def _heartbeat_age(d: Drill, node: str) -> float | None:
    status = await d.status(node)
    return status["ha"]["peer"]["heartbeat_age_s"] if status else None


async def _still_hears(d: Drill, node: str, peer: str) -> None:
    """The other direction of an asymmetric cut still works."""
    age = await _heartbeat_age(d, node)
    d.expect(age is not None and age < d.silence_s / 2,
             f"{node} did not hear {peer} during a cut of the other direction (heartbeat age {age})")


def _standby_waited(d: Drill, ev: Evidence) -> None:
    standby = d.roles_at_fault[1]
    d.expect(not _saw(ev, standby, "role", _fault_at(d), "candidate"),
             f"{standby} contended for the lock although it still heard the primary")


@scenario(failover=FORBIDDEN, after=_standby_waited)
async def asymmetric_primary_deaf(d: Drill) -> None:
    """Drop heartbeats standby -> primary only, for 4 s: the primary hears nothing, the standby hears it and waits."""
    primary, standby = d.roles_at_fault = await _pair(d)
    at = d.fault(f"heartbeats {standby} -> {primary} cut")
    d.cut(standby, primary)
    await d.sleep_until(at + 2.5)
    age = await _heartbeat_age(d, primary)
    d.expect(age is not None and age > d.silence_s,
             f"{primary} still heard {standby} during the cut (heartbeat age {age})")
    await _still_hears(d, standby, primary)
    await d.sleep_until(at + 4.0)
    d.record("heal")
    d.heal(standby, primary)


@scenario(failover=FORBIDDEN, after=_standby_tried)
async def flapping_link(d: Drill) -> None:
    """Periodic heartbeat loss: 4 x (0.6 s lost, 0.4 s through), then 3 x (1.4 s lost, 0.8 s through)."""
    d.roles_at_fault = await _pair(d)
    d.fault("heartbeat link flapping")
    for lost, through in [(0.6, 0.4)] * 4 + [(1.4, 0.8)] * 3:  # bounded: seven cycles
        d.partition()
        await asyncio.sleep(lost)
        d.heal_partition()
        await asyncio.sleep(through)
    d.record("heal")


# -- the lock backend ---------------------------------------------------------------
def _primary_kept_trading(d: Drill, ev: Evidence) -> None:
    primary = d.roles_at_fault[0]
    at = _fault_at(d)
    d.expect(_saw(ev, primary, "renew-failed", at), f"{primary} never failed a renewal: the lock fault did not take")
    heal = next(e.at for e in d.events if e.kind == "heal")
    late = [o for o in ev.orders if o.node == primary and at + 2 * d.ttl_s < o.recv < heal and o.accepted]
    d.expect(bool(late), f"{primary} placed no order while cut off from the lock backend (DESIGN §2.4: it keeps "
             "trading on the peer lease)")


@scenario(failover=FORBIDDEN, after=_primary_kept_trading)
async def primary_lock_partition(d: Drill) -> None:
    """Cut the primary from the lock backend (not from its peer) for 4 s: it keeps trading on the peer lease (DESIGN §2.4); no failover."""
    primary, _ = d.roles_at_fault = await _pair(d)
    at = d.fault(f"{primary} cut from the lock backend")
    d.lock_down(primary)
    await d.sleep_until(at + 4.0)
    d.record("heal")
    d.lock_up(primary)


def _nobody_traded_while_cut_off(d: Drill, ev: Evidence) -> None:
    primary = d.roles_at_fault[0]
    at = _fault_at(d)
    heal = next(e.at for e in d.events if e.kind == "heal")
    d.expect(_saw(ev, primary, "lost", at), f"{primary} never recorded losing its lease")
    quiet_from = at + max(d.ttl_s, d.silence_s) + 0.25
    traded = [o for o in ev.orders if quiet_from < o.recv < heal]
    d.expect(not traded, f"{len(traded)} orders reached the venue while neither node could hold a lease")


@scenario(failover=ALLOWED, after=_nobody_traded_while_cut_off)
async def lock_and_peer_lost(d: Drill) -> None:
    """Both nodes lose the lock backend and the heartbeat link for 4 s: the primary self-fences, nobody trades; after healing one node takes over."""
    d.roles_at_fault = await _pair(d)
    at = d.fault("lock backend unreachable from both nodes, heartbeats cut both ways")
    for node in d.nodes:
        d.lock_down(node)
    d.partition()
    await d.sleep_until(at + 4.0)
    d.record("heal")
    for node in d.nodes:
        d.lock_up(node)
    d.heal_partition()


def _lost_with_the_data(d: Drill, ev: Evidence) -> None:
    primary = d.roles_at_fault[0]
    d.expect(_saw(ev, primary, "lost", _fault_at(d)), f"{primary} kept a lease the restarted backend had forgotten")


@scenario(failover=ALLOWED, after=_lost_with_the_data)
async def lock_backend_restart(d: Drill) -> None:
    """Restart the lock backend without persistence (Redis without AOF; a Consul dev agent, in memory): the lock is forgotten, the holder loses it at its first renewal once it serves again, a holder trades again after the quarantine."""
    d.roles_at_fault = await _pair(d)
    d.fault(f"lock backend restarted {d.lock.restart_detail}")
    await d.restart_backend()
    d.record("heal")


@scenario(failover=FORBIDDEN, persistence=True)
async def lock_backend_restart_persistent(d: Drill) -> None:
    """Restart the lock backend with persistence (Redis with AOF, fsync always; a Consul server with a data directory): the lock survives, renewals resume, nothing changes hands."""
    d.roles_at_fault = await _pair(d)
    d.fault(f"lock backend restarted {d.lock.restart_detail}")
    await d.restart_backend()
    d.record("heal")


# -- the venue ----------------------------------------------------------------------
@scenario(failover=FORBIDDEN, venue_delay_s=1.0)
async def venue_latency(d: Drill) -> None:
    """1 s of latency on every REST request of both nodes for 5 s: slower quoting, no failover."""
    d.roles_at_fault = await _pair(d)
    at = d.fault("1 s latency on REST, both nodes")
    for node in d.nodes:
        d.rest_latency(node, 1000)
    took = await d.probe_rest(d.roles_at_fault[0])
    d.expect(took >= 0.9, f"a REST ping through the slowed link took only {took:.3f} s")
    await d.sleep_until(at + 5.0)
    d.record("heal")
    for node in d.nodes:
        d.rest_clear(node)


def _halted_and_resumed(d: Drill, ev: Evidence) -> None:
    primary, standby = d.roles_at_fault
    at = _fault_at(d)
    d.expect(_saw(ev, primary, "role", at, "halted"), f"{primary} never halted without its streams")
    d.expect(not _saw(ev, standby, "role", at, "candidate"),
             f"{standby} contended for the lock in a venue-wide outage (it could not trade either)")


# Both nodes' streams: a primary alone without them for longer than handover_after_s hands the lock to
# its ready peer (primary-venue-down); when the venue fails both, neither is ready, and the lock stays
# put rather than ping-pong (DESIGN §2.3).
@scenario(failover=FORBIDDEN, after=_halted_and_resumed)
async def venue_stream_drop(d: Drill) -> None:
    """Drop both nodes' market and user-data streams for 4 s (a venue-wide stream outage): the primary halts (lock held, quotes cancelled), the standby is not ready either, nobody hands over; then it resumes; no failover."""
    primary, _ = d.roles_at_fault = await _pair(d)
    at = d.fault("venue streams dropped for both nodes")
    for node in d.nodes:
        d.streams_down(node)
    await d.sleep_until(at + 4.0)
    d.record("heal")
    for node in d.nodes:
        d.streams_up(node)
    await d.wait_quoting(primary, 20)


# -- the venue refuses a late order (the recvWindow fence, DESIGN §2.2) --------------
DELAY_MS = 2500  # longer than any lease (ttl 1 s on Redis, 0.5 s on Consul): what the primary sends now arrives after it


def _epoch_at_fault(d: Drill, ev: Evidence, node: str) -> int | None:
    held = [e.epoch for e in ev.node_events if e.node == node and e.kind == "acquired" and e.at <= _fault_at(d)]
    return held[-1] if held else None


def _late_orders_refused(d: Drill, ev: Evidence) -> None:
    _isolated_primary_fenced(d, ev)
    primary = d.roles_at_fault[0]
    epoch = _epoch_at_fault(d, ev, primary)
    refused = [o for o in ev.orders if o.node == primary and o.epoch == epoch and is_late_refusal(o)]
    d.expect(bool(refused), f"the venue refused no late order of {primary}'s epoch: the {DELAY_MS} ms delay on its "
             "REST link never bit (no order of its was sent while delayed)")


# No `venue_delay_s` here: the audit's signed timestamp times every send exactly, and the delayed orders
# must be refused by the venue, so they earn no in-flight allowance on the book.
@scenario(failover=REQUIRED, after=_late_orders_refused)
async def delayed_order(d: Drill) -> None:
    """The primary's REST requests take 2.5 s (its lease: at most 1 s) while it is cut off from its peer and the lock backend: its last orders reach the venue after the standby took over, and the venue refuses them (-1021, outside the recvWindow)."""
    primary, standby = d.roles_at_fault = await _pair(d)
    at = d.fault(f"{primary}: {DELAY_MS} ms on its REST requests, heartbeats cut both ways, its lock link down")
    d.rest_latency(primary, DELAY_MS)  # first, so every order it sends from here on is delayed
    d.partition()
    d.lock_down(primary)
    # A calm market may leave its quotes where they are until its lease ends: take them away, so it sends
    # new ones now, through the slowed link, under the lease it still holds.
    await d.cancel_quotes_of(primary)
    await d.wait_quoting(standby, 15)
    took = await d.probe_rest(primary)
    d.expect(took >= 0.9 * DELAY_MS / 1000, f"a REST ping through {primary}'s slowed link took only {took:.3f} s")
    # Its lease ends about ttl after the fault; what it sent until then lands DELAY_MS later.
    await d.sleep_until(at + d.ttl_s + DELAY_MS / 1000 + 1.0)
    d.record("heal")
    d.rest_clear(primary)
    d.lock_up(primary)
    d.heal_partition()
    await d.wait_role(primary, "standby", 15)


# -- a primary that cannot reach the venue hands the lock over (DESIGN §2.3) --------
def _handed_over(d: Drill, ev: Evidence) -> None:
    primary = d.roles_at_fault[0]
    at = _fault_at(d)
    for role, problem in (("halted", "never halted without the venue"),
                          ("handing-over", "never handed the lock over while unable to trade"),
                          ("standby", "never stood by after handing the lock over")):
        d.expect(_saw(ev, primary, "role", at, role), f"{primary} {problem}")


VENUE_OUTAGE_AFTER_HANDOVER_S = 4.0  # the outage outlasts the hand-over bound by this much


async def _primary_loses_the_venue(d: Drill, what: str, cut, heal, took_effect: Callable[[str], bool]) -> None:
    """`cut(node, seconds)` and `heal(node)` may be plain calls or coroutines."""
    primary, standby = d.roles_at_fault = await _pair(d)
    outage_s = d.handover_after_s + VENUE_OUTAGE_AFTER_HANDOVER_S
    at = d.fault(f"{primary} loses the venue ({what}) for {outage_s:g} s; its heartbeats and lock link work")
    if inspect.isawaitable(done := cut(primary, outage_s)):
        await done
    got = await d.probe_venue(primary)
    d.expect(took_effect(got), f"a REST ping through {primary}'s venue link got {got} ({what} expected)")
    await d.wait_quoting(standby, d.handover_after_s + 15)
    await d.wait_role(primary, "standby", 15)
    await d.sleep_until(at + outage_s)
    d.record("heal")
    if inspect.isawaitable(done := heal(primary)):
        await done


@scenario(failover=REQUIRED, handover=True, after=_handed_over)
async def primary_venue_down(d: Drill) -> None:
    """The primary's REST and stream connections to the venue are refused, heartbeats and lock fine: it halts, and after handover_after_s hands the lock to the ready standby, which quotes; it stands by."""
    await _primary_loses_the_venue(d, "connections refused", lambda node, _: d.venue_down(node), d.venue_up,
                                   lambda got: not got.startswith("HTTP"))


@scenario(failover=REQUIRED, handover=True, after=_handed_over)
async def primary_venue_banned(d: Drill) -> None:
    """The venue answers every request of the primary with HTTP 418 (Binance's IP ban, for the outage's length), heartbeats and lock fine: it halts, and after handover_after_s hands the lock to the ready standby, which quotes; it stands by."""
    await _primary_loses_the_venue(d, "HTTP 418 on every request", d.ban_venue, d.unban_venue,
                                   lambda got: got == "HTTP 418")


# -- an order list rests on the account at a takeover --------------------------------
def _order_list_swept(d: Drill, ev: Evidence) -> None:
    _took_over_and_rejoined(d, ev)
    order_list = d.order_list
    if order_list is None:
        d.expect(False, "no order list was placed")
        return
    standby = d.roles_at_fault[1]
    at = _fault_at(d)
    acquired = next((e.at for e in ev.node_events if e.node == standby and e.kind == "acquired" and e.at > at), None)
    d.expect(d.order_list_open.get("before the takeover") is True, "the order list was not open before the takeover")
    legs = set(order_list.leg_client_ids)
    resting = [life for life in ev.lives if life.client_id in legs]
    d.expect(len(resting) == len(legs) and acquired is not None
             and all(life.start < acquired and (life.end is None or life.end >= acquired) for life in resting),
             f"the venue's record does not have the order list's legs resting when {standby} took the lock")
    swept = [c for c in ev.cancel_alls if c.at > at and c.accepted and legs <= set(c.client_ids)]
    d.expect(bool(swept), "no cancel-all after the kill took the order list's legs (the protective cancel missed it)")
    d.expect(d.order_list_open.get("after the takeover") is False, "the order list was still open after the takeover")


# The list goes on the book while the primary quotes: a primary leaves other clients' orders
# alone (only older epochs are swept), so it rests until the takeover's protective cancel-all.
@scenario(failover=REQUIRED, after=_order_list_swept)
async def order_list_at_takeover(d: Drill) -> None:
    """An OCO from another client of the pair's account rests on the symbol when the primary is SIGKILLed: the standby takes over, its protective cancel takes the order list too (order-list entries in the cancel-all reply), and it quotes."""
    primary, standby = d.roles_at_fault = await _pair(d)
    await d.rest_order_list()
    await asyncio.sleep(0.5)  # long enough for a primary that swept it to have done so
    await d.look_at_order_list("before the takeover")
    d.fault(f"SIGKILL {primary} with an order list resting on the account")
    d.kill(primary)
    await d.wait_quoting(standby, 15)
    await d.look_at_order_list("after the takeover")
    d.start(primary)


# -- the lock backend answers nonsense ------------------------------------------------
def _lost_to_garbage(d: Drill, ev: Evidence) -> None:
    _took_over_and_rejoined(d, ev)
    primary = d.roles_at_fault[0]
    d.expect(_saw(ev, primary, "lost", _fault_at(d)),
             f"{primary} never logged losing its lease to a backend answering nonsense")


@scenario(failover=REQUIRED, after=_lost_to_garbage)
async def backend_garbage(d: Drill) -> None:
    """The primary's lock links reach an HTTP server instead of the lock backend (the standby's still reach it): its renewals get nonsense back, a definite failure; its lease is lost by its safe deadline, it fences and rejoins as standby, the standby takes over."""
    primary, standby = d.roles_at_fault = await _pair(d)
    at = d.fault(f"{primary}'s lock backend answers garbage (its lock links rerouted to an HTTP server)")
    d.lock_garbage(primary)
    got = await d.probe_lock(primary)
    # Nonsense, not silence: an answer in the wrong protocol, neither the backend's own nor a refused or
    # timed-out connection.
    d.expect(all(g.startswith("nonsense") for g in got),
             f"the backend's probe through {primary}'s rerouted lock links got {got} (nonsense expected)")
    await d.wait_quoting(standby, 15)
    await d.sleep_until(at + 4.0)
    d.record("heal")
    d.lock_sane(primary)
    await d.wait_role(primary, "standby", 15)


# -- starts, restarts, switchovers ----------------------------------------------------
def _one_holder(d: Drill, ev: Evidence) -> None:
    acquired = [e for e in ev.node_events if e.kind == "acquired"]
    d.expect(len(acquired) == 1, f"{len(acquired)} lock acquisitions at a simultaneous start (expected one)")


@scenario(failover=FORBIDDEN, after=_one_holder)
async def simultaneous_start(d: Drill) -> None:
    """Both nodes start at the same instant with no holder: exactly one takes the lock and quotes."""
    d.roles_at_fault = await d.ready_pair()
    await asyncio.sleep(2.0)


def _switched(d: Drill, ev: Evidence) -> None:
    switches = [e for e in ev.node_events if e.kind == "acquired" and e.at > d.started]
    d.expect(len(switches) >= 2, "the lock never moved to the other node")


@scenario(failover=FORBIDDEN, overlap_s=0.0, after=_switched)
async def rolling_restart(d: Drill) -> None:
    """Restart the standby, switch over to it, restart the other: one planned hand-over, no overlap, no failover."""
    primary, standby = d.roles_at_fault = await _pair(d)
    d.fault("rolling restart")
    await d.restart(standby)
    await d.ready_pair(primary=primary)
    await d.switchover(standby)
    await d.ready_pair(primary=standby)
    await d.restart(primary)
    await d.ready_pair(primary=standby)


def _loaded(d: Drill, ev: Evidence) -> None:
    _switched(d, ev)
    d.expect(d.loader_orders >= 20, f"only {d.loader_orders} load orders reached the venue")


@scenario(failover=FORBIDDEN, overlap_s=0.0, after=_loaded)
async def switchover_under_load(d: Drill) -> None:
    """Switch over and back while another account takes liquidity at 20 orders/s: no overlap, no failover."""
    primary, standby = d.roles_at_fault = await _pair(d)
    d.start_load(20, 8)
    await asyncio.sleep(1.5)
    d.fault("switchover under load")
    await d.switchover(standby)
    await d.ready_pair(primary=standby)
    await asyncio.sleep(1.5)
    await d.switchover(primary)
    await d.ready_pair(primary=primary)
    await d.load_done(20)


# -- a Consul leader election (DESIGN §3: ridden out on the peer lease) ---------------
LEADER_DOWN_S = 4.0  # from the kill to the restart of the killed server: the election, and renewals after it


def _rode_out_the_election(d: Drill, ev: Evidence) -> None:
    primary, standby = d.roles_at_fault
    at = _fault_at(d)
    epoch = _epoch_at_fault(d, ev, primary)
    d.expect(_saw(ev, primary, "renew-failed", at),
             f"{primary} never failed a renewal: the leader's death did not stop the lock's writes")
    d.expect(not _saw(ev, primary, "lost", at), f"{primary} lost its lease during the election")
    taken = [e for e in ev.node_events if e.kind == "acquired" and e.at > at]
    d.expect(not taken, "the lock was acquired during or after the election: "
             + ", ".join(f"{e.node} epoch {e.epoch}" for e in taken))
    on_peer = [e for e in ev.node_events if e.node == primary and e.kind == "peer-lease" and e.at > at]
    start = next((e.at for e in on_peer if not e.detail.startswith("no longer")), None)
    d.expect(start is not None, f"{primary} never traded on the peer lease: the election was shorter than its "
             "own lease, or it stopped trading")
    if start is None:
        return
    end = next((e.at for e in on_peer if e.at > start and e.detail.startswith("no longer")), ev.ended)
    carried = [o for o in ev.orders if o.node == primary and o.epoch == epoch and o.accepted and start < o.recv < end]
    d.expect(bool(carried), f"{primary} placed no order while the peer lease alone carried it (DESIGN §2.4)")


@scenario(failover=FORBIDDEN, backends=("consul",), lock_servers=3, after=_rode_out_the_election)
async def consul_leader_kill(d: Drill) -> None:
    """SIGKILL the leader of the three Consul servers while the pair trades: no write until the other two elect a new leader (1-3 s, longer than the lock's 0.5 s TTL); the primary trades on through it on the peer lease (DESIGN §2.4), keeps its epoch, nothing changes hands; the killed server is restarted and rejoins."""
    primary, standby = d.roles_at_fault = await _pair(d)
    before = await d.status(primary)
    leader = d.lock_leader()
    at = d.fault(f"SIGKILL the Consul leader {leader}")
    d.kill_lock_server(leader)
    await d.wait(lambda s: bool(s[primary]) and s[primary]["ha"]["failsafe"]["on_peer_lease"], 10,
                 f"{primary} to trade on the peer lease")
    # A calm market may leave its quotes where they are through the election: take them away, so it
    # must send new ones while nothing but the peer lease lets it.
    await d.cancel_quotes_of(primary)
    elected = await d.wait_lock_leader(20, not_this=leader)
    d.record("note", None, f"{elected} leads {time.time() - at:.3f} s after the kill")
    await d.wait(lambda s: bool(s[primary]) and not s[primary]["ha"]["failsafe"]["on_peer_lease"]
                 and _role(s[primary]) == "primary", 10, f"{primary} to renew its own lease with the new leader")
    await d.sleep_until(at + LEADER_DOWN_S)
    d.record("heal")
    d.start_lock_server(leader)
    await d.wait_lock_server_ready(leader, 30)
    after = await d.status(primary)
    d.expect(after is not None and after["ha"]["epoch"] == before["ha"]["epoch"] and after["ha"]["role"] == "primary",
             f"{primary} went into the election primary at epoch {before['ha']['epoch']} and came out "
             f"{_role(after)} at epoch {(after or {}).get('ha', {}).get('epoch')}")


def names(lock: str | None = None) -> list[str]:
    return [n for n, s in SCENARIOS.items() if lock is None or applies_to(s, lock)]


def silent_primary(lock: str | None = None) -> list[str]:
    return [n for n, s in SCENARIOS.items() if s.silent_primary and (lock is None or applies_to(s, lock))]

