"""The daily report as text, for a person reading it over coffee."""


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def _pct(fraction: float) -> str:
    return f"{fraction * 100:.1f}%"


def _latency(name: str, q: dict) -> str:
    return f"  {name:22} p50 {_ms(q['p50']):>10}  p99 {_ms(q['p99']):>10}  ({q['count']} samples)"


def _pairs(d: dict) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in sorted(d.items())) or "none"


def text(r: dict) -> str:
    lines = [f"Understudy daily report {r['date']} (UTC){'' if r['complete_day'] else ', so far'}"
             f" - nodes: {', '.join(r['nodes']) or 'none'}", ""]

    f = r["failovers"]
    lines.append(f"Lock changes: {f['count']} ({_pairs(f['by_kind'])}); unplanned failovers: {f['unplanned']}"
                 + (f", slowest detection to first quote {f['worst_detect_to_quote_s']:.3f} s"
                    if f["worst_detect_to_quote_s"] is not None else ""))
    for c in f["changes"]:
        t = c["timings_s"]
        steps = " / ".join(f"{k} {t[k]:.3f}s" for k in ("acquired", "protective_cancel_done", "first_quote") if k in t)
        lines.append(f"  {c['at']}  epoch {c['epoch']}  {c['from'] or '?'} -> {c['to'] or '?'}  [{c['kind']}]"
                     f"  {steps}  {c['reason']}")
    for fence in r["self_fences"]:
        lines.append(f"  {fence['at']}  {fence['node']} fenced itself: {fence['reason']}")
    lines.append("")

    q = r["quoting"]
    lines.append(f"Quoting: {_pct(q['quoting_fraction'])} of the day ({q['quoting_s']:.0f} s); "
                 f"fills {q['fills']:g} (bought {q['bought']:g}, sold {q['sold']:g}); "
                 f"time by role: {_pairs(q['seconds_by_role'])} s")
    o = r["orders"]
    lines.append(f"Orders: {o['sent']:g} sent; outcomes {_pairs(o['outcomes'])}; "
                 f"venue rejects {o['rejected']:g} ({_pct(o['reject_rate'])}); cancel errors {o['cancel_errors']:g}")
    lines.append(_latency("order ack latency", o["ack_latency_s"]))
    lines.append(_latency("cancel latency", o["cancel_latency_s"]))
    lines.append(f"  venue errors by code: {_pairs(o['venue_errors'])}; gate refusals: {_pairs(o['gate_refusals'])}")
    lines.append("")

    s = r["streams"]
    lines.append(f"Streams: market reconnects {s['market_reconnects']:g}, user data reconnects "
                 f"{s['user_reconnects']:g}, book resyncs {s['book_resyncs']:g}")
    lines.append(_latency("depth lag", s["depth_lag_s"]))
    lines.append("")

    k = r["risk"]
    lines.append(f"Risk: rejections {_pairs(k['rejections'])}; halts {len(k['halts'])}; "
                 f"PanicStops {len(k['panic_stops'])} (cleared {len(k['panic_clears'])})")
    for h in k["halts"]:
        lines.append(f"  {h['at']}  {h['node']} halted: {', '.join(h['reasons'])}")
    for p in k["panic_stops"]:
        lines.append(f"  {p['at']}  {p['node']} PANIC STOP: {p['reason']}")
    lines.append("")

    b = r["balances"]
    if b:
        change = (f" (since 00:00 UTC: {b['base_change']:+g} {b['base_asset']}, {b['quote_change']:+,.2f} "
                  f"{b['quote_asset']})" if "base_change" in b else "")
        lines.append(f"Balances at {b['at']} ({b['node']}): {b['base']:g} {b['base_asset']}, "
                     f"{b['quote']:,.2f} {b['quote_asset']}{change}; position {b['position']:+g}; "
                     f"PnL today {b['daily_pnl']:+,.2f} {b['quote_asset']}")
    else:
        lines.append("Balances: no account state in the logs")
    cover = ", ".join(f"{n} {_pct(c['fraction'])}" for n, c in r["coverage"].items())
    lines.append(f"Coverage of the day by stats lines: {cover or 'none'}")
    if r["notes"]:
        lines.append("")
        lines += [f"Note: {n}" for n in r["notes"]]
    return "\n".join(lines)
