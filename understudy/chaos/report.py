"""A drill's report: the timeline as text, a summary JSON and a PNG plot of
roles, epochs and live orders per node over time."""
import datetime
import json
from dataclasses import dataclass, field
from pathlib import Path

from .checker import Verdict
from .evidence import Evidence
from .venue_record import OUTSIDE_RECV_WINDOW, is_late_refusal

MAX_LISTED_VIOLATIONS = 20


@dataclass
class DrillResult:
    scenario: str
    run: int
    failover: str
    verdict: Verdict
    evidence: Evidence
    problems: list[str] = field(default_factory=list)  # the scenario's own expectations, unmet
    error: str | None = None  # the drill could not do what the scenario asked

    @property
    def ok(self) -> bool:
        return self.verdict.ok and not self.problems and self.error is None


def anomalies(ev: Evidence) -> list[str]:
    """Odd things that are not invariant violations, for a person to look at."""
    found = [f"{e.node} acquired the lock while {e.role} (t={e.at - ev.started:.3f}): an acquire loop outlived "
             "the role that started it" for e in ev.node_events if e.kind == "acquired" and e.role not in (None, "candidate")]
    for e in ev.drill_events:
        if e.kind == "exited" and "SIGKILL" in e.detail:
            asked = max((s.at for s in ev.drill_events if s.kind == "stop" and s.node == e.node and s.at <= e.at),
                        default=e.at)
            sent = sum(1 for o in ev.orders if o.node == e.node and asked < o.recv <= e.at)
            found.append(f"{e.node} {e.detail} (t={asked - ev.started:.3f}), and sent {sent} orders meanwhile")
    return found


def _t(ev: Evidence, at: float) -> str:
    return f"{at - ev.started:8.3f}"


def summary(result: DrillResult) -> dict:
    ev, v = result.evidence, result.verdict
    index = {r.epoch: r.index for r in v.epochs}
    rel = lambda at: round(at - ev.started, 4) if at is not None else None  # noqa: E731
    return {
        "scenario": result.scenario, "run": result.run, "ok": result.ok, "failover": result.failover,
        "takeover_s": round(v.takeover_s, 4) if v.takeover_s is not None else None,
        "failovers": v.failovers, "switchovers": v.switchovers,
        "violations": sum(len(i.violations) for i in v.invariants),
        "invariants": {i.key: {"title": i.title, "ok": i.ok, "violation_count": len(i.violations),
                               "violations": i.violations[:MAX_LISTED_VIOLATIONS], "facts": i.facts}
                       for i in v.invariants},
        "checks": {"ok": not result.problems, "problems": result.problems},
        "anomalies": anomalies(ev),
        "error": result.error,
        "epochs": [{"index": r.index, "epoch": r.epoch, "node": r.node, "change": r.change,
                    "acquired_t": rel(r.acquired), "ended_t": rel(r.ended), "end_reason": r.end_reason,
                    "first_order_acked_t": rel(r.first_order_acked), "orders": r.orders} for r in v.epochs],
        "orders": {"requests": len(ev.orders), "accepted": sum(o.accepted for o in ev.orders),
                   "refused_late": sum(is_late_refusal(o) for o in ev.orders),
                   "foreign": sum(o.client_id in ev.foreign_client_ids for o in ev.orders)},
        "overlaps": [{"start_t": rel(o.start), "duration_s": round(o.duration, 4),
                      "epochs": [index.get(e) for e in o.epochs]} for o in v.overlaps[:MAX_LISTED_VIOLATIONS]],
        "late_refusals": [{"node": r.node, "epoch": r.epoch, "epoch_index": index.get(r.epoch), "count": r.count,
                           "first_t": rel(r.first), "last_t": rel(r.last), "after_newer_epoch": r.after_newer,
                           "max_late_s": round(r.max_late_s, 4) if r.max_late_s is not None else None,
                           "recv_window_ms": [round(w * 1000) for w in r.recv_windows_s] if r.recv_windows_s
                           else None} for r in v.late_refusals],
        "drill_events": [{"t": rel(e.at), "kind": e.kind, "node": e.node, "detail": e.detail}
                         for e in ev.drill_events],
        "started": datetime.datetime.fromtimestamp(ev.started, datetime.UTC).isoformat(timespec="milliseconds"),
        "duration_s": round(ev.ended - ev.started, 3),
    }


