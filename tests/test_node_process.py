"""A solo node as a real process against the simulated exchange: it quotes,
gets filled, stays inside its limits, obeys PanicStop, reconciles what a
crashed run left resting, and refuses bad config before connecting."""
import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from understudy.consul_agent import ConsulDev
from tests.clusterproc import Cluster
from tests.nodeproc import ADMIN_TOKEN, NodeProcess, node_env, node_settings, to_toml
from tests.simproc import RestClient


def start_node(sim, tmp_path, name: str = "node", **sections) -> NodeProcess:
    config = tmp_path / f"{name}.toml"
    config.write_text(to_toml(node_settings(sim, tmp_path / "state", **sections)))
    return NodeProcess(config, node_env(sim), tmp_path / f"{name}.log").start()


async def _status(session, node) -> dict:
    async with session.get(f"{node.admin_url}/status") as resp:
        return await resp.json()


async def _wait_status(session, node, predicate, timeout: float, what: str) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = await _status(session, node)
        if predicate(status):
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last status: {status}")
        await asyncio.sleep(0.2)


def _quoting_both_sides(status) -> bool:
    return status["strategy"]["quoting"] and {o["side"] for o in status["orders"]} == {"BUY", "SELL"}


async def _venue_open_orders(sim, session) -> list[dict]:
    return await RestClient(session, sim.base_url, *sim.accounts[0]).ok(
        "GET", "/api/v3/openOrders", {"symbol": "BTCUSDT"}, signed=True)


@pytest.fixture
def busy_sim(start_sim):
    return start_sim("--seed", "11", "--flow-rate", "12")


async def test_solo_node_quotes_fills_within_limits_and_panics(busy_sim, tmp_path):
    node = start_node(busy_sim, tmp_path)
    try:
        async with aiohttp.ClientSession() as session:
            await _wait_status(session, node, _quoting_both_sides, 15, "two-sided quotes")
            max_position = 0.01
            deadline = time.monotonic() + 12
            status = {}
            while time.monotonic() < deadline:
                status = await _status(session, node)
                assert abs(status["account"]["position"]) <= max_position + 1e-9, status["account"]
                if status["fills"]["bought"] > 0 and status["fills"]["sold"] > 0:
                    break
                await asyncio.sleep(0.25)
            assert status["fills"]["bought"] > 0 and status["fills"]["sold"] > 0, status["fills"]
            for order in status["orders"]:
                assert order["client_id"].startswith("e0.sg-1.")

            async with session.get(f"{node.admin_url}/health") as resp:
                health = await resp.json()
            assert resp.status == 200 and set(health) >= {"system", "strategy", "ws", "api", "oms"}
            async with session.get(f"{node.admin_url}/metrics") as resp:
                assert 'understudy_quoting{node="sg-1"} 1.0' in await resp.text()

            async with session.post(f"{node.admin_url}/panic", headers={"Authorization": "Bearer wrong"}) as resp:
                assert resp.status == 401
            async with session.post(f"{node.admin_url}/panic", json={"reason": "test"},
                                    headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as resp:
                assert resp.status == 200 and (await resp.json())["orders_remaining"] == 0
            assert await _venue_open_orders(busy_sim, session) == []
            await asyncio.sleep(1.0)  # book updates keep arriving: nothing may be re-quoted
            assert await _venue_open_orders(busy_sim, session) == []
            status = await _status(session, node)
            assert status["strategy"] == {"quoting": False, "halt_reasons": ["panic-stop"]}
            async with session.get(f"{node.admin_url}/health") as resp:
                assert resp.status == 503
    finally:
        node.stop()
    assert any(r.get("event") == "PANIC STOP" and r["level"] == "critical" for r in node.log_records())
    for record in node.log_records():
        assert {"node", "role", "epoch"} <= record.keys()


async def test_restart_cancels_what_the_crashed_run_left_resting(start_sim, tmp_path):
    live_sim = start_sim("--seed", "5", "--flow-rate", "0.01")  # next to no flow: the quotes stay resting
    first = start_node(live_sim, tmp_path, "first")
    async with aiohttp.ClientSession() as session:
        try:
            await _wait_status(session, first, _quoting_both_sides, 15, "quotes")
        finally:
            first.signal(signal.SIGKILL)
            first.wait()
        left = {o["clientOrderId"] for o in await _venue_open_orders(live_sim, session)}
        assert left, "the crashed run should leave quotes resting"

        second = start_node(live_sim, tmp_path, "second")
        try:
            await _wait_status(session, second, _quoting_both_sides, 15, "quotes after restart")
            venue_now = {o["clientOrderId"] for o in await _venue_open_orders(live_sim, session)}
            assert not venue_now & left
        finally:
            second.stop()

    records = live_sim.audit_records()
    first_boot = next(iter(left)).split(".")[2].split("_")[0]
    new_orders = [r for r in records if r["action"] == "new" and r["outcome"] == "accepted"
                  and r["client_order_id"].split(".")[2].split("_")[0] != first_boot]
    assert new_orders, "the second run should quote"
    cleaned = {r["client_order_id"] for r in records if r["action"] == "cancel" and r["recv_us"] < new_orders[0]["recv_us"]}
    done = {r["client_order_id"] for r in live_sim.audit_records("order_done")
            if r["ts_us"] < new_orders[0]["recv_us"]}
    assert left <= cleaned | done, "every leftover order is cancelled before the first new quote"
    assert any(r.get("event") == "cancelling orders an earlier run left resting" for r in second.log_records())


async def test_sigterm_cancels_the_nodes_orders(live_sim, tmp_path):
    node = start_node(live_sim, tmp_path)
    async with aiohttp.ClientSession() as session:
        await _wait_status(session, node, _quoting_both_sides, 15, "quotes")
        node.signal(signal.SIGTERM)
        assert node.wait() == 0
        assert await _venue_open_orders(live_sim, session) == []


def _run_cli(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "understudy.cli", *args], capture_output=True, text=True,
                          timeout=30, env=env)


