"""One drill run: a fresh pair on the lab, the faults a scenario injects, and
the evidence afterwards.

Each node runs the shipped example config for the drill's lock backend
(`examples/cluster/` for Redis, `examples/cluster-consul/` for Consul) pointed
at this run's venue account, lock backend and proxies:

    node ns ── uplink ──> toxiproxy (root ns) ──> sim (REST), sim (streams),
                                                  the lock: redis, or each Consul server
                                                  (the node's own sim listener: bannable alone;
                                                   one lock link per server)
    node ns ── peer link (UDP heartbeats, netfilter rules) ── other node ns

Everything the drill does is recorded as a `DrillEvent` at the instant it is
done, so the checker can line faults up with the venue's audit log.
"""
import asyncio
import os
import secrets
import sys
import time
import tomllib
from pathlib import Path

import aiohttp

from . import lock_backend
from .evidence import DrillEvent, Evidence, read_audit, read_node_log_file
from .lab import NODES, Lab
from .netfilter import HeartbeatCut, UdpPath
from .other_client import OrderList, OtherClient
from .processes import STOP_TIMEOUT_S, DrillChild
from .toxics import Link

REPO = Path(__file__).resolve().parents[2]
ADMIN_PORT = 9100
HEARTBEAT_PORT = 7400
NODE_COMMAND = (sys.executable, "-m", "understudy.cli", "node", "run")
STATUS_TIMEOUT_S = 0.5
PROBE_TIMEOUT_S = 10.0
MAX_BAN_S = 60.0  # no drill bans longer; a ban lifts by itself, should the drill die before lifting it


class DrillError(RuntimeError):
    """The drill could not do what the scenario asked (not an invariant violation)."""


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def to_toml(config: dict) -> str:
    """Tables of scalars and lists of them, nested tables as [a.b]; a secret reference stays inline."""
    lines: list[str] = []

    def table(name: str, body: dict) -> None:
        lines.append(f"[{name}]")
        nested = []
        for key, value in body.items():
            if isinstance(value, dict) and not set(value) <= {"env", "file"}:
                nested.append((key, value))
            else:
                lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
        for key, value in nested:
            table(f"{name}.{key}", value)

    for name, body in config.items():
        table(name, body)
    return "\n".join(lines)


def _quoting_primary(statuses: dict) -> str | None:
    quoting = [n for n, s in statuses.items() if s and s["ha"]["role"] == "primary" and s["strategy"]["quoting"]
               and {o["side"] for o in s["orders"]} == {"BUY", "SELL"}]
    return quoting[0] if len(quoting) == 1 else None


def _role(status: dict | None) -> str | None:
    return status["ha"]["role"] if status else None


