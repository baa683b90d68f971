"""A real redis-server on a free loopback port, which tests stop, kill,
freeze and restart. No persistence: a restart loses everything."""
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from understudy.consul_agent import wait_stopped


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisProcess:
    def __init__(self, workdir: Path, port: int | None = None, extra_args: tuple[str, ...] = ()):
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed (scripts/bootstrap.sh installs it)")
        self.workdir = workdir
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self.extra_args = extra_args

    def start(self) -> "RedisProcess":
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir), "--daemonize", "no", "--loglevel", "warning", *self.extra_args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> None:
        self.kill()
        self.start()

    def freeze(self) -> None:
        """SIGSTOP, and returns once the server has stopped (the signal is not instant)."""
        self.proc.send_signal(signal.SIGSTOP)
        wait_stopped(self.proc.pid)

    def thaw(self) -> None:
        self.proc.send_signal(signal.SIGCONT)