def _venue_lines(ev: Evidence, v: Verdict, index: dict) -> list[tuple[float, str, str]]:
    lines = []
    for c in ev.cancel_alls:
        outcome = (f"{c.cancelled} cancelled" if c.accepted else "nothing open" if c.code == -2011
                   else f"rejected, code {c.code}")
        foreign = sum(cid in ev.foreign_client_ids for cid in c.client_ids)
        if foreign:
            outcome += f", {foreign} of them the drill's own (no node's)"
        lines.append((c.at, "venue", f"cancel-all on the symbol ({outcome})"))
    for o in v.overlaps[:MAX_LISTED_VIOLATIONS]:
        names = ", ".join(f"#{index.get(e, '?')}" for e in o.epochs)
        lines.append((o.start, "venue", f"orders of epochs {names} live at once for {o.duration:.3f} s"))
    for r in v.late_refusals:
        late = f"; up to {r.max_late_s:.3f} s past timestamp + recvWindow" if r.max_late_s is not None else ""
        windows = (f", recvWindow {r.recv_windows_s[0] * 1000:.0f}–{r.recv_windows_s[1] * 1000:.0f} ms"
                   if r.recv_windows_s else "")
        lines.append((r.first, "venue", f"refused {r.count} late order(s) of epoch #{index.get(r.epoch, '?')} from "
                      f"{r.node} ({OUTSIDE_RECV_WINDOW}, outside the recvWindow), received "
                      f"t={r.first - ev.started:.3f}..{r.last - ev.started:.3f}, {r.after_newer} after a newer "
                      f"epoch's first order{windows}{late}"))
    firsts: dict = {}
    for o in ev.orders:
        if o.accepted and o.epoch is not None and (o.epoch not in firsts or o.done < firsts[o.epoch].done):
            firsts[o.epoch] = o
    for epoch, o in firsts.items():
        lines.append((o.done, "venue", f"first order of epoch #{index.get(epoch, '?')} acknowledged ({o.client_id}, "
                                        f"from {o.node})"))
    lasts: dict = {}  # the last order of each epoch to leave the book
    for life in ev.lives:
        if life.end is None or life.epoch is None:
            continue
        if life.epoch not in lasts or life.end > lasts[life.epoch]:
            lasts[life.epoch] = life.end
    for epoch, end in lasts.items():
        lines.append((end, "venue", f"last order of epoch #{index.get(epoch, '?')} left the book"))
    return lines


def _node_lines(ev: Evidence, index: dict) -> list[tuple[float, str, str]]:
    lines = []
    failing: dict = {}  # node -> [first, last, count] of a burst of failed renewals
    for e in ev.node_events:
        if e.kind == "renew-failed":
            burst = failing.get(e.node)
            if burst and e.at - burst[1] < 0.5:
                burst[1], burst[2] = e.at, burst[2] + 1
            else:
                failing[e.node] = burst = [e.at, e.at, 1]
                lines.append((e.at, e.node, burst))
            continue
        epoch = f"#{index.get(e.epoch, '?')}" if e.epoch is not None else ""
        text = {
            "role": lambda: f"-> {e.role}: {e.detail}",
            "acquired": lambda: f"trading lock acquired, epoch {epoch}"
                                + (f" (while {e.role}!)" if e.role not in (None, "candidate") else ""),
            "lost": lambda: f"trading lock lost, epoch {epoch}: {e.detail}",
            "released": lambda: f"trading lock released, epoch {epoch}",
            "takeover": lambda: "takeover complete",
            "stopped": lambda: "process stopped",
            "peer-lease": lambda: e.detail,
        }.get(e.kind, lambda: e.kind)()
        lines.append((e.at, e.node, text))
    out = []
    for at, node, text in lines:
        if isinstance(text, list):
            first, last, count = text
            text = "lease renewal failed" + (f" (x{count}, until +{last - first:.3f} s)" if count > 1 else "")
        out.append((at, node, text))
    return out


