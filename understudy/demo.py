"""`understudy demo`: the simulated exchange, a private lock backend (a
redis-server, or with `--lock consul` a Consul 1.15.4 dev agent) and two
nodes as separate processes with their own configs (made from
`examples/cluster/` or `examples/cluster-consul/`). It shows a live view,
SIGKILLs the primary once it is quoting and prints the takeover timeline,
restarts the dead node (which rejoins as standby), switches back, and prints
a summary. `--keep-running` leaves the cluster up to explore with
`understudy status --config run/demo/sg-1.toml` and friends.
"""
import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = {"redis": REPO / "examples" / "cluster", "consul": REPO / "examples" / "cluster-consul"}
LOCKS = tuple(EXAMPLES)
READY = re.compile(r"SIM READY (http://\S+)")
NODES = ("sg-1", "sg-2")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Child:
    """A child process whose output goes to a log file in the run directory."""

    def __init__(self, name: str, args: list[str], log_path: Path, env: dict | None = None):
        self.name, self.args, self.log_path, self.env = name, args, log_path, env
        self.start()

    def start(self) -> None:
        self._offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._log = open(self.log_path, "a")
        self.proc = subprocess.Popen(self.args, stdout=self._log, stderr=subprocess.STDOUT, env=self.env)

    def output(self) -> str:
        with open(self.log_path) as fh:
            fh.seek(self._offset)
            return fh.read()

    def wait_for(self, pattern: re.Pattern, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = pattern.search(self.output())
            if match:
                return match
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log_path}")
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start in {timeout:.0f} s; see {self.log_path}")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self._log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def _lock_replacements(lock: str, lock_address: str) -> dict:
    """The example's `[lock]` pointed at this run's backend, which has no password or ACL token."""
    if lock == "redis":
        host, _, port = lock_address.rpartition(":")
        return {r'^host = "witness.internal"': f'host = "{host}"', r'^port = 6379': f"port = {port}",
                r'^username = .*\n': "", r'^password = .*\n': ""}
    # Before the admin token's rule below, which would match this line too.
    return {r'^urls = .*': f'urls = ["http://{lock_address}"]', r'^token = \{ file = "[^"]*consul_token" \}\n': ""}


def _node_config(node: str, sim_url: str, lock: str, lock_address: str, ports: dict, run_dir: Path) -> str:
    """The shipped example for `node` and the lock backend, pointed at this run's venue, lock and ports."""
    peer = "sg-2" if node == "sg-1" else "sg-1"
    ws_url = sim_url.replace("http://", "ws://")
    text = (EXAMPLES[lock] / f"{node}.toml").read_text()
    replacements = {
        **_lock_replacements(lock, lock_address),
        r'^rest_url = ".*"': f'rest_url = "{sim_url}"',
        r'^stream_url = ".*"': f'stream_url = "{ws_url}"',
        r'^ws_api_url = ".*"': f'ws_api_url = "{ws_url}/ws-api/v3"',
        r'^state_dir = ".*"': f'state_dir = "{run_dir / ("state-" + node)}"',
        r'^api_key = .*': 'api_key = { env = "UNDERSTUDY_API_KEY" }',
        r'^api_secret = .*': 'api_secret = { env = "UNDERSTUDY_API_SECRET" }',
        r'^token = .*': 'token = { env = "UNDERSTUDY_ADMIN_TOKEN" }',
        r'^heartbeat_key = .*': 'heartbeat_key = { env = "UNDERSTUDY_HEARTBEAT_KEY" }',
        r'^host = "0.0.0.0"': 'host = "127.0.0.1"',
        r'^port = 9100': f'port = {ports["admin"][node]}',
        r'^bind_host = .*': 'bind_host = "127.0.0.1"',
        r'^bind_port = .*': f'bind_port = {ports["heartbeat"][node]}',
        r'^peer_host = .*': 'peer_host = "127.0.0.1"',
        r'^peer_port = .*': f'peer_port = {ports["heartbeat"][peer]}',
        r'^peer_admin_url = .*': f'peer_admin_url = "http://127.0.0.1:{ports["admin"][peer]}"',
    }
    for pattern, replacement in replacements.items():
        text = re.sub(pattern, replacement, text, flags=re.M)
    return text