@pytest.mark.parametrize("section, change, message", [
    ("risk", {"max_position": -1}, "risk.max_position: expected a positive number, got -1"),
    ("strategy", {"levels": "two"}, "strategy.levels: expected an integer, got 'two'"),
    ("market", {"depth": 5}, "market.depth: unknown key"),
    ("node", {"mode": "duo"}, "node.mode: expected one of 'solo', 'cluster', got 'duo'"),
    ("node", {"mode": "cluster"}, "cluster: required when node.mode is 'cluster'"),
    ("node", {"id": "Sg 1"}, "node.id: 'Sg 1' does not match"),
    ("venue", {"recv_window_ms": 90000}, "venue.recv_window_ms: expected an integer <= 60000, got 90000"),
    ("venue", {"rest_url": "ftp://x"}, "venue.rest_url: expected a http/https URL, got 'ftp://x'"),
    ("risk", {"max_open_orders": 3}, "risk.max_open_orders: 3 cannot hold 2 level(s) a side"),
    ("admin", {"token": {"file": "/nonexistent/token"}}, "admin.token: cannot read secret file /nonexistent/token"),
    ("admin", {"token": {"env": "X", "file": "/y"}}, "admin.token: give exactly one of `file` or `env`"),
])
def test_invalid_config_is_refused_before_connecting(quiet_sim, tmp_path, section, change, message):
    settings = node_settings(quiet_sim, tmp_path)
    settings[section] = {**settings[section], **change}
    path = tmp_path / "bad.toml"
    path.write_text(to_toml(settings))
    for command in (["config", "check", str(path)], ["node", "run", "--config", str(path)]):
        result = _run_cli(*command, env=node_env(quiet_sim))
        assert result.returncode == 2, result
        assert message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert quiet_sim.audit_records() == []


