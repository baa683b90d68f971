"""The daily report's figures, from the day's node log records and lock
history. Pure: the reading is in `sources.py`, the text in `render.py`.

The `ops stats` lines carry deltas, so the day's counts are their sums, and
its latency quantiles come from the summed histogram buckets (the way
Prometheus' histogram_quantile reads them). A line is counted in the day its
interval ended in.
"""
import datetime
from collections import Counter, defaultdict

from ..coordinator.backend import HistoryEntry
from ..node.histogram import Snapshot
from ..node.metrics import takeover_reason
from ..node.risk import CHECKS
from .sources import Window

STATS = "ops stats"
LATENCIES = {"order_ack_s": "order_ack", "cancel_s": "cancel", "depth_lag_s": "depth_lag"}
COVERAGE_WARNING = 0.9  # a node whose stats lines cover less of the day is named in the notes


def build(window: Window, records: list[dict], history: list[HistoryEntry] | None,
          now: datetime.datetime) -> dict:
    """The report as plain data (what --json prints)."""
    day_s = max(0.0, (min(window.end, now) - window.start).total_seconds())
    stats = [r for r in records if r["event"] == STATS]
    nodes = sorted({r["node"] for r in records})
    counts = _sum_counts(r.get("counts", {}) for r in stats)
    latency = _latency(stats)
    report = {
        "date": window.day.isoformat(),
        "complete_day": now >= window.end,
        "nodes": nodes,
        "sources": {"log_records": len(records), "stats_lines": len(stats), "lock_history": history is not None},
        "coverage": _coverage(stats, nodes, day_s),
        "failovers": _failovers(records, history),
        "self_fences": [{"at": _iso(r["_at"]), "node": r["node"], "reason": r.get("reason", "")}
                        for r in records if r["event"] == "role changed" and r.get("new") == "fenced"],
        "streams": {"market_reconnects": counts.get("market_reconnects", 0),
                    "user_reconnects": counts.get("user_reconnects", 0),
                    "book_resyncs": counts.get("book_resyncs", 0),
                    "depth_lag_s": latency["depth_lag"]},
        "quoting": _quoting(stats, counts, day_s),
        "orders": _orders(counts, latency),
        "risk": _risk(records, counts),
        "balances": _balances(stats),
    }
    report["notes"] = _notes(report, nodes, stats)
    return report


def _iso(at: datetime.datetime) -> str:
    return at.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sum_counts(deltas) -> dict:
    total: dict = {}
    for delta in deltas:
        _add(total, delta)
    return total


def _add(total: dict, delta: dict) -> None:
    for key, value in delta.items():
        if isinstance(value, dict):
            _add(total.setdefault(key, {}), value)
        elif isinstance(value, (int, float)):
            total[key] = round(total.get(key, 0) + value, 9)


def _latency(stats: list[dict]) -> dict:
    merged: dict[str, Snapshot | None] = dict.fromkeys(LATENCIES.values())
    for record in stats:
        for field, name in LATENCIES.items():
            data = (record.get("latency") or {}).get(field)
            if not data:
                continue
            snap = Snapshot.from_json(data)
            # Buckets changed by an upgrade mid-day: the later ones win rather than mixing.
            merged[name] = snap if merged[name] is None or merged[name].bounds != snap.bounds else merged[name].plus(snap)
    return {name: _quantiles(snap) for name, snap in merged.items()}


def _quantiles(snap: Snapshot | None) -> dict:
    if snap is None or snap.count == 0:
        return {"count": 0, "p50": None, "p99": None, "mean": None}
    return {"count": snap.count, "p50": round(snap.quantile(0.5), 6), "p99": round(snap.quantile(0.99), 6),
            "mean": round(snap.total / snap.count, 6)}


def _coverage(stats: list[dict], nodes: list[str], day_s: float) -> dict:
    covered = Counter()
    for record in stats:
        covered[record["node"]] += float(record.get("interval_s", 0))
    return {node: {"seconds": round(covered[node], 1),
                   "fraction": round(min(1.0, covered[node] / day_s), 4) if day_s else 0.0} for node in nodes}


