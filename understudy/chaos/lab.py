"""What consecutive drills share: the simulated venue, the toxiproxy server
and the two node namespaces. Each drill gets its own venue account (so the
audit log tells drills apart), its own lock backend (a redis-server, or
Consul: a dev agent or the servers its scenario needs), its own proxies and
fresh node processes; the heartbeat rules are flushed between drills.

Each node reaches the venue on a listener of its own (`POST
/sim/v1/listeners`: the whole sim app on another port), so the venue can ban
one node's traffic (HTTP 418, as Binance bans an IP) and serve the other's.
"""
import json
import re
import secrets
import sys
import urllib.error
import urllib.request
from pathlib import Path

from ..demo import READY
from .netfilter import require_iptables
from .netns import DrillNetwork
from .processes import DrillChild
from .toxics import ToxiproxyServer

NODES = ("sg-1", "sg-2")


class Lab:
    def __init__(self, run_dir: Path, accounts: int):
        self.run_dir = run_dir
        self.accounts = [(secrets.token_hex(16), secrets.token_hex(24)) for _ in range(accounts + 1)]
        self.loader_account = self.accounts.pop()  # takes liquidity in the under-load drills
        self._next = 0
        self.network: DrillNetwork | None = None
        self.toxiproxy: ToxiproxyServer | None = None
        self.sim: DrillChild | None = None
        self.sim_url = ""
        self.sim_port = 0
        self.venue_ports: dict[str, int] = {}  # node -> the sim listener its venue links reach
        self.per_node_listeners = False  # False: an older sim without them; every node shares the main port
        self.audit_path = run_dir / "venue-audit.jsonl"

    def __enter__(self) -> "Lab":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        require_iptables()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.network = DrillNetwork(NODES).__enter__()
        self.toxiproxy = ToxiproxyServer(self.run_dir / "toxiproxy.log").start()
        args = [sys.executable, "-m", "understudy.cli", "sim", "--port", "0", "--seed", "42",
                "--weight-limit", "100000000", "--audit-log", str(self.audit_path)]
        for key, secret in [*self.accounts, self.loader_account]:
            args += ["--account", f"{key}:{secret}"]
        self.sim = DrillChild("sim", args, self.run_dir / "sim.log")
        self.sim_url = self.sim.wait_for(READY, 30).group(1)
        self.sim_port = int(re.search(r":(\d+)$", self.sim_url).group(1))
        self._open_node_listeners()

    def sim_control(self, path: str, body: dict, timeout: float = 5.0) -> dict:
        """POSTs to one of the sim's own endpoints (loopback, ours, short)."""
        request = urllib.request.Request(f"{self.sim_url}{path}", json.dumps(body).encode(),
                                         {"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return json.loads(resp.read() or b"{}")

    def _open_node_listeners(self) -> None:
        """One listener per node, opened once per lab (two in all, however many drills run)."""
        try:
            self.venue_ports = {node: int(self.sim_control("/sim/v1/listeners", {})["port"]) for node in NODES}
            self.per_node_listeners = True
        except urllib.error.HTTPError as exc:
            if exc.code not in (404, 405):
                raise
            self.venue_ports = {node: self.sim_port for node in NODES}

    def take_account(self) -> tuple[str, str]:
        if self._next >= len(self.accounts):
            raise RuntimeError(f"the lab was made for {len(self.accounts)} drills")
        account = self.accounts[self._next]
        self._next += 1
        return account

    def audit_size(self) -> int:
        return self.audit_path.stat().st_size if self.audit_path.exists() else 0

    def audit_lines(self, offset: int) -> list[str]:
        with open(self.audit_path) as fh:
            fh.seek(offset)
            return fh.read().splitlines()

    def stop(self) -> None:
        if self.sim is not None:
            self.sim.stop()
        if self.toxiproxy is not None:
            self.toxiproxy.stop()
        if self.network is not None:
            self.network.destroy()