class Drill:
    """One run of one scenario on a lab."""

    def __init__(self, lab: Lab, run_dir: Path, persistence: bool = False,
                 node_command: tuple[str, ...] = NODE_COMMAND, lock: str = "redis", lock_servers: int = 1):
        self.lab = lab
        self.run_dir = run_dir
        self.persistence = persistence
        self.lock = lock_backend.make(lock, run_dir, persistence, lock_servers)
        self.examples = lock_backend.EXAMPLES[lock]
        self.node_command = tuple(node_command)
        self.events: list[DrillEvent] = []
        self.problems: list[str] = []  # what the scenario expected to see and did not
        self.roles_at_fault: tuple[str, str] | None = None  # (primary, standby) when the fault began
        self.api_key, self.api_secret = lab.take_account()
        self.admin_token = secrets.token_hex(16)
        self.env = {**os.environ, "UNDERSTUDY_API_KEY": self.api_key, "UNDERSTUDY_API_SECRET": self.api_secret,
                    "UNDERSTUDY_ADMIN_TOKEN": self.admin_token,
                    "UNDERSTUDY_HEARTBEAT_KEY": secrets.token_hex(32),
                    "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        self.nodes: dict[str, DrillChild] = {}
        self.links: dict[str, dict[str, Link]] = {}  # node -> "rest", "streams" -> its link to the venue
        self.lock_links: dict[str, list[Link]] = {}  # node -> its links to the lock, one per server
        self.cuts: dict[tuple[str, str], HeartbeatCut] = {}
        self.session: aiohttp.ClientSession | None = None
        self.started = time.time()
        self.ended = 0.0
        self._audit_offset = lab.audit_size()
        self._load_task: asyncio.Task | None = None
        self.loader_orders = 0
        example = tomllib.loads((self.examples / "sg-1.toml").read_text())
        self.ttl_s = example["lock"]["ttl_s"]
        # A silent holder's key is free this long after its last renewal: ttl on Redis, 2 x ttl on Consul.
        self.lock_frees_s = lock_backend.release_bound_s(example["lock"])
        self.silence_s = example["cluster"]["silence_s"]
        self.handover_after_s = example["cluster"].get("handover_after_s", 2.0)  # the config's default
        self.banned: set[str] = set()  # nodes whose venue listener is banned now
        self.foreign_client_ids: set[str] = set()  # orders the drill placed on the pair's account itself
        self.order_list: OrderList | None = None
        self.order_list_open: dict[str, bool] = {}  # when it was looked at (e.g. "at the kill") -> still open

    # -- set-up and tear-down ------------------------------------------------------
    async def __aenter__(self) -> "Drill":
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.session = aiohttp.ClientSession()
        try:
            self.lock.start()
            self._make_links()
            self._make_cuts()
            for node in NODES:
                (self.run_dir / f"{node}.toml").write_text(to_toml(self._config(node)))
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        if self._load_task is not None:
            self._load_task.cancel()
            await asyncio.gather(self._load_task, return_exceptions=True)
        # The standby goes first: a primary stopping first would hand the lock to it on the way out.
        holding = {"primary", "halted", "handing-over"}
        statuses = await self.statuses() if self.session is not None else {}
        order = sorted(self.nodes, key=lambda n: _role(statuses.get(n)) in holding)
        self.record("teardown")
        for node in order:
            if self.nodes[node].alive:
                await self.stop(node, "end of the drill")
        for node in list(self.banned):  # the listeners outlive this drill: the next one must find them clean
            try:
                await self.unban_venue(node)
            except (aiohttp.ClientError, asyncio.TimeoutError):
                pass  # a sim that cannot answer serves nobody; the ban also lifts by itself
        self.ended = time.time()
        for cut in self.cuts.values():
            cut.heal()
        for link in [link for links in self.links.values() for link in links.values()] \
                + [link for links in self.lock_links.values() for link in links]:
            link.destroy()
        self.links.clear()
        self.lock_links.clear()
        self.lock.stop()
        if self.session is not None:
            await self.session.close()

    def _make_links(self) -> None:
        tag = self.run_dir.name[-24:]
        for node in NODES:
            venue = f"127.0.0.1:{self.lab.venue_ports[node]}"
            witness = self.lab.network.nodes[node].witness_ip

            def link(kind: str, upstream: str) -> Link:
                return self.lab.toxiproxy.link(f"{tag}-{secrets.token_hex(3)}-{node}-{kind}", f"{witness}:0", upstream)
            self.links[node] = {kind: link(kind, venue) for kind in ("rest", "streams")}
            self.lock_links[node] = [link(f"lock{i + 1}", address) for i, address in enumerate(self.lock.addresses)]

    def _make_cuts(self) -> None:
        net = self.lab.network
        for src in NODES:
            for dst in NODES:
                if src != dst:
                    self.cuts[(src, dst)] = HeartbeatCut(lambda argv, n=src: net.run_in(n, argv),
                                                         UdpPath(net.nodes[dst].peer_ip, HEARTBEAT_PORT))

    def _config(self, node: str) -> dict:
        peer = next(n for n in NODES if n != node)
        net, peer_net = self.lab.network.nodes[node], self.lab.network.nodes[peer]
        links = self.links[node]
        config = tomllib.loads((self.examples / f"{node}.toml").read_text())
        secret = {"api_key": "UNDERSTUDY_API_KEY", "api_secret": "UNDERSTUDY_API_SECRET"}
        config["node"]["state_dir"] = str(self.run_dir / f"state-{node}")
        config["venue"].update(rest_url=f"http://{links['rest'].address}",
                               stream_url=f"ws://{links['streams'].address}",
                               ws_api_url=f"ws://{links['streams'].address}/ws-api/v3",
                               **{k: {"env": v} for k, v in secret.items()})
        config["admin"].update(host=net.uplink_ip, port=ADMIN_PORT, token={"env": "UNDERSTUDY_ADMIN_TOKEN"})
        self.lock.configure(config["lock"], self.lock_links[node])
        config["cluster"].update(bind_host=net.peer_ip, bind_port=HEARTBEAT_PORT, peer_host=peer_net.peer_ip,
                                 peer_port=HEARTBEAT_PORT, heartbeat_key={"env": "UNDERSTUDY_HEARTBEAT_KEY"},
                                 peer_admin_url=f"http://{peer_net.uplink_ip}:{ADMIN_PORT}")
        return config

    # -- the record ----------------------------------------------------------------
    def record(self, kind: str, node: str | None = None, detail: str = "") -> float:
        at = time.time()
        self.events.append(DrillEvent(at, kind, node, detail))
        return at

    def fault(self, detail: str) -> float:
        """The instant the scenario's fault begins: takeover time is measured from here."""
        return self.record("fault", None, detail)

    def expect(self, condition: bool, problem: str) -> None:
        if not condition:
            self.problems.append(problem)

    # -- processes -----------------------------------------------------------------
    def start(self, *nodes: str) -> None:
        for node in nodes:
            self.record("start", node)
            argv = [*self.node_command, "--config", str(self.run_dir / f"{node}.toml")]
            argv = self.lab.network.nodes[node].exec_argv(argv)
            child = self.nodes.get(node)
            if child is None:
                self.nodes[node] = DrillChild(node, argv, self.run_dir / f"{node}.log", self.env)
            else:
                child.start()

    def kill(self, node: str) -> None:
        self.record("kill", node, "SIGKILL")
        self.nodes[node].kill()

    def freeze(self, node: str) -> None:
        self.record("freeze", node, "SIGSTOP")
        self.nodes[node].freeze()

    def thaw(self, node: str) -> None:
        self.nodes[node].thaw()
        self.record("thaw", node, "SIGCONT")

    async def stop(self, node: str, why: str = "SIGTERM") -> None:
        """SIGTERM: the node cancels its orders and releases the lock, then exits (or is killed)."""
        self.record("stop", node, why)
        clean = await asyncio.to_thread(self.nodes[node].stop)
        self.record("exited", node, "after SIGTERM" if clean else
                    f"ignored SIGTERM for {STOP_TIMEOUT_S:.0f} s: SIGKILLed")

    async def restart(self, node: str) -> None:
        await self.stop(node)
        self.start(node)

    # -- links -----------------------------------------------------------------------
    def cut(self, src: str, dst: str) -> None:
        """Drops heartbeats from `src` to `dst`."""
        self.record("hb-cut", src, dst)
        self.cuts[(src, dst)].cut()

    def heal(self, src: str, dst: str) -> None:
        self.cuts[(src, dst)].heal()
        self.record("hb-heal", src, dst)

    def partition(self) -> None:
        for src, dst in self.cuts:
            self.cut(src, dst)

    def heal_partition(self) -> None:
        for src, dst in self.cuts:
            self.heal(src, dst)

    def lock_down(self, node: str) -> None:
        """Every lock link of the node (one per server) refuses connections; open ones are closed."""
        self.record("lock-down", node)
        for link in self.lock_links[node]:
            link.down()

    def lock_up(self, node: str) -> None:
        for link in self.lock_links[node]:
            link.up()
        self.record("lock-up", node)

    def streams_down(self, node: str) -> None:
        self.record("streams-down", node)
        self.links[node]["streams"].down()

    def streams_up(self, node: str) -> None:
        self.links[node]["streams"].up()
        self.record("streams-up", node)

    def rest_latency(self, node: str, ms: int) -> None:
        self.record("rest-slow", node, f"{ms} ms on every request")
        self.links[node]["rest"].latency(ms, stream="upstream")

    def rest_clear(self, node: str) -> None:
        self.links[node]["rest"].clear()
        self.record("rest-fast", node)

    def venue_down(self, node: str) -> None:
        """The node's REST and stream links refuse connections (open ones are closed)."""
        self.record("venue-down", node, "REST and streams refused")
        self.links[node]["rest"].down()
        self.links[node]["streams"].down()

    def venue_up(self, node: str) -> None:
        self.links[node]["rest"].up()
        self.links[node]["streams"].up()
        self.record("venue-up", node)

    async def _sim_fault(self, body: dict) -> dict:
        async with self.session.post(f"{self.lab.sim_url}/sim/v1/faults", json=body,
                                     timeout=aiohttp.ClientTimeout(total=5)) as resp:
            resp.raise_for_status()
            return await resp.json()

    async def ban_venue(self, node: str, seconds: float, status: int = 418) -> None:
        """The venue answers every REST request and stream upgrade of this node with `status` (Binance's
        418: an IP banned for ignoring a 429) for `seconds`; the other node's traffic is served as before.
        The 418 names the ban's end (and Retry-After its length), and a node rightly waits that long: lifting
        a ban early would leave a node that believed it still banned."""
        if not self.lab.per_node_listeners:
            raise DrillError("the sim has no per-node listeners (POST /sim/v1/listeners): cannot ban one node")
        self.record("venue-banned", node, f"HTTP {status} on every request for {seconds:g} s")
        self.banned.add(node)
        await self._sim_fault({"ban_listener": {"port": self.lab.venue_ports[node], "status": status,
                                                "seconds": min(seconds, MAX_BAN_S)}})

    async def unban_venue(self, node: str) -> None:
        await self._sim_fault({"unban_listener": self.lab.venue_ports[node]})
        self.banned.discard(node)
        self.record("venue-unbanned", node)

    def lock_garbage(self, node: str) -> None:
        """The node's lock links now reach something that is not the lock backend (the sim's HTTP
        port): every reply is nonsense to a Redis client, and a 404 to each of the Consul calls. Open
        connections are closed, so the next one gets it."""
        self.record("lock-garbage", node, "lock links rerouted to an HTTP server")
        for link in self.lock_links[node]:
            link.reroute(f"127.0.0.1:{self.lab.sim_port}")

    def lock_sane(self, node: str) -> None:
        for link in self.lock_links[node]:
            link.reroute()
        self.record("lock-sane", node)

    async def restart_backend(self) -> None:
        """Kills every lock server and starts it again on the same port (and data directory, if it
        has one): Redis without AOF and a Consul dev agent forget everything."""
        self.record("backend-restart", None, self.lock.restart_detail)
        self.lock.kill_all()
        self.lock.start_all()
        await self._lock_serving()

    async def _lock_serving(self) -> None:
        try:
            await asyncio.to_thread(self.lock.wait_serving)
        except lock_backend.LockBackendError as exc:
            raise DrillError(str(exc)) from exc
        # The checker dates a data-losing restart's end of every lease from here: the holder learns
        # its lock is gone at its first renewal after this, not while the backend is still down.
        self.record("backend-up", None, "lock backend serving again")

    # -- the Consul servers one by one (a cluster) ------------------------------------
    def lock_leader(self) -> str:
        leader = self.lock.leader() if isinstance(self.lock, lock_backend.ConsulLock) else None
        if leader is None:
            raise DrillError("the lock backend has no leader to name (a Consul cluster has)")
        return leader

    def kill_lock_server(self, name: str) -> None:
        self.record("lock-server-kill", None, f"SIGKILL {name}")
        self.lock.agent(name).kill()

    def start_lock_server(self, name: str) -> None:
        """Again, on its ports and data directory (started from this thread: see lock_backend.py)."""
        self.lock.agent(name).start()
        self.record("lock-server-start", None, name)

    async def wait_lock_leader(self, timeout_s: float, not_this: str) -> str:
        """Blocks (in a worker thread) until the live servers agree on a leader other than `not_this`."""
        try:
            leader = await asyncio.to_thread(self.lock.wait_leader, timeout_s, not_this)
        except lock_backend.LockBackendError as exc:
            raise DrillError(str(exc)) from exc
        self.record("lock-leader", None, f"{leader} elected")
        return leader

    async def wait_lock_server_ready(self, name: str, timeout_s: float) -> None:
        try:
            await asyncio.to_thread(self.lock.agent(name).wait_ready, timeout_s)
        except RuntimeError as exc:
            raise DrillError(str(exc)) from exc
        self.record("note", None, f"{name} serving again")

    async def probe_rest(self, node: str) -> float:
        """Seconds a REST ping takes through this node's REST link (from the witness)."""
        started = time.monotonic()
        async with self.session.get(f"http://{self.links[node]['rest'].address}/api/v3/ping",
                                    timeout=aiohttp.ClientTimeout(total=10)) as resp:
            await resp.read()
        return time.monotonic() - started

    async def probe_venue(self, node: str) -> str:
        """What a REST ping through this node's REST link gets: "HTTP <status>" or the error's name."""
        try:
            async with self.session.get(f"http://{self.links[node]['rest'].address}/api/v3/ping",
                                        timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S)) as resp:
                await resp.read()
                return f"HTTP {resp.status}"
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            return type(exc).__name__

    async def probe_lock(self, node: str) -> list[str]:
        """What the backend's own probe (a Redis PING, Consul's leader) gets through each of this node's
        lock links: "ok", "nonsense: ..." or "unreachable: ...", one per link."""
        return [await asyncio.to_thread(self.lock.probe, link.host, link.port) for link in self.lock_links[node]]

    # -- another client of the pair's own account ------------------------------------
    async def _as_other_client(self, what: str, call, *args):
        """Runs an `OtherClient` call on the pair's account in a thread; a venue that refuses it (an
        endpoint it lacks, say) means the drill cannot do what its scenario asks."""
        client = OtherClient(self.lab.sim_url, self.api_key, self.api_secret)
        try:
            return await asyncio.to_thread(call, client, *args)
        except Exception as exc:  # noqa: BLE001 - binance.error.*, requests.*: all mean the same here
            raise DrillError(f"{what}: {type(exc).__name__}: {exc}") from exc

    async def rest_order_list(self) -> OrderList:
        """An OCO on the symbol, placed on the pair's account by another client (not a node's order)."""
        order_list = await self._as_other_client("resting an OCO on the account", OtherClient.rest_order_list)
        self.order_list = order_list
        self.foreign_client_ids |= order_list.client_ids
        self.record("order-list", None, f"OCO {order_list.list_client_id} rests on the account "
                    f"(legs {', '.join(order_list.leg_client_ids)})")
        return order_list

    async def cancel_quotes_of(self, node: str) -> list[str]:
        """Cancels the node's resting orders from another client, by client id: the node hears it on its
        user data stream and quotes again at once — new orders, sent now."""
        cancelled = await self._as_other_client(f"cancelling {node}'s quotes", OtherClient.cancel_orders_of, node)
        self.record("note", node, f"{len(cancelled)} of its quotes cancelled by another client, to make it re-quote")
        return cancelled

    async def look_at_order_list(self, when: str) -> bool:
        """Asks the venue whether the drill's order list is still open; remembered under `when`."""
        open_ids = await self._as_other_client("asking for the open order lists", OtherClient.open_order_list_ids)
        is_open = self.order_list is not None and self.order_list.order_list_id in open_ids
        self.order_list_open[when] = is_open
        self.record("note", None, f"order list {'open' if is_open else 'gone'} {when}")
        return is_open

    # -- operator actions ------------------------------------------------------------
    async def switchover(self, to: str) -> dict:
        primary = next(n for n in NODES if n != to)
        self.record("switchover", to, f"understudy switchover --to {to}")
        url = f"http://{self.lab.network.nodes[primary].uplink_ip}:{ADMIN_PORT}/switchover"
        async with self.session.post(url, json={"to": to}, headers={"Authorization": f"Bearer {self.admin_token}"},
                                     timeout=aiohttp.ClientTimeout(total=20)) as resp:
            result = await resp.json()
        if not result.get("ok"):
            raise DrillError(f"switchover to {to} refused: {result}")
        return result

    def start_load(self, orders_per_s: float, duration_s: float) -> None:
        """Marketable orders from another account, taking from the book the pair quotes into."""
        self.record("load-start", None, f"{orders_per_s:g} market orders/s for {duration_s:g} s")
        self._load_task = asyncio.get_running_loop().create_task(self._load(orders_per_s, duration_s))

    async def _load(self, orders_per_s: float, duration_s: float) -> None:
        # Another market participant, so Binance's own client rather than ours (other_client.py).
        key, secret = self.lab.loader_account
        client = OtherClient(self.lab.sim_url, key, secret)
        count = int(orders_per_s * duration_s)
        for i in range(count):  # bounded in count and, by the sleep, in time
            try:
                await asyncio.to_thread(client.market_order, "BUY" if i % 2 else "SELL", 0.001)
                self.loader_orders += 1
            except Exception:  # noqa: BLE001 - load is best effort; the count says how much got through
                pass
            await asyncio.sleep(1 / orders_per_s)
        self.record("load-stop", None, f"{self.loader_orders} orders sent")

    async def load_done(self, timeout: float) -> None:
        if self._load_task is not None:
            await asyncio.wait_for(self._load_task, timeout)

    # -- watching --------------------------------------------------------------------
    async def status(self, node: str) -> dict | None:
        child = self.nodes.get(node)
        if child is None or not child.alive or child.frozen:
            return None
        url = f"http://{self.lab.network.nodes[node].uplink_ip}:{ADMIN_PORT}/status"
        try:
            async with self.session.get(url, timeout=aiohttp.ClientTimeout(total=STATUS_TIMEOUT_S)) as resp:
                return await resp.json()
        except (aiohttp.ClientError, asyncio.TimeoutError):
            return None

    async def statuses(self) -> dict:
        results = await asyncio.gather(*(self.status(n) for n in NODES))
        return dict(zip(NODES, results))

    async def wait(self, predicate, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        statuses: dict = {}
        while time.monotonic() < deadline:
            statuses = await self.statuses()
            if predicate(statuses):
                return statuses
            await asyncio.sleep(0.05)
        roles = {n: (_role(s), (s or {}).get("strategy", {}).get("quoting")) for n, s in statuses.items()}
        raise DrillError(f"timed out after {timeout:.0f} s waiting for {what} (role, quoting: {roles})")

    async def ready_pair(self, timeout: float = 40.0, primary: str | None = None) -> tuple[str, str]:
        """Waits for one quoting primary and a ready standby; returns (primary, standby)."""
        def ready(s: dict) -> bool:
            p = _quoting_primary(s)
            if p is None or (primary is not None and p != primary):
                return False
            other = next(n for n in NODES if n != p)
            return _role(s[other]) == "standby" and s[p]["ha"]["peer"]["ready"]
        statuses = await self.wait(ready, timeout, "a quoting primary and a ready standby"
                                   + (f" ({primary} primary)" if primary else ""))
        p = _quoting_primary(statuses)
        return p, next(n for n in NODES if n != p)

    async def wait_quoting(self, node: str, timeout: float) -> None:
        await self.wait(lambda s: _quoting_primary({node: s[node]}) == node, timeout, f"{node} to quote")

    async def wait_role(self, node: str, role: str, timeout: float) -> None:
        await self.wait(lambda s: _role(s[node]) == role, timeout, f"{node} to be {role}")

    async def sleep_until(self, t: float) -> None:
        await asyncio.sleep(max(0.0, t - time.time()))

    # -- evidence --------------------------------------------------------------------
    def evidence(self) -> Evidence:
        lines = self.lab.audit_lines(self._audit_offset)
        orders, lives, cancel_alls = read_audit(lines, self.api_key, self.started)
        node_events = []
        for node in NODES:
            node_events += read_node_log_file(self.run_dir / f"{node}.log", node)
        node_events.sort(key=lambda e: e.at)
        (self.run_dir / "venue-audit.jsonl").write_text(
            "".join(line + "\n" for line in lines if self.api_key in line))
        return Evidence(orders, lives, cancel_alls, node_events, sorted(self.events, key=lambda e: e.at),
                        self.started, self.ended or time.time(), frozenset(self.foreign_client_ids))

