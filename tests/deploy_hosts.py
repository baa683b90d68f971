"""Throwaway Debian hosts for the deployment tests.

A minimal Debian 12 root built with mmdebstrap (cached between runs) is
booted three times with systemd-nspawn, each boot on its own copy-on-write
overlay, with systemd as PID 1 and an SSH server, each in its own network
namespace on a private bridge: as close to three fresh VPS as this machine
allows. Ansible reaches them over SSH from a fourth namespace, the
"controller". Nothing touches the host's network: the namespaces have no
route out, and every mount lives in a private mount namespace that dies with
its container.
"""
import contextlib
import ctypes
import fcntl
import hashlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path

import yaml

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
SUBNET = "10.213.0"
# What a fresh VPS image has beyond minbase: systemd as init, an SSH server,
# sudo, and Python with apt's bindings for Ansible (its apt module would
# otherwise fetch python3-apt, and these hosts have no route to a mirror).
# The roles' own packages are added from their defaults, so the image never
# lags behind them.
IMAGE_EXTRAS = ("systemd-sysv", "dbus", "openssh-server", "sudo", "python3", "python3-apt")
IMAGE_FORMAT = "2"  # bump when the way the image is built changes

CACHE_DIR = Path(os.environ.get("UNDERSTUDY_DEPLOY_CACHE", Path.home() / ".cache" / "understudy" / "deploy"))
SSH_OPTIONS = ("-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
               "-o", "ConnectTimeout=5", "-o", "BatchMode=yes")


def role_packages(ansible_dir: Path) -> list[str]:
    """Every `<role>_packages` list in the roles' defaults."""
    packages = set()
    for defaults in sorted(ansible_dir.glob("roles/*/defaults/main.yml")):
        for key, value in (yaml.safe_load(defaults.read_text()) or {}).items():
            if key.endswith("_packages"):
                packages.update(value)
    return sorted(packages)


