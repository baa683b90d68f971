"""The benchmarks run and keep their contract: one JSON object as the last
line, and their own correctness checks pass. Speed is not asserted here."""
import json
import subprocess
import sys

import pytest


@pytest.mark.parametrize("script, args, keys", [
    ("bench/marketdata.py", ["--quick"], {"events_per_s", "level_updates_per_s", "verified"}),
    ("bench/tick_to_order.py", ["--quick", "--samples", "300", "--warmup", "50"], {"p50_us", "p99_us", "verified"}),
    ("bench/lock.py", ["--rounds", "200"], {"acquire_p99_us", "renew_p99_us"}),
])
def test_benchmark_prints_its_figures(script, args, keys):
    result = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert keys <= figures.keys()
    assert figures.get("verified", True) is True
