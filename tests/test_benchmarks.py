"""The benchmarks run and keep their contract: one JSON object as the last
line, and their own correctness checks pass. Speed is not asserted here.

The takeover benchmark runs with the lock on Consul, one drill of each
kind (about 15 s): a SIGKILL, a SIGSTOP and a switchover of a pair on a
Consul dev agent, and the takeover timings read back from the lock's
history in Consul. Its Redis run shares all but the backend with the demo
test (tests/test_demo.py), so it is not repeated here."""
import json
import subprocess
import sys

import pytest


@pytest.mark.parametrize("script, args, keys", [
    ("bench/marketdata.py", ["--quick"], {"events_per_s", "level_updates_per_s", "verified"}),
    ("bench/tick_to_order.py", ["--quick", "--samples", "300", "--warmup", "50"], {"p50_us", "p99_us", "verified"}),
    ("bench/lock.py", ["--rounds", "200"], {"acquire_p99_us", "renew_p99_us"}),
    ("bench/takeover.py", ["--lock", "consul", "--drills", "1"],
     {"lock", "kill_first_quote_p99_s", "stop_first_quote_p99_s", "switchover_gap_p99_ms", "overlapping_epochs"}),
])
def test_benchmark_prints_its_figures(script, args, keys):
    result = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert keys <= figures.keys()
    assert figures.get("verified", True) is True
