"""Takeover drills on a local two-node cluster (simulated exchange, a real
lock backend, two node processes): N SIGKILL and N SIGSTOP faults of the
primary, then N switchovers.

    .venv/bin/python bench/takeover.py [--drills N] [--quick] [--lock redis|consul]

The lock is a private redis-server (the nodes on examples/cluster/: ttl 1 s)
or, with `--lock consul`, a Consul 1.15.4 dev agent (examples/cluster-consul/:
session TTL 0.5 s, which Consul frees within 2 x TTL = 1 s).

For each fault it measures, from the moment of the fault: detection (the
standby turns candidate), lock acquired, protective cancel done, and the
first new-epoch quote accepted by the venue (on the sim's clock, from its
audit log). Switchovers measure the quote gap: last old-epoch order gone to
first new-epoch order accepted. Prints p50/p99/max per step and one JSON
object as the last line. Required: takeover p99 <= 3 s; goal: p99 <= 1.5 s,
switchover gap p99 <= 300 ms.
"""
import argparse
import asyncio
import json
import signal
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from understudy.demo import Demo, _epoch, _overlaps, _quoting  # noqa: E402

STEPS = ("detected", "acquired", "protective_cancel_done", "first_quote")


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _accepted_news(demo: Demo) -> list[tuple[int, int]]:
    return [(r["recv_us"], _epoch(r["client_order_id"])) for r in demo.audit()
            if r["kind"] == "request" and r["action"] == "new" and r["outcome"] == "accepted"]


async def _ready_pair(demo: Demo, session) -> tuple[str, str]:
    statuses = await demo.wait(session, lambda s: _quoting(s) is not None and all(
        x is not None and x["ha"]["peer"]["ready"] for x in s.values()), 40, "a quoting primary and a ready standby")
    primary = _quoting(statuses)
    return primary, ("sg-2" if primary == "sg-1" else "sg-1")


async def _fault(demo: Demo, session, kind: str) -> dict:
    primary, standby = await _ready_pair(demo, session)
    await asyncio.sleep(0.5)
    fault_wall = time.time()
    if kind == "kill":
        demo.nodes[primary].kill()
    else:
        demo.nodes[primary].proc.send_signal(signal.SIGSTOP)
    statuses = await demo.wait(session, lambda s: _quoting({standby: s[standby]}) == standby, 15, "takeover")
    ha = statuses[standby]["ha"]
    epoch = ha["epoch"]
    detected_at = next(t["at"] for t in reversed(ha["transitions"]) if t["to"] == "candidate")
    history = await _history_entry(demo, session, standby, epoch)
    first_quote_us = min(t for t, e in _accepted_news(demo) if e == epoch)
    detection = detected_at - fault_wall
    sample = {"detected": detection, "first_quote": first_quote_us / 1e6 - fault_wall}
    for step in ("acquired", "protective_cancel_done"):
        if step in history:
            sample[step] = detection + history[step]
    if kind == "kill":
        demo.start_node(primary)
    else:
        demo.nodes[primary].proc.send_signal(signal.SIGCONT)
    await demo.wait(session, lambda s: s[primary] is not None and s[primary]["ha"]["role"] == "standby", 40,
                    "rejoin")
    return sample


async def _history_entry(demo: Demo, session, node: str, epoch: int) -> dict:
    """The timings the new primary recorded for its takeover (relative to detection)."""
    from understudy.config import load, load_secrets
    from understudy.coordinator.factory import make_backend

    import os
    os.environ.update({k: v for k, v in demo.env.items() if k.startswith("UNDERSTUDY_")})
    config = load(demo.run_dir / f"{node}.toml")
    backend = make_backend(config.lock, load_secrets(config))
    try:
        for _ in range(100):
            entries = await backend.read_history(5, time.monotonic() + 1)
            for entry in entries:
                if entry.epoch == epoch:
                    return entry.timings
            await asyncio.sleep(0.05)
        return {}
    finally:
        await backend.close()


async def _switchover(demo: Demo, session) -> float:
    primary, standby = await _ready_pair(demo, session)
    await asyncio.sleep(0.5)
    async with session.post(f"{demo.admin[primary]}/switchover", json={"to": standby},
                            headers={"Authorization": f"Bearer {demo.token}"}) as resp:
        result = await resp.json()
    if not result.get("ok"):
        raise RuntimeError(f"switchover refused: {result}")
    statuses = await demo.wait(session, lambda s: _quoting(s) == standby, 15, "switchover")
    new_epoch = statuses[standby]["ha"]["epoch"]
    records = demo.audit()
    ended = [r["ts_us"] for r in records if r["kind"] == "order_done" and _epoch(r["client_order_id"]) < new_epoch]
    first_new = min(t for t, e in _accepted_news(demo) if e == new_epoch)
    return (first_new - max(ended)) / 1000


async def _drills(demo: Demo, n: int) -> dict:
    results = {"kill": [], "stop": [], "switchover_gap_ms": []}
    async with aiohttp.ClientSession() as session:
        for kind in ("kill", "stop"):
            for i in range(n):
                sample = await _fault(demo, session, kind)
                results[kind].append(sample)
                demo.say(f"SIG{kind.upper()} drill {i + 1}/{n}: " + ", ".join(f"{k} {v:.3f}s" for k, v in sample.items()))
        for i in range(n):
            gap = await _switchover(demo, session)
            results["switchover_gap_ms"].append(gap)
            demo.say(f"switchover {i + 1}/{n}: quote gap {gap:.1f} ms")
    results["overlapping_epochs"] = _overlaps(demo.audit())
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--drills", type=int, default=20, help="drills of each kind")
    parser.add_argument("--quick", action="store_true", help="3 drills of each kind")
    parser.add_argument("--keep", type=Path, help="run in this directory and keep it (logs, audit) afterwards")
    parser.add_argument("--lock", choices=("redis", "consul"), default="redis", help="the lock backend (default redis)")
    args = parser.parse_args()
    if args.drills < 1:
        parser.error("--drills: at least 1")
    n = 3 if args.quick else args.drills
    with tempfile.TemporaryDirectory() as tmp:
        demo = Demo(args.keep or Path(tmp) / "takeover", args.lock)
        try:
            demo.start()
            results = asyncio.run(_drills(demo, n))
        finally:
            demo.stop()
    out = {"bench": "takeover", "lock": args.lock, "drills_per_kind": n,
           "overlapping_epochs": results["overlapping_epochs"]}
    print(f"\n{'fault':6} {'step':24} {'p50 s':>8} {'p99 s':>8} {'max s':>8}")
    for kind in ("kill", "stop"):
        for step in STEPS:
            samples = [s[step] for s in results[kind] if step in s]
            p50, p99, mx = _pct(samples, 0.5), _pct(samples, 0.99), max(samples) if samples else float("nan")
            print(f"{kind:6} {step:24} {p50:8.3f} {p99:8.3f} {mx:8.3f}")
            out[f"{kind}_{step}_p50_s"], out[f"{kind}_{step}_p99_s"], out[f"{kind}_{step}_max_s"] = (
                round(p50, 4), round(p99, 4), round(mx, 4))
    gaps = results["switchover_gap_ms"]
    print(f"switchover quote gap ms: p50 {_pct(gaps, 0.5):.1f} p99 {_pct(gaps, 0.99):.1f} max {max(gaps):.1f}")
    out.update(switchover_gap_p50_ms=round(_pct(gaps, 0.5), 1), switchover_gap_p99_ms=round(_pct(gaps, 0.99), 1),
               switchover_gap_max_ms=round(max(gaps), 1))
    print(json.dumps(out))
    return 0 if out["overlapping_epochs"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
