"""Real Consul agents on loopback, for the demo, the drills, the benchmarks
and the tests: one dev agent (in memory, a single server), or a cluster of
three servers with their own data directories.

Both run with the settings the trading lock needs (see the README's Consul
section): `session_ttl_min` below a second, because the lock's session TTL is
sub-second; `raft_multiplier = 1`, so a leader election takes ~3 s and not
~15 s; no update check (it would call a HashiCorp server: no traffic leaves
loopback); DNS and gRPC off. The binary is Consul 1.15.4, the last MPL-2.0
release, built by `scripts/bootstrap.sh` into `.tools/`.

Children die with their parent (PR_SET_PDEATHSIG), so a test or drill that
dies leaves no agent behind.
"""
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

SESSION_TTL_MIN = "100ms"
_REPO_TOOLS = Path(__file__).resolve().parents[1] / ".tools" / "bin" / "consul"


def consul_binary() -> str:
    """$UNDERSTUDY_CONSUL, then the bootstrap's build, then `consul` on the PATH."""
    for candidate in (os.environ.get("UNDERSTUDY_CONSUL"), str(_REPO_TOOLS), shutil.which("consul")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError("no consul binary: scripts/bootstrap.sh builds Consul 1.15.4 into .tools/bin/consul "
                       "(or set UNDERSTUDY_CONSUL to one)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _get_json(url: str, token: str | None = None, timeout: float = 1.0):
    request = urllib.request.Request(url, headers={"X-Consul-Token": token} if token else {})
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        return json.loads(resp.read() or b"null")


def wait_stopped(pid: int, timeout_s: float = 2.0) -> None:
    """Until every thread of `pid` is stopped (state T in /proc), or `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            states = []
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/stat") as fh:
                    states.append(fh.read().rpartition(")")[2].split()[0])
        except (FileNotFoundError, ProcessLookupError):
            return  # gone: nothing left to answer
        if states and all(state in ("T", "t") for state in states):
            return
        time.sleep(0.001)
    raise RuntimeError(f"process {pid} did not stop within {timeout_s} s of SIGSTOP")


class ConsulAgent:
    """One `consul agent` process. `config` is merged into the agent's JSON config file."""

    def __init__(self, name: str, workdir: Path, *, dev: bool, config: dict | None = None,
                 log_path: Path | None = None):
        self.name = name
        self.workdir = Path(workdir)
        self.dev = dev
        self.ports = {"http": free_port(), "serf_lan": free_port(), "serf_wan": free_port(), "server": free_port()}
        self.extra = config or {}
        self.log_path = log_path or self.workdir / f"consul-{name}.log"
        self.proc: subprocess.Popen | None = None
        self.frozen = False

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.ports['http']}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def serf_address(self) -> str:
        return f"127.0.0.1:{self.ports['serf_lan']}"

    def _config(self) -> dict:
        config = {
            "node_name": self.name, "bind_addr": "127.0.0.1", "client_addr": "127.0.0.1",
            "advertise_addr": "127.0.0.1", "disable_update_check": True, "log_level": "info",
            "session_ttl_min": SESSION_TTL_MIN, "performance": {"raft_multiplier": 1},
            "ports": {"http": self.ports["http"], "serf_lan": self.ports["serf_lan"],
                      "serf_wan": self.ports["serf_wan"], "server": self.ports["server"],
                      "dns": -1, "grpc": -1, "grpc_tls": -1},
        }
        if not self.dev:
            config.update(server=True, data_dir=str(self.workdir / f"data-{self.name}"))
        config.update(self.extra)
        return config

    def start(self) -> "ConsulAgent":
        self.workdir.mkdir(parents=True, exist_ok=True)
        config_path = self.workdir / f"consul-{self.name}.json"
        config_path.write_text(json.dumps(self._config(), indent=2))
        argv = [consul_binary(), "agent", *(["-dev"] if self.dev else []), "-config-file", str(config_path)]
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         preexec_fn=_die_with_parent)
        self.frozen = False
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def leader(self, token: str | None = None) -> str:
        """The leader's RPC address as this agent sees it ('' while there is none)."""
        try:
            return _get_json(f"{self.url}/v1/status/leader", token, timeout=0.5) or ""
        except (OSError, ValueError):
            return ""

    def wait_ready(self, timeout_s: float = 30.0, token: str | None = None) -> "ConsulAgent":
        """Until this agent answers and knows a leader."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive:
                raise RuntimeError(f"consul agent {self.name} exited with {self.proc.returncode}; "
                                   f"see {self.log_path}")
            if self.leader(token):
                return self
            time.sleep(0.05)
        raise RuntimeError(f"consul agent {self.name} had no leader after {timeout_s:.0f} s; see {self.log_path}")

    def freeze(self) -> None:
        """SIGSTOP, and returns once every thread has stopped: the signal is delivered to each
        of Go's threads as it next enters the kernel, and until then the agent still answers."""
        self.proc.send_signal(signal.SIGSTOP)
        self.frozen = True
        wait_stopped(self.proc.pid)

    def thaw(self) -> None:
        self.proc.send_signal(signal.SIGCONT)
        self.frozen = False

    def kill(self) -> None:
        if self.alive:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()
        self.frozen = False

    def stop(self, timeout_s: float = 10.0) -> None:
        if not self.alive:
            return
        if self.frozen:
            self.thaw()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()