def test_config_check_accepts_the_shipped_example_and_names_missing_secrets(tmp_path):
    result = _run_cli("config", "check", "examples/solo.toml", env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert "venue.api_key: environment variable UNDERSTUDY_API_KEY is not set or empty" in result.stderr
    secret_file = tmp_path / "key"
    secret_file.write_text("s3cr3t\n")
    env = {"PATH": "/usr/bin:/bin", "UNDERSTUDY_API_KEY": "k", "UNDERSTUDY_API_SECRET": "s",
           "UNDERSTUDY_ADMIN_TOKEN": "t"}
    result = _run_cli("config", "check", "examples/solo.toml", env=env)
    assert result.returncode == 0, result.stderr
    assert "s3cr3t" not in result.stdout + result.stderr


@pytest.mark.parametrize("lock, message", [
    ({"backend": "etcd"}, "lock.backend: expected one of 'redis', 'consul', got 'etcd'"),
    ({"ttl_s": 0.1}, "lock.ttl_s: expected a number >= 0.2, got 0.1"),
    ({"ttl_s": 1.0, "margin_s": 1.0}, "lock.margin_s: 1.0 leaves no lease out of a 1.0 s ttl"),
    ({"ttl_s": 1.0, "renew_every_s": 0.6}, "lock.renew_every_s: 0.6 s leaves no room for a retry"),
    ({"redis": {"password": {"env": "NO_SUCH_PASSWORD_VAR"}}},
     "lock.redis.password: environment variable NO_SUCH_PASSWORD_VAR is not set or empty"),
    ({"redis": {"ca_file": "/etc/ca.pem"}}, "lock.redis.ca_file: set, but lock.redis.tls is false"),
    ({"backend": "consul", "consul": {"urls": ["witness:8500"]}},
     "lock.consul.urls: expected http(s)://host:port, got 'witness:8500'"),
    ({"backend": "consul", "consul": {"urls": []}}, "lock.consul.urls: name at least one Consul server"),
    ({"backend": "consul", "consul": {"token": {"env": "NO_SUCH_TOKEN_VAR"}}},
     "lock.consul.token: environment variable NO_SUCH_TOKEN_VAR is not set or empty"),
])
def test_invalid_lock_config_is_refused(quiet_sim, tmp_path, lock, message):
    settings = node_settings(quiet_sim, tmp_path)
    settings["lock"] = lock
    path = tmp_path / "bad.toml"
    path.write_text(to_toml(settings))
    result = _run_cli("config", "check", str(path), env=node_env(quiet_sim))
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_a_consul_lock_whose_ttl_breaks_the_budget_is_refused_with_the_reason(tmp_path):
    """Consul frees a silent holder's key up to two TTLs after its last renewal: the budget counts that."""
    example = Path("examples/cluster-consul/sg-1.toml").read_text()
    assert "ttl_s = 0.5" in example
    path = tmp_path / "slow.toml"
    path.write_text(example.replace("ttl_s = 0.5", "ttl_s = 1.5"))
    result = _run_cli("config", "check", str(path), env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 2, result
    assert ("cluster.silence_s / lock.ttl_s: takeover would take about 3.30 s, over the 3 s budget (Consul frees "
            "a silent holder's key up to 2 x ttl_s = 3.00 s") in result.stderr, result.stderr


def test_a_node_will_not_start_on_consul_servers_that_cannot_hold_its_ttl(quiet_sim, tmp_path):
    """Servers left at Consul's default session_ttl_min (10 s) would refuse every session the
    lock asks for: the node says so by name and exits 2 before it starts anything."""
    strict = ConsulDev(tmp_path / "consul", config={"session_ttl_min": "10s"}).start()
    try:
        pair = Cluster(quiet_sim, None, tmp_path, lock={"backend": "consul", "ttl_s": 0.5,
                                                        "consul": {"urls": strict.urls, "key_prefix": "strict"}})
        result = _run_cli("node", "run", "--config", str(pair.config_path("sg-1")), env=pair.env)
        assert result.returncode == 2, result
        assert "lock.ttl_s: 0.5 s is under the Consul servers' session_ttl_min (10s" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    finally:
        strict.stop()
    assert quiet_sim.audit_records() == []
