"""Prometheus metrics, read from the engine (and, on a cluster node, the
failover controller) at scrape time, so they can never disagree with what
/status says. Every metric carries the `node` label.

Counters whose labels are known in advance (roles, risk checks, heartbeat
rejection reasons, takeover reasons, order outcomes) are exported from zero,
so that `increase()` sees their first step — a series born at 1 has no
increase. The catalogue of names, types and meanings is in the README
("Operations"); the alert rules and the dashboard use nothing else, and a
test keeps it so against a real scrape.
"""
import time

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from .. import __version__
from .histogram import TAKEOVER_BOUNDS_S, Histogram, Snapshot
from .messages import SymbolStatus
from .risk import CHECKS

ROLES = ("starting", "standby", "candidate", "primary", "halted", "fenced", "handing-over")
HEARTBEAT_REJECTIONS = ("malformed", "bad-mac", "version", "own", "unknown-peer", "stale", "replayed")
ORDER_OUTCOMES = ("FILLED", "CANCELED", "REJECTED", "EXPIRED", "GONE")
TAKEOVER_REASONS = ("peer-silent", "no-primary", "switchover", "other")
# The controller's takeover timings are offsets from detection; phases are the steps between them.
TAKEOVER_PHASES = (("acquire", "detected", "acquired"), ("protective_cancel", "acquired", "protective_cancel_done"),
                   ("reconcile", "protective_cancel_done", "reconciled"), ("first_quote", "reconciled", "first_quote"),
                   ("total", "detected", "first_quote"))
SYMBOL_STATUSES = (*(s.name for s in SymbolStatus), "UNKNOWN")
NEVER = 1e9  # exported instead of +Inf ("never heard"): comparisons and graphs stay usable


def takeover_reason(text: str) -> str:
    """The role machine's free-text reason for becoming candidate, as a label value."""
    if "hands the lock over" in text:
        return "switchover"
    if "silent for" in text or "never heard" in text:
        return "peer-silent"
    if "no primary" in text:
        return "no-primary"
    return "other"


class _HaRecorder:
    """What the controller keeps only as a bounded recent list (the last 100
    takeovers, the last 1000 renew latencies), turned into cumulative counts
    at scrape time."""

    def __init__(self):
        self.takeovers_seen = 0
        self.takeovers = dict.fromkeys(TAKEOVER_REASONS, 0)
        self.phases = {name: Histogram(TAKEOVER_BOUNDS_S) for name, _, _ in TAKEOVER_PHASES}
        self.renewals_seen = 0
        self.renew_latency = Histogram()

    def sync(self, ha) -> None:
        new = ha.failovers - self.takeovers_seen
        if new > 0:
            self.takeovers_seen = ha.failovers
            recent = list(ha.completed_takeovers)[-new:]
            self.takeovers["other"] += new - len(recent)  # more than the controller remembers: counted, untimed
            for reason, timings in recent:
                self.takeovers[takeover_reason(reason)] += 1
                for name, start, end in TAKEOVER_PHASES:
                    if start in timings and end in timings:
                        self.phases[name].observe(timings[end] - timings[start])
        lock = ha.lock
        new = lock.renewals - self.renewals_seen
        if new > 0:
            self.renewals_seen = lock.renewals
            for latency in lock.renew_latency_s[-new:]:
                self.renew_latency.observe(latency)


