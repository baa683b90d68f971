"""Process faults: SIGKILL, SIGSTOP/SIGCONT (freeze and thaw), stop and
restart, on the drill's own child processes (the demo's `Child`, which logs
to a file in the run directory). On real hosts the same faults go through
systemd over SSH (`remote.py`).

Children get PR_SET_PDEATHSIG: if the drill itself dies, its nodes, Redis
and sim die with it instead of trading on unattended.
"""
import ctypes
import signal
import subprocess
import sys

from ..demo import Child

_PR_SET_PDEATHSIG = 1
STOP_TIMEOUT_S = 15.0


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class DrillChild(Child):
    """A `Child` that dies with the drill, and can be frozen and thawed."""

    frozen = False

    def start(self) -> None:
        self._offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._log = open(self.log_path, "a")
        self.proc = subprocess.Popen(self.args, stdout=self._log, stderr=subprocess.STDOUT, env=self.env,
                                     preexec_fn=_die_with_parent)
        self.frozen = False

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def freeze(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        self.proc.send_signal(signal.SIGCONT)
        self.frozen = False

    def kill(self) -> None:
        if self.alive:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.frozen = False
        if not self._log.closed:
            self._log.close()

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> bool:
        """SIGTERM (a node cancels its orders first; a frozen child is thawed so it can), SIGKILL if it
        has not exited within `timeout`. Returns False if it had to be killed."""
        clean = True
        if self.alive and self.frozen:
            self.thaw()
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                clean = False
                self.proc.kill()
                self.proc.wait()
        if not self._log.closed:
            self._log.close()
        return clean
