"""Runs scenarios on a lab, judges each run and writes its report.

    understudy drill SCENARIO [--repeat N] [--report DIR] [--lock redis|consul]

A run that cannot do what its scenario asks (a wait times out, say) is still
judged on its evidence, and fails with the reason.
"""
import asyncio
import time
from pathlib import Path
from typing import Callable

from . import report
from .checker import Rules, check
from .drill import NODE_COMMAND, Drill, DrillError
from .lab import NODES, Lab
from .lock_backend import BACKENDS
from .scenarios import SCENARIOS, Scenario, applies_to

ACT_TIMEOUT_S = 90.0
RECOVERY_TIMEOUT_S = 30.0
TAKEOVER_BUDGET_S = 3.0  # DESIGN §2.3
SETTLE_S = 2.0  # after the scenario, so what healing sets off is seen before the pair is judged healthy


class UnknownScenario(ValueError):
    """A scenario name that is not one, or one that means nothing on the lock backend asked for."""


def resolve(names: list[str], lock: str = "redis") -> list[Scenario]:
    """Scenario names (or `all`: every scenario that runs on `lock`) to scenarios; an unknown name, or
    one the backend cannot run, is an error that says which."""
    if lock not in BACKENDS:
        raise UnknownScenario(f"unknown lock backend {lock!r}; known: {', '.join(BACKENDS)}")
    if names == ["all"]:
        return [sc for sc in SCENARIOS.values() if applies_to(sc, lock)]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise UnknownScenario(f"unknown scenario {', '.join(map(repr, unknown))}; known: all, "
                              + ", ".join(SCENARIOS))
    elsewhere = [SCENARIOS[n] for n in names if not applies_to(SCENARIOS[n], lock)]
    if elsewhere:
        raise UnknownScenario("; ".join(f"{sc.name} runs only with the lock on {' or '.join(sc.backends)} "
                                        f"(--lock {sc.backends[0]}), not on {lock}" for sc in elsewhere))
    return [SCENARIOS[n] for n in names]


def rules_for(sc: Scenario, drill: Drill, takeover_budget_s: float = TAKEOVER_BUDGET_S) -> Rules:
    # A primary that cannot trade keeps the lock for `handover_after_s` before handing it over (DESIGN
    # §2.3): its successor's budget starts that much later.
    if sc.handover:
        takeover_budget_s += drill.handover_after_s
    return Rules(ttl_s=drill.ttl_s, lock_frees_s=drill.lock_frees_s, silence_s=drill.silence_s,
                 failover=sc.failover, venue_delay_s=sc.venue_delay_s, overlap_s=sc.overlap_s,
                 takeover_budget_s=takeover_budget_s)


async def run_once(lab: Lab, sc: Scenario, run_dir: Path, run: int = 1,
                   node_command: tuple[str, ...] = NODE_COMMAND, with_plot: bool = True,
                   takeover_budget_s: float = TAKEOVER_BUDGET_S, lock: str = "redis") -> report.DrillResult:
    if not applies_to(sc, lock):
        raise UnknownScenario(f"{sc.name} runs only with the lock on {' or '.join(sc.backends)}, not on {lock}")
    error = None
    async with Drill(lab, run_dir, sc.persistence, node_command, lock, sc.lock_servers) as drill:
        drill.start(*NODES)  # at the same instant: every drill begins with a simultaneous start
        try:
            await asyncio.wait_for(sc.act(drill), ACT_TIMEOUT_S)
            await asyncio.sleep(SETTLE_S)
            if sc.ends_healthy:
                await drill.ready_pair(RECOVERY_TIMEOUT_S)
        except (DrillError, asyncio.TimeoutError) as exc:
            error = str(exc) or type(exc).__name__
    evidence = drill.evidence()
    verdict = check(evidence, rules_for(sc, drill, takeover_budget_s))
    if error is None and sc.after is not None:
        sc.after(drill, evidence)
    result = report.DrillResult(sc.name, run, sc.failover, verdict, evidence, drill.problems, error)
    report.write(result, run_dir, with_plot)
    return result


async def run_matrix(scenarios: list[Scenario], repeat: int, report_dir: Path,
                     node_command: tuple[str, ...] = NODE_COMMAND, with_plot: bool = True,
                     on_result: Callable[[report.DrillResult, Path], None] | None = None,
                     lock: str = "redis") -> list[report.DrillResult]:
    """Every scenario `repeat` times, one after the other, on one lab, with the lock on `lock`."""
    results = []
    with Lab(report_dir / "lab", accounts=len(scenarios) * repeat) as lab:
        for sc in scenarios:
            for run in range(1, repeat + 1):
                run_dir = report_dir / sc.name / (f"run-{run:02d}" if repeat > 1 else "")
                result = await run_once(lab, sc, run_dir.resolve(), run, node_command, with_plot, lock=lock)
                results.append(result)
                if on_result is not None:
                    on_result(result, run_dir)
    return results


def default_report_dir() -> Path:
    return Path("reports") / "drills" / time.strftime("%Y%m%d-%H%M%S")
