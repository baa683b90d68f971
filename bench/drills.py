"""The chaos drill matrix with repetitions: every scenario (or those named)
N times on one lab, each run judged by the invariant checker.

    .venv/bin/python bench/drills.py [--repeat N] [--scenarios a,b|silent-primary|all] [--report DIR]
                                     [--lock redis|consul]

Prints one line per run, then per scenario: runs, passes, invariant
violations, takeover p50/p99/max (fault to the first new-epoch order
acknowledged by the venue, where a takeover happened), and one JSON object
as the last line. Exits 1 if any run failed — a violated invariant, a
scenario whose fault did not take, or a silent-primary takeover over the 3 s
budget (DESIGN §2.3). Needs root (network namespaces), like the drills.

    .venv/bin/python bench/drills.py --repeat 20 --scenarios silent-primary   # ~10 min
    .venv/bin/python bench/drills.py --repeat 3                               # every scenario, ~10 min
    .venv/bin/python bench/drills.py --repeat 3 --lock consul                 # the same on Consul
"""
import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from understudy.chaos.runner import UnknownScenario, resolve, run_matrix  # noqa: E402
from understudy.chaos.scenarios import names, silent_primary  # noqa: E402
from understudy.chaos.stats import by_scenario  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each scenario (default 3)")
    parser.add_argument("--scenarios", default="all",
                        help="comma-separated names, 'silent-primary' (kill, freeze, isolate) or 'all'")
    parser.add_argument("--report", help="keep every run's report here (default: a temporary directory)")
    parser.add_argument("--plots", action="store_true", help="also draw each run's PNG (slower)")
    parser.add_argument("--lock", choices=("redis", "consul"), default="redis",
                        help="the lock backend (default redis); 'all' is every scenario that runs on it")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat: at least 1")
    chosen = {"all": names(args.lock), "silent-primary": silent_primary(args.lock)}.get(
        args.scenarios, args.scenarios.split(","))
    try:
        scenarios = resolve(chosen, args.lock)
    except UnknownScenario as exc:
        parser.error(str(exc))
    started = time.monotonic()

    def show(result, run_dir) -> None:
        v = result.verdict
        takeover = f"{v.takeover_s:.3f} s" if v.takeover_s is not None else "-"
        bad = [i.key for i in v.invariants if not i.ok] + (["checks"] if result.problems else []) \
            + (["error"] if result.error else [])
        print(f"[{time.monotonic() - started:6.0f}s] {result.scenario:32} run {result.run:2}  "
              f"{'PASS' if result.ok else 'FAIL ' + ','.join(bad)}  takeover {takeover}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        report_dir = Path(args.report) if args.report else Path(tmp)
        results = asyncio.run(run_matrix(scenarios, args.repeat, report_dir, with_plot=args.plots, on_result=show,
                                         lock=args.lock))
    table = by_scenario(results)
    print(f"\n{'scenario':32} {'runs':>4} {'pass':>4} {'viol':>4} {'p50 s':>7} {'p99 s':>7} {'max s':>7}")
    fmt = lambda x: f"{x:7.3f}" if x is not None else f"{'-':>7}"  # noqa: E731
    for name, row in table.items():
        print(f"{name:32} {row['runs']:4} {row['passed']:4} {row['violations']:4} {fmt(row['takeover_p50_s'])} "
              f"{fmt(row['takeover_p99_s'])} {fmt(row['takeover_max_s'])}")
    ok = all(r.ok for r in results)
    print(json.dumps({"bench": "drills", "lock": args.lock, "repeat": args.repeat, "runs": len(results),
                      "passed": sum(r.ok for r in results), "verified": ok,
                      "elapsed_s": round(time.monotonic() - started, 1), "scenarios": table}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