def _failovers(records: list[dict], history: list[HistoryEntry] | None) -> dict:
    """Every acquisition of the lock. The lock history is the cluster's own
    record (both nodes, with timings); without it, the nodes' takeover lines."""
    if history is not None:
        changes = [{"at": _iso(datetime.datetime.fromtimestamp(e.at, datetime.UTC)), "epoch": e.epoch,
                    "from": e.from_node, "to": e.to_node, "reason": e.reason,
                    "kind": takeover_reason(e.reason), "timings_s": dict(e.timings)} for e in history]
    else:
        changes, reason_of = [], {}
        for r in records:
            if r["event"] == "role changed" and r.get("new") == "candidate":
                reason_of[r["node"]] = r.get("reason", "")
            elif r["event"] == "takeover complete":
                reason = reason_of.pop(r["node"], "")
                changes.append({"at": _iso(r["_at"]), "epoch": r.get("epoch"), "from": None, "to": r["node"],
                                "reason": reason, "kind": takeover_reason(reason),
                                "timings_s": {k[:-2]: v for k, v in r.items() if k.endswith("_s")}})
    kinds = Counter(c["kind"] for c in changes)
    to_quote = [c["timings_s"]["first_quote"] for c in changes
                if c["kind"] == "peer-silent" and "first_quote" in c["timings_s"]]
    return {"count": len(changes), "unplanned": kinds.get("peer-silent", 0), "by_kind": dict(kinds),
            "worst_detect_to_quote_s": max(to_quote) if to_quote else None, "changes": changes}


def _quoting(stats: list[dict], counts: dict, day_s: float) -> dict:
    by_role = defaultdict(float)
    quoting_s = 0.0
    for record in stats:
        by_role[record.get("of_role", "?")] += float(record.get("interval_s", 0))
        quoting_s += float(record.get("quoting_s", 0))
    return {"quoting_s": round(quoting_s, 1),
            "quoting_fraction": round(min(1.0, quoting_s / day_s), 4) if day_s else 0.0,
            "seconds_by_role": {role: round(s, 1) for role, s in sorted(by_role.items())},
            "fills": counts.get("fills", 0), "bought": counts.get("bought", 0), "sold": counts.get("sold", 0),
            "orphans_cancelled": counts.get("orphans_cancelled", 0)}


def _orders(counts: dict, latency: dict) -> dict:
    sent = counts.get("orders_sent", 0)
    outcomes = counts.get("outcomes", {})
    rejected = outcomes.get("REJECTED", 0)
    return {"sent": sent, "outcomes": outcomes, "rejected": rejected,
            "reject_rate": round(rejected / sent, 6) if sent else 0.0,
            "cancel_errors": counts.get("cancel_errors", 0),
            "venue_errors": counts.get("venue_errors", {}), "gate_refusals": counts.get("gate_refusals", {}),
            "ack_latency_s": latency["order_ack"], "cancel_latency_s": latency["cancel"]}


def _risk(records: list[dict], counts: dict) -> dict:
    refusals = counts.get("gate_refusals", {})
    halts = []
    for r in records:
        reasons = r.get("reasons") or []
        if r["event"] == "quoting halted" and any(reason in CHECKS for reason in reasons):
            halts.append({"at": _iso(r["_at"]), "node": r["node"], "reasons": reasons})
    return {
        "rejections": {check: refusals[check] for check in CHECKS if refusals.get(check)},
        "halts": halts,
        "panic_stops": [{"at": _iso(r["_at"]), "node": r["node"], "reason": r.get("reason", "")}
                        for r in records if r["event"] == "PANIC STOP"],
        "panic_clears": [{"at": _iso(r["_at"]), "node": r["node"]}
                         for r in records if r["event"] == "panic stop cleared by operator"],
    }


def _balances(stats: list[dict]) -> dict | None:
    """The latest account state any node wrote (both nodes trade one account)."""
    latest = next((r for r in reversed(stats) if r.get("account")), None)
    if latest is None:
        return None
    account = dict(latest["account"])
    account.update(at=_iso(latest["_at"]), node=latest["node"])
    if "day_base" in account and "base" in account:
        account["base_change"] = round(account["base"] - account["day_base"], 9)
        account["quote_change"] = round(account["quote"] - account["day_quote"], 9)
    return account


def _notes(report: dict, nodes: list[str], stats: list[dict]) -> list[str]:
    notes = []
    if not stats:
        notes.append("no 'ops stats' lines for this day in the logs given: counts and latencies are missing")
    for node, cover in report["coverage"].items():
        if stats and cover["fraction"] < COVERAGE_WARNING:
            notes.append(f"{node}: stats cover {cover['fraction']:.0%} of the day (down, restarted, or its log "
                         "is incomplete)")
    if report["failovers"]["unplanned"]:
        notes.append(f"{report['failovers']['unplanned']} unplanned failover(s): see docs/runbooks/alerts.md"
                     "#understudyfailover")
    if report["risk"]["panic_stops"]:
        notes.append("PanicStop was pulled: see docs/runbooks/alerts.md#understudypanicstop")
    if not report["sources"]["lock_history"]:
        notes.append("no --config: failovers are read from the node logs, not the lock history")
    return notes
