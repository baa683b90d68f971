"""Per-scenario figures over repeated drill runs: passes, violations and
takeover percentiles (nearest-rank, as in bench/takeover.py)."""


def percentile(samples: list[float], q: float) -> float | None:
    ordered = sorted(samples)
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def by_scenario(results) -> dict:
    out: dict = {}
    for r in results:
        entry = out.setdefault(r.scenario, {"runs": 0, "passed": 0, "violations": 0, "failovers": 0,
                                            "errors": 0, "takeovers_s": []})
        entry["runs"] += 1
        entry["passed"] += r.ok
        entry["violations"] += sum(len(i.violations) for i in r.verdict.invariants)
        entry["failovers"] += r.verdict.failovers
        entry["errors"] += r.error is not None
        if r.verdict.takeover_s is not None:
            entry["takeovers_s"].append(r.verdict.takeover_s)
    for entry in out.values():
        samples = entry.pop("takeovers_s")
        for name, q in (("p50", 0.5), ("p99", 0.99)):
            value = percentile(samples, q)
            entry[f"takeover_{name}_s"] = round(value, 4) if value is not None else None
        entry["takeover_max_s"] = round(max(samples), 4) if samples else None
        entry["takeover_samples"] = len(samples)
    return out
