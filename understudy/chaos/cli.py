"""`understudy drill SCENARIO [--repeat N] [--report DIR] [--lock redis|consul]`: runs drills,
prints a line per run and one JSON summary line, exits 0 only if every run
held every invariant (1 otherwise, 2 for bad input or a lab that cannot be
built)."""
import asyncio
import json
import signal
import sys
from pathlib import Path

from .lock_backend import LockBackendError
from .netfilter import NetfilterError
from .netns import NetworkError
from .runner import UnknownScenario, default_report_dir, resolve, run_matrix
from .scenarios import SCENARIOS, applies_to
from .stats import by_scenario
from .toxics import ToxiproxyError

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def _interrupt(signum, frame):
    """SIGTERM unwinds like Ctrl-C, so namespaces, proxies and processes are always torn down."""
    raise KeyboardInterrupt


def run(spec: str, repeat: int, report: str | None, with_plot: bool, lock: str = "redis") -> int:
    if spec == "list":
        for name, sc in SCENARIOS.items():
            only = "" if applies_to(sc, lock) else f"  [--lock {' or '.join(sc.backends)} only]"
            print(f"{name:34} failover {sc.failover:9}  {sc.summary}{only}")
        return 0
    try:
        scenarios = resolve([s.strip() for s in spec.split(",") if s.strip()], lock)
    except UnknownScenario as exc:
        print(f"understudy drill: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    report_dir = Path(report) if report else default_report_dir()

    def show(result, run_dir: Path) -> None:
        v = result.verdict
        takeover = f"takeover {v.takeover_s:.3f} s" if v.takeover_s is not None else "no takeover"
        bad = [i.key for i in v.invariants if not i.ok]
        print(f"{result.scenario:34} run {result.run:2}  {'PASS' if result.ok else 'FAIL'}  {takeover:18} "
              + (f"violated: {', '.join(bad)}  " if bad else "")
              + (f"checks: {'; '.join(result.problems)}  " if result.problems else "")
              + (f"error: {result.error}  " if result.error else "")
              + f"-> {run_dir / 'timeline.txt'}", flush=True)

    signal.signal(signal.SIGTERM, _interrupt)
    try:
        results = asyncio.run(run_matrix(scenarios, repeat, report_dir, with_plot=with_plot, on_result=show,
                                         lock=lock))
    except (NetworkError, NetfilterError, ToxiproxyError, LockBackendError) as exc:
        print(f"understudy drill: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("understudy drill: interrupted; namespaces, proxies and processes torn down", file=sys.stderr)
        return EXIT_INTERRUPTED
    summary = {"drill": spec, "lock": lock, "repeat": repeat, "report": str(report_dir),
               "ok": all(r.ok for r in results), "scenarios": by_scenario(results)}
    print(json.dumps(summary))
    return 0 if summary["ok"] else 1
