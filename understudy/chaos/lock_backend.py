"""The drill's lock backend: a fresh one for every drill, in the root
namespace (the witness), on loopback. A node reaches it only through its own
toxiproxy links, one per server, so one node's lock traffic can be cut or
rerouted while the other's flows.

- `redis`: one redis-server, with AOF (fsync always) when the scenario asks
  for persistence, in memory otherwise.
- `consul`: Consul 1.15.4 with the settings the lock needs (`consul_agent.py`).
  A dev agent (one server, in memory) unless the scenario needs more: data
  that survives a restart (one server with a data directory) or a leader to
  kill (three servers, each with its own data directory).

Processes are started from the drill's own thread, never from a worker
thread: their PR_SET_PDEATHSIG fires when the *thread* that started them
exits, and a worker thread may exit while the drill still needs them.
"""
import json
import re
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from ..config import LockSection, lock_frees_within_s
from ..consul_agent import ConsulAgent, ConsulCluster, ConsulDev
from ..demo import EXAMPLES, LOCKS, _free_port
from .processes import DrillChild

BACKENDS = LOCKS  # each with its example configs: EXAMPLES[backend]
PROBE_TIMEOUT_S = 2.0
SERVER_READY_S = 30.0
REDIS_READY = re.compile("Ready to accept connections")


class LockBackendError(RuntimeError):
    """The lock backend could not be started, restarted or asked."""


def release_bound_s(lock: dict) -> float:
    """How long after a silent holder's last renewal the backend may take to free the key (the
    config's own rule: one ttl on Redis, two on Consul), for a `[lock]` table as written in TOML."""
    import msgspec

    return lock_frees_within_s(msgspec.convert(lock, LockSection))


class RedisLock:
    name = "redis"

    def __init__(self, run_dir: Path, persistence: bool = False, servers: int = 1):
        if servers != 1:
            raise LockBackendError("a Redis lock has one server")
        self.dir = run_dir / "redis"
        self.log_path = run_dir / "redis.log"
        self.persistence = persistence
        self.port = 0
        self.child: DrillChild | None = None

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{self.port}"]

    @property
    def restart_detail(self) -> str:
        return "with persistence (AOF, fsync always)" if self.persistence else "without persistence"

    def start(self) -> None:
        if shutil.which("redis-server") is None:
            raise LockBackendError("redis-server is not installed (scripts/bootstrap.sh installs it)")
        self.dir.mkdir(exist_ok=True)
        self.port = _free_port()
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.persistence else ["--appendonly", "no"]
        self.child = DrillChild("redis", ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                          "--save", "", *persistence, "--dir", str(self.dir)], self.log_path)
        self.child.wait_for(REDIS_READY, 10)

    def kill_all(self) -> None:
        self.child.kill()

    def start_all(self) -> None:
        """Again, on the same port and data directory."""
        self.child.start()

    def wait_serving(self, timeout_s: float = 10.0) -> None:
        self.child.wait_for(REDIS_READY, timeout_s)

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()

    def configure(self, lock: dict, links) -> None:
        """Points a node's `[lock]` table at its link; the witness's ACL user is not made here."""
        redis = lock["redis"]
        redis.pop("username", None)
        redis.pop("password", None)
        redis.update(host=links[0].host, port=links[0].port)

    def probe(self, host: str, port: int) -> str:
        """What a Redis PING at host:port gets: "ok", "nonsense: ..." (something answered that is not
        Redis) or "unreachable: ..." (refused, reset or silent)."""
        import redis

        client = redis.Redis(host=host, port=port, socket_timeout=PROBE_TIMEOUT_S,
                             socket_connect_timeout=PROBE_TIMEOUT_S)
        try:
            return "ok" if client.ping() else "nonsense: no PONG"
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            return f"unreachable: {type(exc).__name__}"
        except redis.RedisError as exc:
            return f"nonsense: {type(exc).__name__}"
        finally:
            client.close()


class ConsulLock:
    name = "consul"

    def __init__(self, run_dir: Path, persistence: bool = False, servers: int = 1):
        workdir = run_dir / "consul"
        self.persistence = persistence
        if servers == 1 and not persistence:
            self.cluster: ConsulDev | ConsulCluster = ConsulDev(workdir)
            self.agents: list[ConsulAgent] = [self.cluster.agent]
        else:
            self.cluster = ConsulCluster(workdir, size=servers, prefix="consul")
            self.agents = list(self.cluster.servers)

    @property
    def addresses(self) -> list[str]:
        return [a.address for a in self.agents]

    @property
    def restart_detail(self) -> str:
        return "with persistence (a server with a data directory)" if self.persistence else \
            "without persistence (a dev agent, in memory)"

    def start(self) -> None:
        try:
            self.cluster.start(SERVER_READY_S)
            if isinstance(self.cluster, ConsulCluster):
                self.cluster.wait_leader(SERVER_READY_S)
        except RuntimeError as exc:
            raise LockBackendError(str(exc)) from exc

    def agent(self, name: str) -> ConsulAgent:
        return next(a for a in self.agents if a.name == name)

    def kill_all(self) -> None:
        for agent in self.agents:
            agent.kill()

    def start_all(self) -> None:
        """Again, on the same ports (and data directories, where they have one)."""
        for agent in self.agents:
            agent.start()

    def wait_serving(self, timeout_s: float = SERVER_READY_S) -> None:
        """Every server answers and knows a leader (blocking: call it from a worker thread)."""
        try:
            for agent in self.agents:
                agent.wait_ready(timeout_s)
        except RuntimeError as exc:
            raise LockBackendError(str(exc)) from exc

    def leader(self) -> str | None:
        """The name of the server a majority sees as leader now (None while there is none)."""
        leader = self.cluster.leader() if isinstance(self.cluster, ConsulCluster) else self.cluster.agent
        return leader.name if leader is not None else None

    def wait_leader(self, timeout_s: float, not_this: str | None = None) -> str:
        """Blocking: call it from a worker thread."""
        if not isinstance(self.cluster, ConsulCluster):
            raise LockBackendError("a Consul dev agent has no election to wait for")
        try:
            return self.cluster.wait_leader(timeout_s, self.agent(not_this) if not_this else None).name
        except RuntimeError as exc:
            raise LockBackendError(str(exc)) from exc

    def stop(self) -> None:
        self.cluster.stop()

    def configure(self, lock: dict, links) -> None:
        """Points a node's `[lock]` table at its links, one per server; the agents have no ACLs, so no token."""
        consul = lock["consul"]
        consul.pop("token", None)
        consul["urls"] = [f"http://{link.address}" for link in links]

    def probe(self, host: str, port: int) -> str:
        """What asking for the leader at host:port gets: "ok", "nonsense: ..." (an answer that is not
        Consul's) or "unreachable: ..." (refused, reset or silent)."""
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/v1/status/leader", timeout=PROBE_TIMEOUT_S) as resp:
                body = resp.read()
        except urllib.error.HTTPError as exc:
            return f"nonsense: HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            return f"unreachable: {type(getattr(exc, 'reason', exc)).__name__}"
        try:
            leader = json.loads(body)
        except ValueError:
            return f"nonsense: {body[:40]!r}"
        return "ok" if isinstance(leader, str) else f"nonsense: {body[:40]!r}"


def make(backend: str, run_dir: Path, persistence: bool = False, servers: int = 1) -> RedisLock | ConsulLock:
    if backend == "redis":
        return RedisLock(run_dir, persistence, servers)
    if backend == "consul":
        return ConsulLock(run_dir, persistence, servers)
    raise LockBackendError(f"unknown lock backend {backend!r}; known: {', '.join(BACKENDS)}")