class EngineCollector:
    def __init__(self, engine):
        self.engine = engine
        self._ha = _HaRecorder()

    def describe(self):
        return []

    def collect(self):
        e = self.engine
        now = e.clock()
        node = e.node_id
        info = GaugeMetricFamily("understudy_node_info", "always 1; the node's mode, peer and version",
                                 labels=["node", "mode", "peer", "version"])
        info.add_metric([node, e.cfg.node.mode, e.cfg.cluster.peer if e.cfg.cluster else "", __version__], 1.0)
        yield info
        yield _labelled(GaugeMetricFamily, "understudy_role", "1 for the node's current role", node, "role",
                        {name: 1.0 if e.role == name else 0.0 for name in ROLES})
        yield _gauge("understudy_lock_held", "1 while this node holds a lease it may trade on", node,
                     1.0 if e.lease and e.lease.may_trade(now) else 0.0)
        yield _gauge("understudy_lock_epoch", "epoch of the lease held; -1 without one", node,
                     e.lease.epoch if e.lease else -1)
        yield _counter("understudy_self_fences", "times this node fenced itself after losing its lease", node,
                       e.role_entries.get("fenced", 0))
        yield _labelled(GaugeMetricFamily, "understudy_ready", "1 while a readiness check passes", node, "check",
                        {check: 1.0 if ok else 0.0 for check, ok in e.readiness().items()})
        yield _gauge("understudy_quoting", "1 while quotes are being made", node, 1.0 if e.quoting else 0.0)
        yield _gauge("understudy_panic", "1 while PanicStop is latched", node, 1.0 if e.panic_reason else 0.0)
        yield from self._market(e, node, now)
        yield from self._orders(e, node)
        if e.account is not None and e.instrument is not None:
            yield _gauge("understudy_position", "base held minus the inventory target", node, e.account.position)
            yield _gauge("understudy_daily_pnl", "trading PnL since the UTC day began, in quote", node, e.daily_pnl())
            yield _labelled(GaugeMetricFamily, "understudy_balance", "account balance (free + locked)", node, "asset",
                            {a: e.account.total(a) for a in (e.instrument.base, e.instrument.quote)})
        ha = getattr(e, "ha", None)
        if ha is not None:
            self._ha.sync(ha)
            yield from self._ha_metrics(ha, node)

    def _market(self, e, node: str, now: float):
        yield _gauge("understudy_book_age_seconds", "age of the local order book", node, min(e.book.age(now), NEVER))
        yield _counter("understudy_book_resyncs", "book resyncs after a sequence gap", node, e.book.resyncs)
        mid = e.book.mid() if e.book.is_live() else None
        if mid is not None:
            yield _gauge("understudy_mid_price", "mid of the local book", node, mid)
        md, us = e.marketdata, e.userstream
        yield _labelled(CounterMetricFamily, "understudy_ws_reconnects", "stream reconnections", node, "stream",
                        {"market": md.reconnects if md else 0, "user": us.reconnects if us else 0})
        if md is not None:
            yield _histogram("understudy_depth_lag_seconds", "venue event time to receipt of depth updates", node,
                             {(): md.lag.snapshot()})

    def _orders(self, e, node: str):
        yield _gauge("understudy_open_orders", "live orders tracked by the OMS", node, e.oms.count())
        quotes = {}
        for o in e.oms.working().values():
            best = quotes.get(o.side)
            if best is None or (o.price > best if o.side == "BUY" else o.price < best):
                quotes[o.side] = o.price
        yield _labelled(GaugeMetricFamily, "understudy_quote_price", "best own working quote per side", node,
                        "side", quotes)
        yield _counter("understudy_orders_sent", "orders the gate let through to the venue", node,
                       e.gate.sent if e.gate else 0)
        yield _labelled(CounterMetricFamily, "understudy_orders", "orders by final outcome", node, "outcome",
                        {**dict.fromkeys(ORDER_OUTCOMES, 0), **e.oms.outcomes})
        yield _histogram("understudy_order_ack_seconds", "order sent to the venue's REST reply", node,
                         {(): e.oms.ack_latency.snapshot()})
        yield _histogram("understudy_cancel_seconds", "cancel sent to its confirmation", node,
                         {(): e.oms.cancel_latency.snapshot()})
        refusals = dict(e.gate.refusals) if e.gate else {}
        yield _labelled(CounterMetricFamily, "understudy_gate_refusals", "orders the gate refused, by reason", node,
                        "reason", refusals)
        yield _labelled(CounterMetricFamily, "understudy_risk_rejections", "orders a risk check refused", node, "check",
                        {check: refusals.get(check, 0) for check in CHECKS})
        yield _labelled(CounterMetricFamily, "understudy_venue_errors", "venue errors by code (0: no answer)", node,
                        "code", {str(code): n for code, n in (e.rest.errors_by_code.items() if e.rest else ())})
        yield _counter("understudy_fills", "fills received", node, e.fills)
        yield _labelled(CounterMetricFamily, "understudy_filled_base", "base quantity filled, by side", node, "side",
                        dict(e.filled_qty))
        yield _counter("understudy_orphans_cancelled", "older-epoch orders this node cancelled", node,
                       e.orphans_cancelled)
        yield _counter("understudy_orphan_cancel_failures", "older-epoch orders whose cancel failed (swept again "
                       "at the next sighting or reconcile)", node, e.orphan_sweeps_failed)
        yield from self._venue_clock(e, node)
        yield from self._venue_wire(e, node)
        yield _labelled(CounterMetricFamily, "understudy_task_failures", "unexpected failures of supervised tasks, "
                        "by task", node, "task", {**e.supervisor.failures,
                                                  **(e.ha.supervisor.failures if getattr(e, "ha", None) else {})})

    def _venue_clock(self, e, node: str):
        """The recvWindow fence rests on these: an order's window is its lease less the uncertainty."""
        estimate = e.venue_clock.estimate(e.clock())
        yield _gauge("understudy_venue_clock_offset_seconds", "venue time minus this node's clock, as estimated",
                     node, estimate.offset_ms / 1000 if estimate else 0.0)
        yield _gauge("understudy_venue_clock_uncertainty_seconds", "how far the venue clock estimate may be off "
                     "(above the configured maximum the node does not trade)", node,
                     estimate.uncertainty_ms / 1000 if estimate else NEVER)
        yield _counter("understudy_venue_clock_probe_failures", "venue time probes that got no answer", node,
                       e.venue_clock.failures)

    def _venue_wire(self, e, node: str):
        """The symbol as the venue describes it, the streams' early reconnects, and what the node
        could not read from the venue (decode_ledger.py)."""
        rules = e.instrument.rules if e.instrument is not None else None
        status = rules.status.name if rules is not None else None
        yield _labelled(GaugeMetricFamily, "understudy_symbol_status", "1 for the symbol's status in the venue's "
                        "last exchangeInfo (UNKNOWN: a status the node does not know)", node, "status",
                        {name: 1.0 if status == name else 0.0 for name in SYMBOL_STATUSES})
        yield _gauge("understudy_symbol_tradable", "1 while the venue lets the symbol trade (status TRADING, "
                     "no 'Market is closed.' refusal since)", node, 0.0 if e.symbol_problem() else 1.0)
        md, us = e.marketdata, e.userstream
        yield _labelled(CounterMetricFamily, "understudy_stream_handovers", "early reconnects after a "
                        "serverShutdown notice, the old connection kept until the new one took over", node,
                        "stream", {"market": md.handovers if md else 0, "user": us.handovers if us else 0})
        yield _labelled(CounterMetricFamily, "understudy_server_shutdown_notices", "serverShutdown events "
                        "received", node, "stream", {"market": md.shutdown_notices if md else 0,
                                                     "user": us.shutdown_notices if us else 0})
        ledger = e.ledger
        family = CounterMetricFamily("understudy_venue_undecodable", "venue messages that did not decode, by "
                                     "source and message", labels=["node", "source", "message"])
        for (source, message), n in ledger.undecodable.items():
            family.add_metric([node, source, message], float(n))
        yield family
        family = CounterMetricFamily("understudy_venue_unknown_values", "documented messages carrying a value "
                                     "outside the documented set, by message and field",
                                     labels=["node", "message", "field"])
        for (message, field), n in ledger.unknown_values.items():
            family.add_metric([node, message, field], float(n))
        yield family
        family = CounterMetricFamily("understudy_venue_unknown_events", "venue event types the node does not "
                                     "know (ignored), by source", labels=["node", "source", "event"])
        for (source, event), n in ledger.unknown_events.items():
            family.add_metric([node, source, event], float(n))
        yield family
        yield _labelled(CounterMetricFamily, "understudy_execution_reports", "execution reports that are no fill "
                        "or change an order's size", node, "kind",
                        {"zero_qty_trade": e.oms.zero_qty_trades, "prevented_match": e.oms.prevented_matches,
                         "amendment": e.oms.amendments})

    def _ha_metrics(self, ha, node: str):
        peer = ha.link.last_peer
        age = (time.time_ns() // 1_000_000 - peer.sent_ms) / 1000 if peer else NEVER
        yield _gauge("understudy_peer_heartbeat_age_seconds", "age of the last valid heartbeat from the peer", node,
                     min(age, NEVER))
        yield _gauge("understudy_peer_ready", "1 while the peer's last heartbeat said it was ready", node,
                     1.0 if peer and peer.ready.all else 0.0)
        yield _gauge("understudy_paused", "1 while the cluster-wide pause flag is set", node,
                     1.0 if ha.state.paused else 0.0)
        yield _gauge("understudy_nofailover", "1 when this node is configured never to take the lock", node,
                     1.0 if ha.settings.nofailover else 0.0)
        lease = ha.lock.lease
        yield _gauge("understudy_lease_seconds_left", "time left on this node's lease", node,
                     lease.time_left(ha.clock()) if lease else 0.0)
        yield _counter("understudy_heartbeats_sent", "heartbeats sent to the peer", node, ha.link.sent)
        yield _counter("understudy_heartbeats_received", "valid heartbeats from the peer", node,
                       ha.link.receiver.accepted)
        yield _labelled(CounterMetricFamily, "understudy_heartbeats_rejected", "heartbeats dropped, by reason", node,
                        "reason", {**dict.fromkeys(HEARTBEAT_REJECTIONS, 0), **ha.link.receiver.rejected})
        yield _labelled(CounterMetricFamily, "understudy_takeovers", "times this node took the lock, by reason",
                        node, "reason", self._ha.takeovers)
        yield _histogram("understudy_takeover_seconds", "takeover steps, from detection (phase total) or between "
                         "steps", node, {(name,): h.snapshot() for name, h in self._ha.phases.items()}, ["phase"])
        yield _histogram("understudy_lease_renew_seconds", "lease renewal round trips", node,
                         {(): self._ha.renew_latency.snapshot()})
        yield _counter("understudy_lease_renew_failures", "lease renewals that got no answer", node,
                       ha.lock.renew_failures)
        yield _counter("understudy_lock_server_failovers", "lock backend calls that moved on to another server "
                       "(one did not answer in its share of the deadline)", node, ha.lock.backend.server_failovers)
        yield _counter("understudy_lease_renew_errors", "lease renewals answered with nonsense or failing "
                       "unforeseen (each ended the lease)", node, ha.lock.renew_errors)
        yield _labelled(CounterMetricFamily, "understudy_ha_step_failures", "unexpected failures of takeover and "
                        "fencing steps (retried), by step", node, "step", ha.step_failures)
        yield _counter("understudy_handovers_unable", "times this node handed the lock on because it could not "
                       "trade", node, ha.handovers_unable)
        yield _counter("understudy_heartbeats_late", "valid heartbeats that arrived after a newer one", node,
                       ha.link.receiver.late)
        # The failsafe (DESIGN §2.4): trading through a lock backend outage on the standby's word.
        now = ha.clock()
        yield _gauge("understudy_failsafe_active", "1 while this node trades on the peer lease alone", node,
                     1.0 if ha.lock.on_failsafe(now) else 0.0)
        yield _counter("understudy_failsafe_entries", "times this node started trading on the peer lease alone",
                       node, ha.failsafe_entries)
        yield _gauge("understudy_peer_lease_seconds_left", "time left on the peer lease the standby granted", node,
                     ha.peer_lease.time_left(now))


def _gauge(name: str, doc: str, node: str, value: float) -> GaugeMetricFamily:
    g = GaugeMetricFamily(name, doc, labels=["node"])
    g.add_metric([node], float(value))
    return g


def _counter(name: str, doc: str, node: str, value: float) -> CounterMetricFamily:
    c = CounterMetricFamily(name, doc, labels=["node"])
    c.add_metric([node], float(value))
    return c


def _labelled(kind, name: str, doc: str, node: str, label: str, values: dict):
    family = kind(name, doc, labels=["node", label])
    for key, value in values.items():
        family.add_metric([node, str(key)], float(value))
    return family


def _histogram(name: str, doc: str, node: str, series: dict[tuple, Snapshot],
               labels: list[str] | None = None) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=["node", *(labels or [])])
    for label_values, snap in series.items():
        cumulative, buckets = 0, []
        for bound, count in zip([*snap.bounds, float("inf")], snap.counts):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        family.add_metric([node, *label_values], buckets, snap.total)
    return family
