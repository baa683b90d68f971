"""The README's first command, both ways: `understudy demo` (two nodes, a
live failover and a switchback) and `understudy demo --solo` (one node
quoting, filled and within its limits, then a PanicStop that leaves nothing
resting), and the two-node demo with the lock on Consul (`--lock consul`).
Each runs as the operator would run it and must print its JSON summary with
ok: true and exit 0."""
import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(240)


def _demo(tmp_path, *args: str) -> dict:
    result = subprocess.run([sys.executable, "-m", "understudy.cli", "demo", "--run-dir", str(tmp_path / "demo"),
                             *args], capture_output=True, text=True, timeout=200)
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert result.returncode == 0 and summary["ok"], result.stdout[-3000:] + result.stderr[-2000:]
    return summary


def test_two_node_demo_fails_over_and_switches_back(tmp_path):
    summary = _demo(tmp_path, "--duration", "3")
    assert summary["new_primary"] != summary["killed"] and summary["final_primary"] == summary["killed"]
    assert summary["takeover_s"] < 3.0 and summary["overlapping_epochs"] == 0


def test_solo_demo_trades_within_limits_then_panics_clean(tmp_path):
    summary = _demo(tmp_path, "--solo", "--duration", "8")
    assert summary["bought"] > 0 and summary["sold"] > 0
    assert summary["worst_abs_position"] <= summary["max_position"]
    assert summary["open_orders_after_panic"] == 0 and summary["orders_accepted"] > 0


def test_two_node_demo_on_consul_fails_over_and_switches_back(tmp_path):
    summary = _demo(tmp_path, "--lock", "consul", "--duration", "3")
    assert summary["lock"] == "consul"
    assert summary["new_primary"] != summary["killed"] and summary["final_primary"] == summary["killed"]
    assert summary["takeover_s"] < 3.0 and summary["overlapping_epochs"] == 0
    config = (tmp_path / "demo" / "sg-1.toml").read_text()
    assert 'backend = "consul"' in config and "consul_token" not in config  # the dev agent has no ACLs


def test_a_solo_demo_refuses_a_lock_backend(tmp_path):
    result = subprocess.run([sys.executable, "-m", "understudy.cli", "demo", "--solo", "--lock", "consul",
                             "--run-dir", str(tmp_path / "demo")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "a solo node holds no trading lock" in result.stderr
