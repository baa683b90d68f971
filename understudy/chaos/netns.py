"""The drill's network: each node in its own network namespace.

    root namespace (the witness: sim, redis, toxiproxy, the drill itself)
       | up-a (veth, /30)                        | up-b (veth, /30)
    [ns sg-1] ------------- peer (veth, /30) ------------- [ns sg-2]

A node reaches the venue and the lock backend only through its uplink (where
toxiproxy listens on the root side), and its peer only over the point-to-point
peer link that carries the UDP heartbeats. Nothing is forwarded or bridged in
the root namespace, so the drill changes no host-wide setting; netfilter
rules for heartbeat faults live inside the node namespaces.

Names carry the creating process id (`udrill-<pid>-<tag>-<node>`), so a later
run can remove what a crashed run left behind. Creation and the choice of a
free /24 happen under a file lock, so concurrent drills never share addresses.
"""
import fcntl
import ipaddress
import os
import re
import secrets
import shutil
import subprocess
from dataclasses import dataclass

PREFIX = "udrill"
SUPERNET = ipaddress.ip_network("10.213.0.0/16")
LOCK_FILE = "/tmp/understudy-drill-net.lock"
_NAME = re.compile(rf"^{PREFIX}-(\d+)-([0-9a-f]+)-")


class NetworkError(RuntimeError):
    pass


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if check and result.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)}: {result.stderr.strip() or result.returncode}")
    return result


def require_privileges() -> None:
    """Network namespaces need root (CAP_NET_ADMIN) and iproute2."""
    if shutil.which("ip") is None:
        raise NetworkError("`ip` (iproute2) is not installed; run ./scripts/bootstrap.sh")
    if os.geteuid() != 0:
        raise NetworkError("drills create network namespaces and need root (CAP_NET_ADMIN)")


@dataclass(frozen=True)
class NodeNet:
    """One node's view of the drill network."""

    node: str
    namespace: str
    uplink_ip: str  # the node's address on its uplink: its admin API listens here
    witness_ip: str  # the root side of its uplink: toxiproxy listens here for this node
    peer_ip: str  # its address on the peer link: heartbeats are bound here

    def exec_argv(self, argv: list[str]) -> list[str]:
        """`argv` run inside this node's namespace (`ip netns exec` execs it: same pid)."""
        return ["ip", "netns", "exec", self.namespace, *argv]


class DrillNetwork:
    """Two node namespaces, their uplinks and the peer link. Use as a context
    manager: the namespaces are removed on exit, whatever happened."""

    def __init__(self, nodes: tuple[str, str] = ("sg-1", "sg-2")):
        require_privileges()
        self.tag = secrets.token_hex(3)
        self.nodes: dict[str, NodeNet] = {}
        self._names = nodes
        self._created: list[str] = []

    def __enter__(self) -> "DrillNetwork":
        try:
            self.create()
        except BaseException:
            self.destroy()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.destroy()

    def create(self) -> None:
        sweep_stale()
        with open(LOCK_FILE, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            subnet = _free_subnet()
            hosts = list(subnet.hosts())  # .1 .. .254
            a, b = self._names
            for i, node in enumerate((a, b)):
                ns = f"{PREFIX}-{os.getpid()}-{self.tag}-{node}"
                _ip("netns", "add", ns)
                self._created.append(ns)
                witness, inside = hosts[4 * i], hosts[4 * i + 1]  # .1/.2 and .5/.6, each a /30
                root_if = f"ud{self.tag}{'ab'[i]}"
                _ip("link", "add", root_if, "type", "veth", "peer", "name", f"{root_if}n")
                _ip("link", "set", f"{root_if}n", "netns", ns)
                _ip("-n", ns, "link", "set", f"{root_if}n", "name", "uplink")
                _ip("addr", "add", f"{witness}/30", "dev", root_if)
                _ip("-n", ns, "addr", "add", f"{inside}/30", "dev", "uplink")
                _ip("link", "set", root_if, "up")
                _ip("-n", ns, "link", "set", "uplink", "up")
                _ip("-n", ns, "link", "set", "lo", "up")
                self.nodes[node] = NodeNet(node, ns, str(inside), str(witness), str(hosts[8 + i]))
            peer_if = f"ud{self.tag}p"
            _ip("link", "add", peer_if, "type", "veth", "peer", "name", f"{peer_if}q")
            for ifname, node in ((peer_if, a), (f"{peer_if}q", b)):
                net = self.nodes[node]
                _ip("link", "set", ifname, "netns", net.namespace)
                _ip("-n", net.namespace, "link", "set", ifname, "name", "peer")
                _ip("-n", net.namespace, "addr", "add", f"{net.peer_ip}/30", "dev", "peer")
                _ip("-n", net.namespace, "link", "set", "peer", "up")

    def destroy(self) -> None:
        """Deleting a namespace deletes its veths and, with them, their root-side ends."""
        for ns in reversed(self._created):
            _ip("netns", "delete", ns, check=False)
        self._created.clear()

    def run_in(self, node: str, argv: list[str], timeout: float = 10.0) -> subprocess.CompletedProcess:
        return subprocess.run(self.nodes[node].exec_argv(argv), capture_output=True, text=True, timeout=timeout)


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 of 10.213/16 that no interface on this host uses (called under the lock)."""
    used = set()
    for line in _ip("-4", "-o", "addr", "show").stdout.splitlines():
        match = re.search(r"inet (\S+)", line)
        if match:
            net = ipaddress.ip_interface(match.group(1)).network
            if net.overlaps(SUPERNET):
                used.add(ipaddress.ip_network(f"{net.network_address}/24", strict=False))
    candidates = [s for s in SUPERNET.subnets(new_prefix=24) if s not in used]
    if not candidates:
        raise NetworkError(f"no free /24 left in {SUPERNET}")
    return candidates[secrets.randbelow(len(candidates))]


def sweep_stale() -> list[str]:
    """Removes drill namespaces whose creating process is gone and in which
    nothing runs any more (processes still inside are left alone and reported)."""
    removed = []
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        match = _NAME.match(name)
        if not match or _alive(int(match.group(1))):
            continue
        if _ip("netns", "pids", name, check=False).stdout.strip():
            continue
        _ip("netns", "delete", name, check=False)
        removed.append(name)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
