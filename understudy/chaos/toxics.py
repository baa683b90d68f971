"""TCP-link faults with toxiproxy: a real toxiproxy server, driven with
toxiproxy-python. Every TCP link a node has (to the lock backend, to the
venue's REST API, to the venue's streams) goes through its own proxy, so one
link of one node can be cut or degraded while everything else works.

Faults (toxiproxy's names in brackets): down (the proxy disabled: open
connections closed, new ones refused), latency [latency], timeout [timeout:
data stops; with 0 the connection hangs until healed], reset [reset_peer:
connections reset], slow close [slow_close], bandwidth [bandwidth], reroute
(the proxy's upstream changed: toxiproxy closes the open connections and
sends new ones to the new upstream — a lock link that reaches something that
is not the lock backend).

toxiproxy-python talks to one server per process (its API address is class
state) and uses blocking HTTP without a timeout; the server is local and
ours, and every call here is short.
"""
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import toxiproxy
from toxiproxy.api import APIConsumer

REPO = Path(__file__).resolve().parents[2]
SERVER_ENV = "UNDERSTUDY_TOXIPROXY_SERVER"


class ToxiproxyError(RuntimeError):
    pass


def server_binary() -> str:
    """$UNDERSTUDY_TOXIPROXY_SERVER, then .tools/bin (where scripts/bootstrap.sh
    puts it), then PATH."""
    candidates = [os.environ.get(SERVER_ENV), str(REPO / ".tools" / "bin" / "toxiproxy-server"),
                  shutil.which("toxiproxy-server")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise ToxiproxyError("toxiproxy-server not found: run ./scripts/bootstrap.sh (it `go install`s it into "
                         f".tools/bin) or set {SERVER_ENV}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ToxiproxyServer:
    """A toxiproxy server on a free loopback port for the API. Proxies listen
    wherever they are told (the drill: the root side of each node's uplink)."""

    def __init__(self, log_path: Path):
        self.binary = server_binary()
        self.port = _free_port()
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.api = toxiproxy.Toxiproxy()

    def start(self, timeout: float = 10.0) -> "ToxiproxyServer":
        self._log = open(self.log_path, "a")
        self.proc = subprocess.Popen([self.binary, "-host", "127.0.0.1", "-port", str(self.port)],
                                     stdout=self._log, stderr=subprocess.STDOUT)
        self.api.update_api_consumer("127.0.0.1", self.port)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ToxiproxyError(f"toxiproxy-server exited with {self.proc.returncode}; see {self.log_path}")
            if self.api.running():
                return self
            time.sleep(0.05)
        raise ToxiproxyError(f"toxiproxy-server did not start in {timeout:.0f} s; see {self.log_path}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()

    def link(self, name: str, listen: str, upstream: str) -> "Link":
        """A new proxy `name`: clients connect to `listen` (host:port, port 0
        picks one) and reach `upstream`."""
        proxy = self.api.create(upstream=upstream, name=name, listen=listen, enabled=True)
        return Link(proxy)


class Link:
    """One proxied TCP link and the faults that can be put on it."""

    def __init__(self, proxy):
        self.proxy = proxy
        self.name = proxy.name
        host, _, port = proxy.listen.rpartition(":")
        self.host, self.port = host, int(port)
        self.upstream = self.original_upstream = proxy.upstream
        self.active: list[str] = []  # what is wrong with the link now, for the report

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def down(self) -> None:
        self.proxy.disable()
        self.active.append("down")

    def up(self) -> None:
        self.proxy.enable()
        self.active = [a for a in self.active if a != "down"]

    def reroute(self, upstream: str | None = None) -> None:
        """Sends the link to another upstream (None: back to its own). Toxiproxy restarts the proxy on
        the same listen address, closing every open connection, so clients reconnect to the new one."""
        upstream = upstream or self.original_upstream
        # toxiproxy-python has no call for it; the server's API does (listen kept, so it stays put).
        APIConsumer.post(f"/proxies/{self.name}", json={"upstream": upstream, "listen": self.address})
        self.upstream = upstream
        self.active = [a for a in self.active if a != "rerouted"]
        if upstream != self.original_upstream:
            self.active.append("rerouted")

    def _toxic(self, kind: str, stream: str, **attributes) -> str:
        name = f"{kind}_{stream}"
        self.proxy.add_toxic(type=kind, stream=stream, name=name, toxicity=1.0, attributes=attributes)
        self.active.append(name)
        return name

    def latency(self, ms: int, jitter_ms: int = 0, stream: str = "downstream") -> str:
        """Adds `ms` to every chunk in one direction (downstream: replies)."""
        return self._toxic("latency", stream, latency=ms, jitter=jitter_ms)

    def timeout(self, ms: int = 0, stream: str = "upstream") -> str:
        """Data stops; after `ms` the connection is closed (0: it hangs until healed)."""
        return self._toxic("timeout", stream, timeout=ms)

    def reset(self, after_ms: int = 0, stream: str = "upstream") -> str:
        """Connections are reset (TCP RST) after `after_ms`."""
        return self._toxic("reset_peer", stream, timeout=after_ms)

    def slow_close(self, delay_ms: int, stream: str = "downstream") -> str:
        """The close of a connection is delayed by `delay_ms`."""
        return self._toxic("slow_close", stream, delay=delay_ms)

    def bandwidth(self, kb_per_s: int, stream: str = "downstream") -> str:
        return self._toxic("bandwidth", stream, rate=kb_per_s)

    def clear(self, name: str | None = None) -> None:
        """Removes one toxic, or every toxic and re-enables the link."""
        names = [name] if name else [n for n in self.active if n not in ("down", "rerouted")]
        for toxic_name in names:
            self.proxy.destroy_toxic(toxic_name)
            self.active.remove(toxic_name)
        if name is None and "down" in self.active:
            self.up()

    def destroy(self) -> None:
        self.proxy.destroy()