def timeline(result: DrillResult) -> str:
    ev, v = result.evidence, result.verdict
    index = {r.epoch: r.index for r in v.epochs}
    rows = [(e.at, "drill", f"{e.kind.upper() if e.kind == 'fault' else e.kind}"
             + (f" {e.node}" if e.node else "") + (f": {e.detail}" if e.detail else "")) for e in ev.drill_events]
    rows += _node_lines(ev, index) + _venue_lines(ev, v, index)
    rows.sort(key=lambda r: r[0])
    started = datetime.datetime.fromtimestamp(ev.started, datetime.UTC).isoformat(timespec="seconds")
    out = [f"drill {result.scenario}  run {result.run}  started {started}  "
           f"failover {result.failover}  -> {'PASS' if result.ok else 'FAIL'}", "",
           "epochs:"]
    for r in v.epochs:
        out.append(f"  #{r.index} = {r.epoch} held by {r.node} ({r.change}), acquired t={r.acquired - ev.started:.3f}"
                   + (f", ended t={r.ended - ev.started:.3f} ({r.end_reason})" if r.ended else ", held to the end")
                   + f", {r.orders} order requests")
    out += ["", "    t (s)  source  event"]
    out += [f"{_t(ev, at)}  {source:6}  {text}" for at, source, text in rows]
    out += ["", "invariants:"]
    for i in v.invariants:
        facts = ", ".join(f"{k} {val}" for k, val in i.facts.items())
        out.append(f"  [{'ok' if i.ok else 'VIOLATED'}] {i.title}" + (f"  ({facts})" if facts else ""))
        out += [f"      - {text}" for text in i.violations[:MAX_LISTED_VIOLATIONS]]
        if len(i.violations) > MAX_LISTED_VIOLATIONS:
            out.append(f"      ... and {len(i.violations) - MAX_LISTED_VIOLATIONS} more")
    out.append(f"takeover: {v.takeover_s:.3f} s after the fault" if v.takeover_s is not None else "takeover: none")
    out.append("scenario checks: " + ("ok" if not result.problems else "; ".join(result.problems)))
    out += [f"anomaly: {text}" for text in anomalies(ev)]
    if result.error:
        out.append(f"drill error: {result.error}")
    return "\n".join(out) + "\n"


ROLE_COLOURS = {"starting": "#dddddd", "standby": "#9ecae1", "candidate": "#fdd49e", "primary": "#31a354",
                "halted": "#fd8d3c", "fenced": "#de2d26", "handing-over": "#756bb1", "down": "#252525",
                "frozen": "#bdbdbd"}


def _role_spans(ev: Evidence, node: str) -> list[tuple[float, float, str]]:
    """(start, stop, role) from the node's role changes and the drill's process faults."""
    marks = [(e.at, e.role) for e in ev.node_events if e.node == node and e.kind == "role"]
    for e in ev.drill_events:
        if e.node != node:
            continue
        if e.kind in ("kill", "exited"):
            marks.append((e.at, "down"))
        elif e.kind == "start":
            marks.append((e.at, "starting"))
        elif e.kind == "freeze":
            marks.append((e.at, "frozen"))
    marks.sort(key=lambda m: m[0])
    spans = []
    for (at, role), nxt in zip(marks, marks[1:] + [(ev.ended, None)]):
        if nxt[0] > at:
            spans.append((at, nxt[0], role))
    return spans