def run(argv: list[str], timeout: float = 120, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def base_image(packages: list[str]) -> Path:
    """The Debian root for these packages, built once and cached.

    The first build downloads about 120 MB from the Debian mirror and takes
    about 50 s on two cores (mmdebstrap: debootstrap took 80 s); later runs
    reuse it (an overlay keeps it pristine).
    """
    wanted = sorted(set(packages) | set(IMAGE_EXTRAS))
    key = hashlib.sha256(f"{IMAGE_FORMAT} {SUITE} {' '.join(wanted)}".encode()).hexdigest()[:12]
    root = CACHE_DIR / f"{SUITE}-{key}"
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time; others wait and reuse it
        Path(f"{root}.last-used").touch()
        _remove_images_unused_for_a_day()
        if (root / ".complete").exists():
            return root
        partial = CACHE_DIR / f"{SUITE}-{key}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        log = CACHE_DIR / "mmdebstrap.log"
        with open(log, "w") as out:
            # force-unsafe-io: no fsync per file while unpacking; a throwaway image needs no crash safety.
            done = subprocess.run(["mmdebstrap", "--variant=minbase", "--dpkgopt=force-unsafe-io",
                                   f"--include={','.join(wanted)}", SUITE, str(partial), MIRROR],
                                  stdout=out, stderr=subprocess.STDOUT, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"mmdebstrap failed ({done.returncode}); last lines of {log}:\n"
                               + "\n".join(log.read_text().splitlines()[-20:]))
        (partial / ".complete").touch()
        partial.rename(root)
        return root


def _remove_images_unused_for_a_day() -> None:
    """Each image is ~650 MB. One another run may still use (a concurrent
    run of other code) has been touched within the day."""
    for marker in CACHE_DIR.glob(f"{SUITE}-*.last-used"):
        if time.time() - marker.stat().st_mtime > 86400:
            shutil.rmtree(str(marker).removesuffix(".last-used"), ignore_errors=True)
            marker.unlink()


class Lan:
    """Network namespaces on one bridge: a controller and the hosts."""

    def __init__(self):
        self.prefix = f"ud{os.getpid() % 100000}{secrets.token_hex(2)}"
        self.namespaces: list[str] = []
        self.bridge_ns = self._netns("lan")
        self.exec_in(self.bridge_ns, "ip", "link", "add", "br0", "type", "bridge")
        self.exec_in(self.bridge_ns, "ip", "link", "set", "br0", "up")
        self.controller_address = f"{SUBNET}.2"
        self.controller_ns = self.attach("ctl", self.controller_address)

    def _netns(self, name: str) -> str:
        ns = f"{self.prefix}-{name}"
        run(["ip", "netns", "add", ns])
        self.namespaces.append(ns)
        self.exec_in(ns, "ip", "link", "set", "lo", "up")
        return ns

    def attach(self, name: str, address: str) -> str:
        """A namespace with `eth0` at `address`, its other end on the bridge."""
        ns = self._netns(name)
        run(["ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", name, "netns", self.bridge_ns])
        self.exec_in(self.bridge_ns, "ip", "link", "set", name, "master", "br0", "up")
        self.exec_in(ns, "ip", "addr", "add", f"{address}/24", "dev", "eth0")
        self.exec_in(ns, "ip", "link", "set", "eth0", "up")
        return ns

    def exec_in(self, ns: str, *argv: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        return run(["ip", "netns", "exec", ns, *argv], timeout=timeout, check=check)

    def close(self) -> None:
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True)


def _power_off_when_orphaned() -> None:
    """In the child before exec: should the test process die without its
    teardown (SIGKILL), the kernel sends nspawn SIGTERM, which powers the
    container off. Survives the execs of unshare and sh."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Machine:
    """One booted container: systemd as PID 1, sshd, eth0 at `address`."""

    def __init__(self, name: str, address: str, image: Path, lan: Lan, workdir: Path, public_key: str):
        self.name, self.address, self.image, self.lan = name, address, image, lan
        self.workdir = workdir
        self.netns = lan.attach(name, address)
        self.machine = f"{lan.prefix}-{name}"
        self.proc: subprocess.Popen | None = None
        self._public_key = public_key
        self.console_log = workdir / "console.log"

    def boot(self) -> "Machine":
        upper, work, merged = (self.workdir / d for d in ("upper", "work", "root"))
        for d in (upper, work, merged):
            d.mkdir(parents=True, exist_ok=True)
        ssh_dir = upper / "root" / ".ssh"
        ssh_dir.mkdir(parents=True, mode=0o700)
        (ssh_dir / "authorized_keys").write_text(self._public_key)
        (ssh_dir / "authorized_keys").chmod(0o600)
        os.chmod(upper / "root", 0o700)
        mount = f"mount -t overlay overlay -o lowerdir={self.image},upperdir={upper},workdir={work} {merged}"
        nspawn = ["systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "--boot", f"--directory={merged}",
                  f"--machine={self.machine}", f"--hostname={self.name}", "--console=read-only",
                  f"--network-namespace-path=/run/netns/{self.netns}",
                  # Its own namespace's network only (nspawn grants this with --private-network, not with a
                  # namespace it is given): the firewall role loads nftables rules.
                  "--capability=CAP_NET_ADMIN"]
        # A cgroup of its own (with --keep-unit, nspawn's cgroup is the container's root): otherwise every
        # container's systemd — ours three and any other run's — manages the same cgroup paths, and a
        # unit's cgroup made or removed by one races another's ("Control process exited,
        # status=219/CGROUP": nftables' reload failed so, now and then, on one host).
        own_cgroup = " && ".join(f"mkdir -p {d} && echo $$ > {d}/cgroup.procs" for d in self._cgroup_dirs())
        # A private mount namespace: the overlay vanishes with the container, whatever happens to this process.
        script = f"{own_cgroup} && {mount} && exec {' '.join(nspawn)}" if own_cgroup else \
            f"{mount} && exec {' '.join(nspawn)}"
        with open(self.console_log, "w") as log:
            self.proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script],
                                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True, preexec_fn=_power_off_when_orphaned)
        return self

    def _cgroup_dirs(self) -> list[str]:
        """This machine's cgroup in each hierarchy systemd uses: the unified one (cgroup v2), or the
        named systemd one and the unified one beside it (the hybrid layout)."""
        root = Path("/sys/fs/cgroup")
        if (root / "cgroup.controllers").exists():
            return [str(root / self.machine)]
        return [str(root / h / self.machine) for h in ("systemd", "unified") if (root / h / "cgroup.procs").exists()]

    def _remove_cgroups(self) -> None:
        for top in map(Path, self._cgroup_dirs()):
            if top.is_dir():
                for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
                    with contextlib.suppress(OSError):
                        d.rmdir()
                with contextlib.suppress(OSError):
                    top.rmdir()

    def wait_for_ssh(self, key_file: Path, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited while booting:\n{self.console_log.read_text()[-3000:]}")
            probe = self.ssh(key_file, "systemctl is-system-running --wait >/dev/null; true", timeout=60, check=False)
            if probe.returncode == 0:
                return
            time.sleep(0.5)
        raise RuntimeError(f"{self.name}: no SSH after {timeout} s:\n{self.console_log.read_text()[-3000:]}")

    def ssh(self, key_file: Path, command: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        return self.lan.exec_in(self.lan.controller_ns, "ssh", *SSH_OPTIONS, "-i", str(key_file),
                                f"root@{self.address}", command, timeout=timeout, check=check)

    def shutdown(self, timeout: float = 20) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)  # nspawn powers the container off
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        with contextlib.suppress(OSError):  # nspawn's own leftover, named after our machine
            shutil.rmtree(f"/run/systemd/nspawn/propagate/{self.machine}")
        self._remove_cgroups()
