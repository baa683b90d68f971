"""Prometheus metrics, read from the engine at scrape time so they can never
disagree with what /status says."""
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

ROLES = ("starting", "standby", "candidate", "primary", "halted", "fenced", "handing-over")


class EngineCollector:
    def __init__(self, engine):
        self.engine = engine

    def describe(self):
        return []

    def collect(self):
        e = self.engine
        now = e.clock()
        node = e.node_id
        role = GaugeMetricFamily("understudy_role", "1 for the node's current role", labels=["node", "role"])
        for name in ROLES:
            role.add_metric([node, name], 1.0 if e.role == name else 0.0)
        yield role
        yield _gauge("understudy_lock_held", "1 while this node may trade", node,
                     1.0 if e.lease and e.lease.may_trade(now) else 0.0)
        yield _gauge("understudy_lock_epoch", "epoch of the lease held", node, e.lease.epoch if e.lease else -1)
        yield _gauge("understudy_quoting", "1 while quotes are being made", node, 1.0 if e.quoting else 0.0)
        yield _gauge("understudy_panic", "1 while PanicStop is latched", node, 1.0 if e.panic_reason else 0.0)
        yield _gauge("understudy_book_age_seconds", "age of the local order book", node,
                     min(e.book.age(now), 1e9))
        yield _gauge("understudy_book_resyncs", "book resyncs after a sequence gap", node, e.book.resyncs)
        yield _gauge("understudy_open_orders", "live orders tracked by the OMS", node, e.oms.count())
        if e.account is not None:
            yield _gauge("understudy_position", "base held minus the inventory target", node, e.account.position)
            yield _gauge("understudy_daily_pnl", "trading PnL since the UTC day began, in quote", node, e.daily_pnl())
        fills = CounterMetricFamily("understudy_fills", "fills received", labels=["node"])
        fills.add_metric([node], e.fills)
        yield fills
        outcomes = CounterMetricFamily("understudy_orders", "orders by final outcome", labels=["node", "outcome"])
        for outcome, count in e.oms.outcomes.items():
            outcomes.add_metric([node, outcome], count)
        yield outcomes
        if e.gate is not None:
            refusals = CounterMetricFamily("understudy_gate_refusals", "orders the gate refused, by reason",
                                           labels=["node", "reason"])
            for reason, count in e.gate.refusals.items():
                refusals.add_metric([node, reason], count)
            yield refusals
        ha = getattr(e, "ha", None)
        if ha is not None:
            yield from _ha_metrics(ha, node)
        if e.rest is not None:
            errors = CounterMetricFamily("understudy_venue_errors", "venue errors by code", labels=["node", "code"])
            for code, count in e.rest.errors_by_code.items():
                errors.add_metric([node, str(code)], count)
            yield errors


def _gauge(name: str, doc: str, node: str, value: float) -> GaugeMetricFamily:
    g = GaugeMetricFamily(name, doc, labels=["node"])
    g.add_metric([node], float(value))
    return g


def _ha_metrics(ha, node: str):
    import time

    peer = ha.link.last_peer
    age = (time.time_ns() // 1_000_000 - peer.sent_ms) / 1000 if peer else float("inf")
    yield _gauge("understudy_peer_heartbeat_age_seconds", "age of the last valid heartbeat from the peer", node,
                 min(age, 1e9))
    yield _gauge("understudy_paused", "1 while the cluster-wide pause flag is set", node,
                 1.0 if ha.state.paused else 0.0)
    yield _gauge("understudy_lease_seconds_left", "time left on this node's lease", node,
                 ha.lock.lease.time_left(ha.clock()) if ha.lock.lease else 0.0)
    received = CounterMetricFamily("understudy_heartbeats_received", "valid heartbeats from the peer", labels=["node"])
    received.add_metric([node], ha.link.receiver.accepted)
    yield received
    rejected = CounterMetricFamily("understudy_heartbeats_rejected", "heartbeats dropped, by reason",
                                   labels=["node", "reason"])
    for reason, count in ha.link.receiver.rejected.items():
        rejected.add_metric([node, reason], count)
    yield rejected
    failovers = CounterMetricFamily("understudy_takeovers", "times this node took the lock", labels=["node"])
    failovers.add_metric([node], ha.failovers)
    yield failovers
    renewals = CounterMetricFamily("understudy_lease_renew_failures", "lease renewals that got no answer",
                                   labels=["node"])
    renewals.add_metric([node], ha.lock.renew_failures)
    yield renewals
