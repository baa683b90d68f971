"""Node configs for tests, and `understudy node run` as a real subprocess."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgspec

from understudy.config import NodeConfig

ADMIN_TOKEN = "test-admin-token"


def node_settings(sim, state_dir: Path, node_id: str = "sg-1", **sections) -> dict:
    """A node config as a dict, for a node trading with the sim's first account."""
    key, secret = sim.accounts[0]
    settings = {
        "node": {"id": node_id, "mode": "solo", "log_level": "info", "state_dir": str(state_dir)},
        "venue": {"rest_url": sim.base_url, "stream_url": sim.ws_url, "ws_api_url": f"{sim.ws_url}/ws-api/v3",
                  "api_key": {"env": "TEST_API_KEY"}, "api_secret": {"env": "TEST_API_SECRET"},
                  "reconcile_interval_s": 1.0},
        "market": {"symbol": "BTCUSDT", "snapshot_limit": 5000},
        "strategy": {"half_spread_bps": 2.0, "levels": 2, "level_gap_bps": 2.0, "order_qty": 0.002,
                     "inventory_skew_bps": 2.0, "requote_tolerance_bps": 2.5},
        "risk": {"inventory_target": 10.0, "max_position": 0.01, "max_order_notional": 500.0, "max_open_orders": 6,
                 "price_band_bps": 50.0, "max_book_age_s": 2.0, "daily_loss_limit": 500.0},
        "admin": {"host": "127.0.0.1", "port": 0, "token": {"env": "TEST_ADMIN_TOKEN"}},
    }
    for section, values in sections.items():
        settings[section] = {**settings[section], **values}
    return settings


def node_env(sim) -> dict:
    key, secret = sim.accounts[0]
    return {**os.environ, "TEST_API_KEY": key, "TEST_API_SECRET": secret, "TEST_ADMIN_TOKEN": ADMIN_TOKEN}


def to_config(settings: dict) -> NodeConfig:
    return msgspec.convert(settings, NodeConfig)


def to_toml(settings: dict) -> str:
    def value(v) -> str:
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        return json.dumps(v) if not isinstance(v, bool) else str(v).lower()

    lines = []
    for section, values in settings.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {value(v)}" for k, v in values.items()]
        lines.append("")
    return "\n".join(lines)


class NodeProcess:
    def __init__(self, config_path: Path, env: dict, log_path: Path):
        self.config_path = config_path
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.admin_url = ""

    def start(self, timeout: float = 20.0) -> "NodeProcess":
        self._offset = self.log_path.stat().st_size if self.log_path.exists() else 0  # a restart appends
        self._log = open(self.log_path, "a")
        self.proc = subprocess.Popen([sys.executable, "-m", "understudy.cli", "node", "run", "--config",
                                      str(self.config_path)], stdout=self._log, stderr=subprocess.STDOUT,
                                     env=self.env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.admin_url:
            for record in self.log_records():
                if record.get("event") == "admin listening":
                    self.admin_url = f"http://{record['host']}:{record['port']}"
            if self.proc.poll() is not None:
                raise RuntimeError(f"node exited with {self.proc.returncode}:\n{self.log_path.read_text()}")
            time.sleep(0.05)
        if not self.admin_url:
            raise RuntimeError(f"node did not start:\n{self.log_path.read_text()}")
        return self

    def log_records(self) -> list[dict]:
        records = []
        with open(self.log_path) as fh:
            fh.seek(getattr(self, "_offset", 0))
            lines = fh.read().splitlines()
        for line in lines:
            try:
                records.append(json.loads(line))
            except ValueError:
                pass
        return records

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 15.0) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()