class DemoRun:
    """A fresh run directory, the simulated exchange and the processes started
    in it, with the secrets they share in the environment; `stop` ends them all."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.children: list[Child] = []
        self.started = time.monotonic()

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {text}", flush=True)

    def start_sim(self, seed: int, flow_rate: float) -> str:
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.run_dir.mkdir(parents=True)
        self.key, self.secret, self.token = secrets.token_hex(24), secrets.token_hex(24), secrets.token_hex(24)
        self.env = {**os.environ, "UNDERSTUDY_API_KEY": self.key, "UNDERSTUDY_API_SECRET": self.secret,
                    "UNDERSTUDY_ADMIN_TOKEN": self.token}
        self.audit_path = self.run_dir / "audit.jsonl"
        sim = Child("sim", [sys.executable, "-m", "understudy.cli", "sim", "--port", "0", "--seed", str(seed),
                            "--flow-rate", str(flow_rate), "--account", f"{self.key}:{self.secret}",
                            "--audit-log", str(self.audit_path)], self.run_dir / "sim.log")
        self.children.append(sim)
        self.sim_url = sim.wait_for(READY, 20).group(1)
        self.say(f"simulated exchange at {self.sim_url}")
        return self.sim_url

    def stop(self) -> None:
        for child in reversed(self.children):
            if child.proc.poll() is None:
                child.stop()

    def audit(self) -> list[dict]:
        return [json.loads(line) for line in self.audit_path.read_text().splitlines() if line.strip()]


class Demo(DemoRun):
    def __init__(self, run_dir: Path, lock: str = "redis"):
        super().__init__(run_dir)
        if lock not in LOCKS:
            raise ValueError(f"unknown lock backend {lock!r}; known: {', '.join(LOCKS)}")
        self.lock = lock
        self.consul = None  # the ConsulDev, with --lock consul
        self.nodes: dict[str, Child] = {}
        self.admin: dict[str, str] = {}

    def start(self) -> None:
        sim_url = self.start_sim(seed=42, flow_rate=3)
        self.env["UNDERSTUDY_HEARTBEAT_KEY"] = secrets.token_hex(32)
        lock_address = self._start_redis() if self.lock == "redis" else self._start_consul()
        ports = {"admin": {n: _free_port() for n in NODES}, "heartbeat": {n: _free_port() for n in NODES}}
        for node in NODES:
            (self.run_dir / f"{node}.toml").write_text(
                _node_config(node, sim_url, self.lock, lock_address, ports, self.run_dir))
            self.admin[node] = f"http://127.0.0.1:{ports['admin'][node]}"
            self.start_node(node)

    def _start_redis(self) -> str:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed (scripts/bootstrap.sh installs it)")
        redis_port = _free_port()
        redis = Child("redis", ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", str(self.run_dir)], self.run_dir / "redis.log")
        self.children.append(redis)
        redis.wait_for(re.compile("Ready to accept connections"), 10)
        self.say(f"lock backend: redis-server on 127.0.0.1:{redis_port}")
        return f"127.0.0.1:{redis_port}"

    def _start_consul(self) -> str:
        from .consul_agent import ConsulDev

        # Built by scripts/bootstrap.sh; session_ttl_min lowered for the example's 0.5 s TTL.
        self.consul = ConsulDev(self.run_dir / "consul").start()
        self.say(f"lock backend: Consul dev agent on {self.consul.agent.address} (log {self.consul.agent.log_path})")
        return self.consul.agent.address

    def stop(self) -> None:
        super().stop()  # the nodes first: they release the lock on the way out
        if self.consul is not None:
            self.consul.stop()

    def start_node(self, node: str) -> None:
        child = Child(node, [sys.executable, "-m", "understudy.cli", "node", "run", "--config",
                             str(self.run_dir / f"{node}.toml")], self.run_dir / f"{node}.log", self.env)
        self.nodes[node] = child
        if child not in self.children:
            self.children.append(child)

    async def statuses(self, session) -> dict:
        out = {}
        for node, url in self.admin.items():
            try:
                async with session.get(f"{url}/status", timeout=aiohttp.ClientTimeout(total=1)) as resp:
                    out[node] = await resp.json()
            except (aiohttp.ClientError, asyncio.TimeoutError):
                out[node] = None
        return out

    def view(self, statuses: dict) -> None:
        parts = []
        for node, s in statuses.items():
            if s is None:
                parts.append(f"{node}: down")
                continue
            ha = s["ha"]
            bids = [o["price"] for o in s["orders"] if o["side"] == "BUY"]
            asks = [o["price"] for o in s["orders"] if o["side"] == "SELL"]
            quotes = f"{max(bids) if bids else '-'} / {min(asks) if asks else '-'}"
            age = ha["peer"]["heartbeat_age_s"]
            parts.append(f"{node}: {ha['role']:8} epoch {ha['epoch'] or '-'}  hb {age if age is not None else '-'}s  "
                         f"quotes {quotes}  fills {s['fills']['count']}")
        self.say(" | ".join(parts))

    async def wait(self, session, predicate, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        last_view = 0.0
        while time.monotonic() < deadline:
            statuses = await self.statuses(session)
            if time.monotonic() - last_view >= 1.0:
                self.view(statuses)
                last_view = time.monotonic()
            if predicate(statuses):
                return statuses
            await asyncio.sleep(0.05)
        raise RuntimeError(f"timed out waiting for {what}")



def _quoting(statuses: dict) -> str | None:
    quoting = [n for n, s in statuses.items() if s and s["ha"]["role"] == "primary" and s["strategy"]["quoting"]
               and {o["side"] for o in s["orders"]} == {"BUY", "SELL"}]
    return quoting[0] if len(quoting) == 1 else None


def _epoch(client_id: str) -> int:
    return int(client_id.split(".")[0][1:], 36)


def _overlaps(records: list[dict]) -> int:
    """Instants at which orders of two epochs were live at once, from the venue's audit log."""
    created = {r["client_order_id"]: r["recv_us"] for r in records
               if r["kind"] == "request" and r["action"] == "new" and r["outcome"] == "accepted"}
    ended = {r["client_order_id"]: r["ts_us"] for r in records if r["kind"] == "order_done"}
    intervals = sorted((start, ended.get(cid, 2**62), _epoch(cid)) for cid, start in created.items())
    clashes = 0
    for i, (start, end, epoch) in enumerate(intervals):
        for other_start, _, other_epoch in intervals[i + 1:]:
            if other_start >= end:
                break
            clashes += other_epoch != epoch
    return clashes


