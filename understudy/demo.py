"""`understudy demo`: the simulated exchange and a solo node, as separate
processes, with a live view; after the run, PanicStop through the admin API
and a check on the venue that nothing is left resting.

(The two-node hot-standby demo replaces the solo node once failover exists.)
"""
import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import aiohttp

EXAMPLE_CONFIG = Path(__file__).resolve().parents[1] / "examples" / "solo.toml"
READY = re.compile(r"SIM READY (http://\S+)")


class Child:
    """A child process whose output goes to a log file in the run directory."""

    def __init__(self, name: str, args: list[str], log_path: Path, env: dict | None = None):
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def wait_for(self, pattern: re.Pattern, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = pattern.search(self.log_path.read_text())
            if match:
                return match
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log_path}")
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start in {timeout:.0f} s; see {self.log_path}")

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def _node_config(sim_url: str, run_dir: Path) -> str:
    """The shipped example, pointed at this run's venue and directories."""
    text = EXAMPLE_CONFIG.read_text()
    ws_url = sim_url.replace("http://", "ws://")
    replacements = {
        r'rest_url = ".*"': f'rest_url = "{sim_url}"',
        r'stream_url = ".*"': f'stream_url = "{ws_url}"',
        r'ws_api_url = ".*"': f'ws_api_url = "{ws_url}/ws-api/v3"',
        r'state_dir = ".*"': f'state_dir = "{run_dir / "state"}"',
        r"^port = \d+": "port = 0",
    }
    for pattern, replacement in replacements.items():
        text = re.sub(pattern, replacement, text, flags=re.M)
    return text


def _line(status: dict, elapsed: float) -> str:
    orders = status["orders"]
    bids = sorted((o["price"] for o in orders if o["side"] == "BUY"), reverse=True)
    asks = sorted(o["price"] for o in orders if o["side"] == "SELL")
    market = status["market"]
    return (f"{elapsed:5.1f}s  {status['system']['role']:8} epoch {status['lease']['epoch']}  "
            f"mid {market['mid'] or 0:10.2f}  bid {bids[0] if bids else '-':>9}  ask {asks[0] if asks else '-':>9}  "
            f"position {status['account']['position']:+.5f}  fills {status['fills']['count']:4d}  "
            f"pnl {status['account']['daily_pnl']:+8.2f}"
            + ("" if status["strategy"]["quoting"] else f"  halted: {','.join(status['strategy']['halt_reasons'])}"))


async def _watch(admin_url: str, token: str, duration: float, max_position: float) -> dict:
    summary = {"max_abs_position": 0.0, "samples": 0}
    async with aiohttp.ClientSession() as session:
        started = time.monotonic()
        status = {}
        while time.monotonic() - started < duration:
            async with session.get(f"{admin_url}/status") as resp:
                status = await resp.json()
            if status["market"]["mid"] is not None and status["account"]["position"] is not None:
                summary["max_abs_position"] = max(summary["max_abs_position"], abs(status["account"]["position"]))
                summary["samples"] += 1
                print(_line(status, time.monotonic() - started), flush=True)
            await asyncio.sleep(1.0)
        summary["fills"] = status.get("fills", {})
        summary["within_limits"] = summary["max_abs_position"] <= max_position + 1e-9
        print("PanicStop through the admin API ...", flush=True)
        async with session.post(f"{admin_url}/panic", json={"reason": "demo finished"},
                                headers={"Authorization": f"Bearer {token}"}) as resp:
            summary["panic"] = await resp.json()
            summary["panic_http_status"] = resp.status
    return summary


async def _venue_open_orders(sim_url: str, key: str, secret: str) -> list:
    import hashlib
    import hmac
    from urllib.parse import urlencode

    query = urlencode({"symbol": "BTCUSDT", "timestamp": int(time.time() * 1000)})
    signature = hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{sim_url}/api/v3/openOrders?{query}&signature={signature}",
                               headers={"X-MBX-APIKEY": key}) as resp:
            return await resp.json()


def run(duration: float, run_dir: Path) -> int:
    run_dir.mkdir(parents=True, exist_ok=True)
    # The demo ends with PanicStop, which is latched in the node state: start clean.
    shutil.rmtree(run_dir / "state", ignore_errors=True)
    key, secret, token = (secrets.token_hex(24) for _ in range(3))
    python = sys.executable
    print(f"run directory: {run_dir}  (logs, audit log, node state)")
    sim = Child("sim", [python, "-m", "understudy.cli", "sim", "--port", "0", "--seed", "42", "--flow-rate", "3",
                        "--account", f"{key}:{secret}", "--audit-log", str(run_dir / "audit.jsonl")],
                run_dir / "sim.log")
    node = None
    try:
        sim_url = sim.wait_for(READY, 20).group(1)
        print(f"simulated exchange at {sim_url}")
        config_path = run_dir / "sg-1.toml"
        config_path.write_text(_node_config(sim_url, run_dir))
        max_position = tomllib.loads(config_path.read_text())["risk"]["max_position"]
        env = {**os.environ, "UNDERSTUDY_API_KEY": key, "UNDERSTUDY_API_SECRET": secret,
               "UNDERSTUDY_ADMIN_TOKEN": token}
        node = Child("node sg-1", [python, "-m", "understudy.cli", "node", "run", "--config", str(config_path)],
                     run_dir / "sg-1.log", env)
        listening = node.wait_for(re.compile(r'"host": "([^"]+)", "port": (\d+), "event": "admin listening"'), 20)
        admin_url = f"http://{listening.group(1)}:{listening.group(2)}"
        node.wait_for(re.compile(r'"event": "node ready"'), 30)
        print(f"node sg-1 ready, admin API at {admin_url}; watching for {duration:.0f} s")
        summary = asyncio.run(_watch(admin_url, token, duration, max_position))
        summary["open_orders_after_panic"] = len(asyncio.run(_venue_open_orders(sim_url, key, secret)))
    finally:
        node_rc = node.stop() if node else None
        sim.stop()
    summary["node_exit_code"] = node_rc
    ok = (summary["within_limits"] and summary["open_orders_after_panic"] == 0
          and summary["fills"].get("bought", 0) > 0 and summary["fills"].get("sold", 0) > 0)
    print(f"fills: bought {summary['fills'].get('bought', 0):.5f}, sold {summary['fills'].get('sold', 0):.5f}; "
          f"max |position| {summary['max_abs_position']:.5f} (limit {max_position}); "
          f"open orders after PanicStop: {summary['open_orders_after_panic']}")
    print(json.dumps({"demo": "solo", "ok": ok, **summary}))
    return 0 if ok else 1