class ConsulDev:
    """A single in-memory dev agent (a server and its own leader)."""

    def __init__(self, workdir: Path | None = None, config: dict | None = None):
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="consul-dev-"))
        self.agent = ConsulAgent("consul-dev", self.workdir, dev=True, config=config)

    @property
    def urls(self) -> list[str]:
        return [self.agent.url]

    def start(self, timeout_s: float = 30.0, token: str | None = None) -> "ConsulDev":
        self.agent.start().wait_ready(timeout_s, token)
        return self

    def stop(self) -> None:
        self.agent.stop()


class ConsulCluster:
    """Three Consul servers on loopback that elect a leader among themselves."""

    def __init__(self, workdir: Path, size: int = 3, config: dict | None = None, prefix: str = "consul"):
        self.workdir = Path(workdir)
        self.servers = [ConsulAgent(f"{prefix}-{i + 1}", self.workdir, dev=False, config=config)
                        for i in range(size)]
        joins = [s.serf_address for s in self.servers]
        for server in self.servers:
            server.extra = {"bootstrap_expect": size, "retry_join": [j for j in joins if j != server.serf_address],
                            "retry_interval": "1s", **server.extra}

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]

    def start(self, timeout_s: float = 60.0) -> "ConsulCluster":
        for server in self.servers:
            server.start()
        for server in self.servers:
            server.wait_ready(timeout_s)
        return self

    def leader(self) -> ConsulAgent | None:
        """The server that is leader now, as a majority of the live ones sees it."""
        seen = [s.leader() for s in self.servers if s.alive and not s.frozen]
        for address in set(seen):
            if address and seen.count(address) * 2 > len(self.servers) - 1:
                port = int(address.rpartition(":")[2])
                return next((s for s in self.servers if s.ports["server"] == port), None)
        return None

    def wait_leader(self, timeout_s: float = 30.0, not_this: ConsulAgent | None = None) -> ConsulAgent:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            leader = self.leader()
            if leader is not None and leader is not not_this:
                return leader
            time.sleep(0.05)
        raise RuntimeError(f"no Consul leader within {timeout_s:.0f} s; see {self.workdir}")

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


def wait_http(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            _get_json(f"{url}/v1/status/leader", timeout=0.5)
            return
        except (OSError, urllib.error.URLError, ValueError):
            time.sleep(0.05)
    raise RuntimeError(f"consul at {url} did not answer within {timeout_s:.0f} s")
