"""The drills' fault injectors on their own, against the real things: a real
toxiproxy server in front of a real TCP server, and netfilter rules in real
network namespaces cutting real UDP datagrams — one direction at a time.
Delays are asserted as lower bounds only: load can only make them longer."""
import socket
import socketserver
import subprocess
import sys
import threading
import time

import pytest

from understudy.chaos.netfilter import HeartbeatCut, UdpPath
from understudy.chaos.netns import DrillNetwork
from understudy.chaos.toxics import ToxiproxyServer

PORT = 7400


class _Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture
def echo_link(tmp_path):
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    toxiproxy = ToxiproxyServer(tmp_path / "toxiproxy.log").start()
    link = toxiproxy.link("echo", "127.0.0.1:0", f"127.0.0.1:{server.server_address[1]}")
    yield link
    link.destroy()
    toxiproxy.stop()
    server.shutdown()
    server.server_close()


def _round_trip(link, payload: bytes = b"ping", timeout: float = 5.0) -> float:
    started = time.monotonic()
    with socket.create_connection((link.host, link.port), timeout) as s:
        s.sendall(payload)
        received = b""
        while len(received) < len(payload):
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("closed before the echo came back")
            received += chunk
    assert received == payload
    return time.monotonic() - started


def test_toxiproxy_link_down_refuses_and_up_restores(echo_link):
    _round_trip(echo_link)
    echo_link.down()
    with pytest.raises(OSError):
        _round_trip(echo_link, timeout=1.0)
    echo_link.up()
    _round_trip(echo_link)


def test_toxiproxy_latency_delays_and_clears(echo_link):
    echo_link.latency(400)
    assert _round_trip(echo_link) >= 0.4
    echo_link.clear()
    assert echo_link.active == []
    _round_trip(echo_link)


def test_toxiproxy_timeout_stops_data_until_healed(echo_link):
    echo_link.timeout(0)
    with pytest.raises(socket.timeout):
        _round_trip(echo_link, timeout=0.5)
    echo_link.clear()
    _round_trip(echo_link)


def test_toxiproxy_reset_resets_connections(echo_link):
    echo_link.reset(0)
    with pytest.raises((ConnectionError, OSError)):
        _round_trip(echo_link, timeout=2.0)
    echo_link.clear()
    _round_trip(echo_link)


def test_toxiproxy_slow_close_delays_the_close(echo_link):
    echo_link.slow_close(500)
    with socket.create_connection((echo_link.host, echo_link.port), 5) as s:
        s.sendall(b"x")
        assert s.recv(1) == b"x"
        s.shutdown(socket.SHUT_WR)  # the server closes in turn; the proxy holds that close back
        started = time.monotonic()
        s.settimeout(5)
        assert s.recv(1) == b""
        assert time.monotonic() - started >= 0.45


def test_toxiproxy_bandwidth_limits_throughput(echo_link):
    echo_link.bandwidth(20)  # KB/s
    assert _round_trip(echo_link, b"x" * 30_000) >= 1.0


_RECEIVER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
s.settimeout(0.6)
print("ready", flush=True)
count = 0
try:
    while count < 100:
        s.recv(64)
        count += 1
except socket.timeout:
    pass
print(count, flush=True)
"""

_SENDER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(5):
    try:
        s.sendto(b"beat", (sys.argv[1], int(sys.argv[2])))
    except PermissionError:  # what a DROP in OUTPUT says to the sender
        pass
"""


def _datagrams(net: DrillNetwork, src: str, dst: str) -> int:
    """How many of five datagrams `src` sends over the peer link reach `dst`."""
    target = net.nodes[dst].peer_ip
    receiver = subprocess.Popen(net.nodes[dst].exec_argv([sys.executable, "-c", _RECEIVER, target, str(PORT)]),
                                stdout=subprocess.PIPE, text=True)
    try:
        assert receiver.stdout.readline().strip() == "ready"
        subprocess.run(net.nodes[src].exec_argv([sys.executable, "-c", _SENDER, target, str(PORT)]),
                       check=True, timeout=10)
        return int(receiver.stdout.readline())
    finally:
        receiver.kill()
        receiver.wait()


def test_heartbeat_cut_drops_one_direction_only_and_heals():
    with DrillNetwork(("sg-1", "sg-2")) as net:
        cut = HeartbeatCut(lambda argv: net.run_in("sg-1", argv), UdpPath(net.nodes["sg-2"].peer_ip, PORT))
        assert _datagrams(net, "sg-1", "sg-2") == 5
        cut.cut()
        cut.cut()  # idempotent: one rule
        assert cut.active
        assert _datagrams(net, "sg-1", "sg-2") == 0
        assert _datagrams(net, "sg-2", "sg-1") == 5, "the other direction must still work"
        cut.heal()
        assert not cut.active
        assert _datagrams(net, "sg-1", "sg-2") == 5
        namespaces = [n.namespace for n in net.nodes.values()]
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(ns in listed for ns in namespaces), "namespaces must be gone after the drill network closes"


class _Tagged(socketserver.BaseRequestHandler):
    """Answers every chunk with the server's own tag: which upstream a connection reached."""

    def handle(self):
        while self.request.recv(65536):
            self.request.sendall(self.server.tag)


def _tagged_server(tag: bytes):
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Tagged)
    server.daemon_threads = True
    server.tag = tag
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_toxiproxy_reroute_closes_open_connections_and_sends_new_ones_elsewhere(tmp_path):
    first, second = _tagged_server(b"first"), _tagged_server(b"second")
    toxiproxy = ToxiproxyServer(tmp_path / "toxiproxy.log").start()
    try:
        link = toxiproxy.link("reroute", "127.0.0.1:0", f"127.0.0.1:{first.server_address[1]}")
        address = link.address
        with socket.create_connection((link.host, link.port), 5) as old:
            old.sendall(b"?")
            assert old.recv(16) == b"first"
            link.reroute(f"127.0.0.1:{second.server_address[1]}")
            assert link.address == address and link.active == ["rerouted"]
            old.settimeout(5)
            try:
                closed = old.recv(16) == b""  # toxiproxy closed it...
            except ConnectionResetError:
                closed = True  # ... or reset it
            assert closed, "an open connection must not survive a reroute"
        with socket.create_connection((link.host, link.port), 5) as new:
            new.sendall(b"?")
            assert new.recv(16) == b"second"
        link.reroute()  # back to its own upstream
        assert link.active == []
        with socket.create_connection((link.host, link.port), 5) as back:
            back.sendall(b"?")
            assert back.recv(16) == b"first"
        link.destroy()
    finally:
        toxiproxy.stop()
        for server in (first, second):
            server.shutdown()
            server.server_close()
