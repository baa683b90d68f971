"""Heartbeat-link faults with netfilter: UDP datagrams from one node to the
other are dropped (one direction, or both) by a rule in the sender's OUTPUT
chain, tagged so it can be found and removed.

The rules are plain iptables argument lists, built here once and run by a
`Shell`: inside a node's network namespace in tests, or over SSH on a real
host (`remote.py`). The rules are the same either way.
"""
import shutil
import subprocess
from dataclasses import dataclass
from typing import Protocol

TAG = "understudy-drill"


class Shell(Protocol):
    def __call__(self, argv: list[str]) -> subprocess.CompletedProcess: ...


class NetfilterError(RuntimeError):
    pass


def require_iptables() -> None:
    if shutil.which("iptables") is None:
        raise NetfilterError("iptables is not installed; run ./scripts/bootstrap.sh (Debian package `iptables`)")


@dataclass(frozen=True)
class UdpPath:
    """Heartbeats from one node to another: the receiver's address and port."""

    dst_ip: str
    dst_port: int

    def rule(self) -> list[str]:
        return ["OUTPUT", "-p", "udp", "-d", self.dst_ip, "--dport", str(self.dst_port),
                "-m", "comment", "--comment", TAG, "-j", "DROP"]


def drop_rule(path: UdpPath) -> list[str]:
    return ["iptables", "-w", "5", "-A", *path.rule()]


def undrop_rule(path: UdpPath) -> list[str]:
    return ["iptables", "-w", "5", "-D", *path.rule()]


def is_dropping(path: UdpPath) -> list[str]:
    return ["iptables", "-w", "5", "-C", *path.rule()]


class HeartbeatCut:
    """Cuts and heals one direction of the heartbeat link, on the sender's side."""

    def __init__(self, shell: Shell, path: UdpPath):
        self.shell, self.path = shell, path

    def _run(self, argv: list[str]) -> subprocess.CompletedProcess:
        result = self.shell(argv)
        if result.returncode != 0:
            raise NetfilterError(f"{' '.join(argv)}: {result.stderr.strip() or result.returncode}")
        return result

    @property
    def active(self) -> bool:
        return self.shell(is_dropping(self.path)).returncode == 0

    def cut(self) -> None:
        if not self.active:
            self._run(drop_rule(self.path))

    def heal(self) -> None:
        while self.active:  # idempotent, and removes duplicates too
            self._run(undrop_rule(self.path))
