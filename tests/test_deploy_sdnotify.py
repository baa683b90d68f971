"""sd_notify for real: a unix datagram socket stands in for systemd's
$NOTIFY_SOCKET and receives what a real node process sends (the boot of the
unit under a real systemd is in test_deploy_apply.py)."""
import asyncio
import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.nodeproc import NodeProcess, node_env, node_settings, to_toml
from understudy.node.sdnotify import SystemdNotifier


class NotifySocket:
    """What systemd listens on: every datagram, with its arrival time."""

    def __init__(self, address: str | bytes):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.05)
        self.received: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.received.append((time.monotonic(), data.decode()))

    def times_of(self, assignment: str) -> list[float]:
        return [t for t, message in list(self.received) if assignment in message.split("\n")]

    def wait_for(self, assignment: str, timeout: float, count: int = 1) -> list[float]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.times_of(assignment)) >= count:
                return self.times_of(assignment)
            time.sleep(0.02)
        raise AssertionError(f"{count} x {assignment} not received in {timeout} s; got {self.received}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def notify_socket(tmp_path):
    sock = NotifySocket(str(tmp_path / "notify.sock"))
    yield sock
    sock.close()


def test_node_process_reports_ready_feeds_the_watchdog_and_reports_stopping(live_sim, tmp_path, notify_socket):
    config = tmp_path / "node.toml"
    config.write_text(to_toml(node_settings(live_sim, tmp_path / "state")))
    env = {**node_env(live_sim), "NOTIFY_SOCKET": str(tmp_path / "notify.sock"),
           "WATCHDOG_USEC": "400000"}  # WatchdogSec=0.4 s: a ping every 0.2 s
    node = NodeProcess(config, env, tmp_path / "node.log").start()
    try:
        ready_at = notify_socket.wait_for("READY=1", timeout=30)[0]
        pings = notify_socket.wait_for("WATCHDOG=1", timeout=10, count=len(notify_socket.times_of("WATCHDOG=1")) + 5)
        after_ready = [t for t in pings if t > ready_at]
        assert len(after_ready) >= 3
        gaps = [b - a for a, b in zip(after_ready, after_ready[1:])]
        assert max(gaps) < 0.4, f"a gap of {max(gaps):.3f} s would let systemd's watchdog fire: {gaps}"
        assert notify_socket.times_of("STOPPING=1") == []
        node.signal(signal.SIGTERM)
        assert node.wait(20) == 0
    finally:
        node.stop()
    stopping_at = notify_socket.times_of("STOPPING=1")
    assert len(stopping_at) == 1 and stopping_at[0] > ready_at


async def test_a_blocked_event_loop_stops_the_pings(tmp_path, notify_socket):
    """The pings come from the event loop, not a thread: while the loop is
    blocked no ping leaves, which is what lets systemd kill a hung node."""
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "100000"})
    assert notifier.watchdog_interval_s == pytest.approx(0.05)
    task = notifier.start_watchdog()
    try:
        await asyncio.sleep(0.4)
        blocked_from = time.monotonic()
        time.sleep(0.6)  # the loop is hung: nothing else runs
        blocked_to = time.monotonic()
        await asyncio.sleep(0.3)
    finally:
        task.cancel()
        notifier.close()
    pings = notify_socket.wait_for("WATCHDOG=1", timeout=1, count=8)
    assert not [t for t in pings if blocked_from + 0.01 < t < blocked_to - 0.01]
    assert [t for t in pings if t < blocked_from] and [t for t in pings if t > blocked_to]
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    assert max(gaps) >= 0.55


def test_abstract_socket_address(notify_socket):
    name = f"understudy-test-{os.getpid()}"
    listener = NotifySocket(b"\0" + name.encode())
    try:
        notifier = SystemdNotifier({"NOTIFY_SOCKET": "@" + name})
        notifier.ready()
        notifier.close()
        assert listener.wait_for("READY=1", timeout=2)
    finally:
        listener.close()


def test_watchdog_settings_from_the_environment(tmp_path: Path):
    assert SystemdNotifier({}).enabled is False
    assert SystemdNotifier({"WATCHDOG_USEC": "5000000"}).start_watchdog() is None  # nobody to ping
    sock = str(tmp_path / "n.sock")
    assert SystemdNotifier({"NOTIFY_SOCKET": sock}).watchdog_interval_s is None
    assert SystemdNotifier({"NOTIFY_SOCKET": sock, "WATCHDOG_USEC": "5000000"}).watchdog_interval_s == 2.5
    # WATCHDOG_PID names the process the watchdog is for; a child that inherited the variables must not ping.
    other = {"NOTIFY_SOCKET": sock, "WATCHDOG_USEC": "5000000", "WATCHDOG_PID": str(os.getpid() + 1)}
    assert SystemdNotifier(other).watchdog_interval_s is None
    mine = {**other, "WATCHDOG_PID": str(os.getpid())}
    assert SystemdNotifier(mine).watchdog_interval_s == 2.5
    assert SystemdNotifier({"NOTIFY_SOCKET": sock, "WATCHDOG_USEC": "soon"}).watchdog_interval_s is None
