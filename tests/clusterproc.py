"""A two-node cluster as real processes: the simulated exchange, a real
redis-server and two `understudy node run` processes in cluster mode."""
import asyncio
import contextlib
import time

import aiohttp

from tests.nodeproc import ADMIN_TOKEN, NodeProcess, node_env, node_settings, to_toml
from tests.redisproc import RedisProcess, free_port
from tests.simproc import SimProcess

HEARTBEAT_KEY = "test-heartbeat-key-0123456789abcdef0123456789"


class Cluster:
    def __init__(self, sim, redis, tmp_path, silence_s: float = 1.0, ttl_s: float = 1.0, lock: dict | None = None):
        self.sim, self.redis, self.tmp_path = sim, redis, tmp_path
        self.lock = lock  # the [lock] section, when not the Redis given
        self.ports = {"sg-1": free_port(), "sg-2": free_port()}
        self.admin_ports = {"sg-1": free_port(), "sg-2": free_port()}
        self.silence_s, self.ttl_s = silence_s, ttl_s
        self.nodes: dict[str, NodeProcess] = {}
        self.env = {**node_env(sim), "TEST_HEARTBEAT_KEY": HEARTBEAT_KEY}

    def config_path(self, node: str):
        peer = "sg-2" if node == "sg-1" else "sg-1"
        settings = node_settings(self.sim, self.tmp_path / f"state-{node}", node_id=node,
                                 node={"mode": "cluster"})
        settings["admin"]["port"] = self.admin_ports[node]
        settings["lock"] = self.lock or {"backend": "redis", "ttl_s": self.ttl_s, "redis": {"port": self.redis.port}}
        settings["cluster"] = {"peer": peer, "bind_host": "127.0.0.1", "bind_port": self.ports[node],
                               "peer_host": "127.0.0.1", "peer_port": self.ports[peer],
                               "heartbeat_key": {"env": "TEST_HEARTBEAT_KEY"}, "silence_s": self.silence_s,
                               "peer_admin_url": f"http://127.0.0.1:{self.admin_ports[peer]}"}
        path = self.tmp_path / f"{node}.toml"
        path.write_text(to_toml(settings))
        return path

    def start(self, node: str) -> NodeProcess:
        proc = NodeProcess(self.config_path(node), self.env, self.tmp_path / f"{node}.log").start()
        self.nodes[node] = proc
        return proc

    def stop(self) -> None:
        for proc in self.nodes.values():
            proc.stop()

    async def status(self, session, node: str) -> dict | None:
        try:
            async with session.get(f"{self.nodes[node].admin_url}/status",
                                   timeout=aiohttp.ClientTimeout(total=1)) as resp:
                return await resp.json()
        except (aiohttp.ClientError, asyncio.TimeoutError):
            return None

    async def wait_for(self, session, predicate, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        statuses = {}
        while time.monotonic() < deadline:
            statuses = {n: await self.status(session, n) for n in self.nodes}
            if predicate(statuses):
                return statuses
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}: " + str(
            {n: (s or {}).get("ha") for n, s in statuses.items()}))

    async def post(self, session, node: str, path: str, body: dict | None = None):
        async with session.post(f"{self.nodes[node].admin_url}{path}", json=body or {},
                                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as resp:
            return resp.status, await resp.json()


def role(status: dict | None) -> str | None:
    return status["ha"]["role"] if status else None


ACKNOWLEDGED = ("NEW", "PARTIALLY_FILLED")


def quoting_primary(statuses: dict) -> str | None:
    """The one node quoting both sides with orders the venue has acknowledged, if exactly one is
    (an order merely sent may yet be refused: it is no quote)."""
    quoting = [n for n, s in statuses.items() if s and role(s) == "primary" and s["strategy"]["quoting"]
               and {o["side"] for o in s["orders"] if o["status"] in ACKNOWLEDGED} == {"BUY", "SELL"}]
    return quoting[0] if len(quoting) == 1 else None


@contextlib.contextmanager
def running_pair(tmp_path, *sim_args: str):
    """The sim, a redis-server and both nodes started, all stopped afterwards whatever happens."""
    sim = SimProcess(tmp_path, (("test-key-a", "test-secret-a"),), sim_args, True)
    redis = cluster = None
    try:
        sim.start()
        redis = RedisProcess(tmp_path).start()
        cluster = Cluster(sim, redis, tmp_path)
        cluster.start("sg-1")
        cluster.start("sg-2")
        yield cluster
    finally:
        if cluster is not None:
            cluster.stop()
        if redis is not None:
            redis.kill()
        sim.stop()
