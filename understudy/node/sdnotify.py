"""systemd's notify protocol, without the systemd package.

`READY=1` once the node serves, `WATCHDOG=1` every WatchdogSec/2, `STOPPING=1`
on the way out. Every watchdog ping is sent by a task on the node's own
event loop, never by a thread: a loop that hangs (a blocking call, a
livelock) stops pinging, and systemd kills the process after WatchdogSec and
starts it again (`Restart=always`). A hung primary has stopped renewing its
lease anyway; the kill only brings it back sooner, as a standby.

Without `$NOTIFY_SOCKET` (not started by systemd, or not `Type=notify`) every
call is a no-op; without `$WATCHDOG_USEC` there is no watchdog to feed.
"""
import asyncio
import os
import socket
import typing

from .. import logs

log = logs.get("sdnotify")


class SystemdNotifier:
    def __init__(self, environ: typing.Mapping[str, str] = os.environ):
        self._address = _socket_address(environ.get("NOTIFY_SOCKET", ""))
        self.watchdog_interval_s = _watchdog_interval_s(environ)
        self._sock: socket.socket | None = None
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, *assignments: str) -> None:
        """Sends `KEY=VALUE` lines in one datagram. A failed send is logged
        once and otherwise ignored: a missed ping costs less than a crash."""
        if self._address is None:
            return
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto("\n".join(assignments).encode(), self._address)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("sd_notify failed", error=repr(exc))

    def ready(self) -> None:
        self.notify("READY=1", "STATUS=serving")

    def stopping(self) -> None:
        self.notify("STOPPING=1", "STATUS=stopping")

    def start_watchdog(self) -> asyncio.Task | None:
        """The pinging task, or None when systemd asked for no watchdog."""
        if self._address is None or self.watchdog_interval_s is None:
            return None
        return asyncio.get_running_loop().create_task(self._feed_watchdog(), name="sd-watchdog")

    async def _feed_watchdog(self) -> None:
        while True:
            self.notify("WATCHDOG=1")
            await asyncio.sleep(self.watchdog_interval_s)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _socket_address(value: str) -> str | bytes | None:
    if not value:
        return None
    if value.startswith("@"):  # Linux abstract namespace
        return b"\0" + value[1:].encode()
    return value


def _watchdog_interval_s(environ: typing.Mapping[str, str]) -> float | None:
    """Half of WatchdogSec, as sd_watchdog_enabled(3) advises; None when the
    watchdog is off or meant for another process (WATCHDOG_PID)."""
    try:
        usec = int(environ.get("WATCHDOG_USEC", "0"))
    except ValueError:
        return None
    pid = environ.get("WATCHDOG_PID")
    if usec <= 0 or (pid and pid != str(os.getpid())):
        return None
    return usec / 1e6 / 2