async def _scenario(demo: Demo, watch_s: float) -> dict:
    summary: dict = {}
    async with aiohttp.ClientSession() as session:
        statuses = await demo.wait(session, _quoting, 30, "a quoting primary")
        primary = _quoting(statuses)
        standby = "sg-2" if primary == "sg-1" else "sg-1"
        demo.say(f"{primary} holds the lock and quotes; {standby} is the hot standby. Trading for {watch_s:.0f} s ...")
        end = time.monotonic() + watch_s
        await demo.wait(session, lambda s: time.monotonic() > end, watch_s + 5, "trading")

        demo.say(f"*** SIGKILL {primary} ***")
        killed_us = time.time_ns() // 1000
        demo.nodes[primary].kill()
        statuses = await demo.wait(session, lambda s: _quoting({standby: s[standby]}) == standby, 10, "takeover")
        new_epoch = statuses[standby]["ha"]["epoch"]
        first_quote_us = min(r["recv_us"] for r in demo.audit() if r["kind"] == "request" and r["action"] == "new"
                             and r["outcome"] == "accepted" and _epoch(r["client_order_id"]) == new_epoch)
        takeover_s = (first_quote_us - killed_us) / 1e6
        transitions = statuses[standby]["ha"]["transitions"]
        demo.say(f"takeover by {standby} at epoch {new_epoch}: first new quote accepted {takeover_s:.3f} s after the kill")
        for t in transitions[-3:]:
            demo.say(f"    {standby}: {t['from']} -> {t['to']}: {t['reason']}")
        summary.update(killed=primary, new_primary=standby, takeover_s=round(takeover_s, 3))

        demo.say(f"restarting {primary}: it rejoins as standby (non-preemptive)")
        demo.start_node(primary)
        await demo.wait(session, lambda s: s[primary] is not None and s[primary]["ha"]["role"] == "standby"
                        and s[standby]["ha"]["peer"]["ready"], 30, "rejoin")
        await asyncio.sleep(1.0)

        demo.say(f"switching back: understudy switchover --to {primary}")
        async with session.post(f"{demo.admin[standby]}/switchover", json={"to": primary},
                                headers={"Authorization": f"Bearer {demo.token}"}) as resp:
            result = await resp.json()
        demo.say(f"switchover: {result}")
        statuses = await demo.wait(session, lambda s: _quoting(s) == primary, 10, "switchback")
        records = demo.audit()
        last_epoch = statuses[primary]["ha"]["epoch"]
        created = [(r["recv_us"], _epoch(r["client_order_id"])) for r in records
                   if r["kind"] == "request" and r["action"] == "new" and r["outcome"] == "accepted"]
        ended = [r["ts_us"] for r in records if r["kind"] == "order_done" and _epoch(r["client_order_id"]) == new_epoch]
        gap_ms = (min(t for t, e in created if e == last_epoch) - max(ended)) / 1000
        summary.update(switchover_ok=bool(result.get("ok")), switchover_gap_ms=round(gap_ms, 1),
                       overlapping_epochs=_overlaps(records), final_primary=primary)
        demo.say(f"switchover quote gap {gap_ms:.1f} ms; orders of two epochs live at once: "
                 f"{summary['overlapping_epochs']}")
    return summary


def run(duration: float, run_dir: Path, keep_running: bool = False, lock: str = "redis") -> int:
    demo = Demo(run_dir, lock)
    print(f"run directory: {run_dir} (configs, logs, the venue's audit log)")
    try:
        demo.start()
        summary = asyncio.run(_scenario(demo, duration))
        ok = summary["takeover_s"] < 3.0 and summary["overlapping_epochs"] == 0 and summary["switchover_ok"]
        print(json.dumps({"demo": "failover", "lock": lock, "ok": ok, **summary}))
        if keep_running:
            print(f"\nThe cluster keeps running. Try:\n  .venv/bin/understudy status --config {run_dir}/sg-1.toml\n"
                  f"  .venv/bin/understudy history --config {run_dir}/sg-1.toml\n"
                  f"(secrets are in this process's environment; run those commands with UNDERSTUDY_* set as in "
                  f"{run_dir}/env)\nCtrl-C stops everything.")
            (run_dir / "env").write_text("".join(f"export {k}={v}\n" for k, v in demo.env.items()
                                                 if k.startswith("UNDERSTUDY_")))
            os.chmod(run_dir / "env", 0o600)
            try:
                signal.pause()
            except KeyboardInterrupt:
                pass
        return 0 if ok else 1
    finally:
        demo.stop()