def plot(result: DrillResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    ev, v = result.evidence, result.verdict
    nodes = sorted({e.node for e in ev.node_events} | {e.node for e in ev.drill_events if e.node})
    t0 = ev.started
    fig, (ax_roles, ax_epochs, ax_orders) = plt.subplots(3, 1, sharex=True, figsize=(12, 7),
                                                         gridspec_kw={"height_ratios": [1.2, 1, 1.4]})
    for i, node in enumerate(nodes):
        for start, stop, role in _role_spans(ev, node):
            ax_roles.broken_barh([(start - t0, stop - start)], (i - 0.35, 0.7),
                                 facecolors=ROLE_COLOURS.get(role, "#ffffff"), edgecolor="none")
    ax_roles.set_yticks(range(len(nodes)), nodes)
    ax_roles.set_ylabel("role")
    fig.suptitle(f"drill {result.scenario} (run {result.run}): {'PASS' if result.ok else 'FAIL'}"
                 + (f", takeover {v.takeover_s:.2f} s after the fault" if v.takeover_s is not None else ""))
    ax_roles.legend(handles=[Patch(color=c, label=r) for r, c in ROLE_COLOURS.items()], ncol=len(ROLE_COLOURS),
                    fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)

    for node in nodes:
        xs, ys = [0.0], [0]
        for r in v.epochs:
            if r.node != node:
                continue
            xs += [r.acquired - t0, (r.ended or ev.ended) - t0]
            ys += [r.index, 0]
        ax_epochs.step(xs + [ev.ended - t0], ys + [ys[-1]], where="post", label=node)
    ax_epochs.set_ylabel("epoch held (#)")
    ax_epochs.set_yticks(range(0, len(v.epochs) + 1))
    ax_epochs.legend(fontsize=7, loc="upper left")

    for node in nodes:
        points = []
        for life in ev.lives:
            if life.node == node:
                points += [(life.start, 1), ((life.end or ev.ended), -1)]
        points.sort()
        xs, ys, live = [0.0], [0], 0
        for at, delta in points:
            live += delta
            xs.append(at - t0)
            ys.append(live)
        ax_orders.step(xs + [ev.ended - t0], ys + [live], where="post", label=node)
    refused = [o.recv - t0 for o in ev.orders if is_late_refusal(o)]
    if refused:  # the recvWindow fence at work: the venue refusing orders that arrived too late
        ax_orders.scatter(refused, [0] * len(refused), marker="x", color="#de2d26", zorder=3,
                          label=f"refused late ({OUTSIDE_RECV_WINDOW})")
    ax_orders.set_ylabel("live orders")
    ax_orders.set_xlabel("seconds since the drill started")
    ax_orders.legend(fontsize=7, loc="upper left")

    fault = next((e.at for e in ev.drill_events if e.kind == "fault"), None)
    heal = next((e.at for e in ev.drill_events if e.kind == "heal"), None)
    for ax in (ax_roles, ax_epochs, ax_orders):
        if fault is not None:
            ax.axvline(fault - t0, color="#de2d26", linestyle="--", linewidth=1)
        if heal is not None:
            ax.axvline(heal - t0, color="#de2d26", linestyle=":", linewidth=1)
            if ax is not ax_roles and fault is not None:  # a tint would change the role colours
                ax.axvspan(fault - t0, heal - t0, color="#de2d26", alpha=0.06)
    if fault is not None:
        ax_epochs.annotate("fault", (fault - t0, 1.0), xycoords=("data", "axes fraction"), xytext=(3, -12),
                           textcoords="offset points", color="#de2d26", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write(result: DrillResult, directory: Path, with_plot: bool = True) -> dict:
    directory.mkdir(parents=True, exist_ok=True)
    data = summary(result)
    (directory / "timeline.txt").write_text(timeline(result))
    (directory / "summary.json").write_text(json.dumps(data, indent=2) + "\n")
    if with_plot:
        plot(result, directory / "timeline.png")
    return data
