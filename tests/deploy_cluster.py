"""The example inventory applied for real: three booted Debian hosts
(tests/deploy_hosts.py), a vault with fresh secrets, the simulated exchange
standing in for the venue, and `ansible-playbook` run over SSH from the
controller's namespace."""
import base64
import os
import re
import secrets
import shutil
import string
import subprocess
import sys
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.deploy_hosts import SUBNET, Lan, Machine, base_image, role_packages, run
from tests.simproc import SimProcess

REPO = Path(__file__).resolve().parent.parent
ANSIBLE_DIR = REPO / "deploy" / "ansible"
VENV_BIN = Path(sys.executable).parent
HOSTS = {"sg-1": f"{SUBNET}.11", "sg-2": f"{SUBNET}.12", "witness": f"{SUBNET}.20"}
SIM_PORT = 8900


def random_secret(length: int = 40) -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(length))


@dataclass
class Timings:
    steps: dict[str, float] = field(default_factory=dict)

    def measure(self, name: str):
        timings = self

        class _Step:
            def __enter__(self):
                self.started = time.monotonic()

            def __exit__(self, *exc):
                timings.steps[name] = round(time.monotonic() - self.started, 1)

        return _Step()


class DeployedCluster:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.timings = Timings()
        self.vault = {
            "vault_understudy_api_key": random_secret(),
            "vault_understudy_api_secret": random_secret(),
            "vault_understudy_admin_token": random_secret(),
            "vault_understudy_heartbeat_key": random_secret(48),
            "vault_understudy_redis_password": random_secret(),
            # The Consul variant's (tests/test_deploy_apply.py applies it after the Redis one).
            "vault_understudy_consul_management_token": str(uuid.uuid4()),
            "vault_understudy_consul_agent_token": str(uuid.uuid4()),
            "vault_understudy_consul_lock_token": str(uuid.uuid4()),
            "vault_understudy_consul_gossip_key": base64.b64encode(secrets.token_bytes(32)).decode(),
            "vault_understudy_pagerduty_routing_key": random_secret(32),
            "vault_understudy_slack_webhook_url": f"https://hooks.slack.com/services/T0/B0/{random_secret(24)}",
        }
        self.key_file = workdir / "id_ed25519"
        self.inventory = workdir / "inventory"
        self.vault_password_file = workdir / "vault-password"
        self.wheelhouse = workdir / "wheelhouse"
        self.lan: Lan | None = None
        self.machines: dict[str, Machine] = {}
        self.sim: SimProcess | None = None
        self.site_run: subprocess.CompletedProcess | None = None
        self._background = ThreadPoolExecutor(1)
        self.next_release: Future | None = None

    # --- building it -------------------------------------------------------------------------------------
    def start(self, next_version: str | None = None) -> "DeployedCluster":
        """Builds and boots the hosts. With `next_version`, the wheelhouse of
        that release is built in the background (next_release) for upgrade.yml."""
        with ThreadPoolExecutor(2) as pool:
            # The image (mmdebstrap, cached) and the wheelhouse (pip) do not depend on each other.
            image_job = pool.submit(base_image, role_packages(ANSIBLE_DIR))
            with self.timings.measure("wheelhouse"):
                run([str(ANSIBLE_DIR / "build-wheelhouse.sh"), str(self.wheelhouse)], timeout=300)
            if next_version:
                # In the shadow of the image's first build, or of site.yml.
                self.next_release = self._background.submit(self.build_next_release, next_version)
            with self.timings.measure("image (mmdebstrap, or the cache)"):
                image = image_job.result()
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "deploy-test", "-f", str(self.key_file)])
        public_key = Path(f"{self.key_file}.pub").read_text()
        with self.timings.measure("boot"):
            self.lan = Lan()
            for name, address in HOSTS.items():
                self.machines[name] = Machine(name, address, image, self.lan, self.workdir / name, public_key).boot()
            for machine in self.machines.values():
                machine.wait_for_ssh(self.key_file)
        self._start_sim()
        self._write_inventory()
        return self

    def _start_sim(self) -> None:
        account = (self.vault["vault_understudy_api_key"], self.vault["vault_understudy_api_secret"])
        self.sim = SimProcess(self.workdir, [account], ("--seed", "7"), audit_log=True)
        # setpriv: SIGTERM to the sim should this process die without its teardown.
        self.sim.args = ["setpriv", "--pdeathsig", "SIGTERM", "ip", "netns", "exec", self.lan.controller_ns,
                         *self.sim.args, "--host", self.lan.controller_address]
        self.sim.args[self.sim.args.index("--port") + 1] = str(SIM_PORT)
        self.sim.start()

    def _write_inventory(self) -> None:
        shutil.copytree(ANSIBLE_DIR / "inventory" / "example", self.inventory)
        (self.inventory / "vault.yml.example").unlink()
        hosts = {"all": {"children": {
            "nodes": {"hosts": {h: self._host_vars(h) for h in ("sg-1", "sg-2")}},
            "witnesses": {"hosts": {"witness": self._host_vars("witness")}},
            # As in the example: the witness is the one Consul server.
            "consul_servers": {"children": {"witnesses": None}},
        }}}
        (self.inventory / "hosts.yml").write_text(yaml.safe_dump(hosts))
        example = yaml.safe_load((self.inventory / "group_vars" / "all" / "main.yml").read_text())
        sim_url = f"http://{self.lan.controller_address}:{SIM_PORT}"
        overrides = {
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(self.key_file),
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
            # The namespaces have no route to the mirror; the image holds every package the roles install.
            "understudy_apt_cache_valid_time": 10 * 365 * 86400,
            "understudy_venue": {**example["understudy_venue"], "rest_url": sim_url,
                                 "stream_url": sim_url.replace("http", "ws"),
                                 "ws_api_url": sim_url.replace("http", "ws") + "/ws-api/v3"},
            "node_wheelhouse": str(self.wheelhouse),
            "node_environment": {"UNDERSTUDY_DEPLOY_TEST": "1"},
        }
        (self.inventory / "group_vars" / "all" / "test_overrides.yml").write_text(yaml.safe_dump(overrides))
        vault_file = self.inventory / "group_vars" / "all" / "vault.yml"
        vault_file.write_text(yaml.safe_dump(self.vault))
        self.vault_password_file.write_text(random_secret())
        self.vault_password_file.chmod(0o600)
        run([str(VENV_BIN / "ansible-vault"), "encrypt", "--vault-password-file", str(self.vault_password_file),
             str(vault_file)])

    def build_next_release(self, version: str) -> Path:
        """The wheelhouse of a release that differs from the installed one: the
        repository's sources under another version, for upgrade.yml."""
        source = self.workdir / "next-release"
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        for tree in ("understudy", "simexchange"):
            shutil.copytree(REPO / tree, source / tree, ignore=ignore)
        for name in ("README.md", "deploy/ansible/build-wheelhouse.sh"):
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
        pyproject = (REPO / "pyproject.toml").read_text()
        (source / "pyproject.toml").write_text(re.sub(r'(?m)^version = ".*"$', f'version = "{version}"', pyproject, 1))
        wheelhouse = self.workdir / "next-wheelhouse"
        run([str(source / "deploy/ansible/build-wheelhouse.sh"), str(wheelhouse)], timeout=300)
        return wheelhouse

    def use_lock_backend(self, backend: str) -> None:
        """What an operator does to move the lock: `understudy_lock_backend` in the inventory."""
        (self.inventory / "group_vars" / "all" / "test_lock_backend.yml").write_text(
            yaml.safe_dump({"understudy_lock_backend": backend}))

    @staticmethod
    def _host_vars(name: str) -> dict:
        return {"ansible_host": HOSTS[name], "understudy_private_address": HOSTS[name]}

    # --- using it -----------------------------------------------------------------------------------------
    def playbook(self, playbook: str, *extra: str, timeout: float = 600) -> subprocess.CompletedProcess:
        env = {**os.environ, "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
               "ANSIBLE_SSH_CONTROL_PATH_DIR": str(self.workdir / "cp"), "ANSIBLE_FORKS": "3",
               "ANSIBLE_LOCAL_TEMP": str(self.workdir / "ansible-tmp"),
               # Ansible's default less -C: the hosts are one bridge away, where compressing what goes
               # over SSH (the wheelhouse, Consul's 145 MB binary) only costs CPU (5.9 s against 2.3 s
               # for the binary on an idle machine, 14 s on a busy one).
               "ANSIBLE_SSH_ARGS": "-o ControlMaster=auto -o ControlPersist=60s"}
        argv = ["ip", "netns", "exec", self.lan.controller_ns, str(VENV_BIN / "ansible-playbook"),
                "-i", str(self.inventory / "hosts.yml"), "--vault-password-file", str(self.vault_password_file),
                playbook, *extra]
        # The log gets each line with the seconds since the start: where a slow run spends its time.
        started = time.monotonic()
        lines = []
        with subprocess.Popen(argv, cwd=ANSIBLE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) as proc, open(self.workdir / f"{Path(playbook).stem}.log", "a") as log:
            for line in proc.stdout:
                lines.append(line)
                log.write(f"{time.monotonic() - started:7.1f} {line}")
                if time.monotonic() - started > timeout:
                    proc.kill()
                    raise TimeoutError(f"{playbook} ran over {timeout} s:\n{''.join(lines[-50:])}")
        if proc.returncode != 0:
            # nftables' reload has failed now and then on one host (root cause not found yet); a
            # failed reload leaves the unit active, so after a failed run it is asked about by name.
            lines.append(self.diagnose(also=("nftables",)))
        return subprocess.CompletedProcess(argv, proc.returncode, "".join(lines), "")

    def diagnose(self, also: tuple[str, ...] = ()) -> str:
        """Each host's failed (or restarting) units and their journals: what a failed run or a flaky
        unit leaves behind, also written to the workdir, read before the containers are gone."""
        report = []
        for name, machine in self.machines.items():
            if machine.proc is None or machine.proc.poll() is not None:
                continue
            # Failed, or failing over and over under Restart=always (then "activating").
            units = machine.ssh(self.key_file, "systemctl list-units --state=failed,activating --no-legend "
                                               "--plain | cut -d' ' -f1", timeout=20, check=False).stdout.split()
            for unit in dict.fromkeys([*units, *also]):
                journal = machine.ssh(self.key_file, f"journalctl -u {unit} --no-pager -n 60 -o short-precise",
                                      timeout=20, check=False)
                report.append(f"--- {name}: {unit} ({'failed or restarting' if unit in units else 'asked by name'}); "
                              f"its journal:\n"
                              f"{journal.stdout}{journal.stderr}")
        text = "\n".join(report)
        if text:
            with open(self.workdir / "failed-units.log", "a") as out:
                out.write(text + "\n")
        return text

    def ssh(self, host: str, command: str, check: bool = True, timeout: float = 60) -> str:
        return self.machines[host].ssh(self.key_file, command, timeout=timeout, check=check).stdout

    def in_netns(self, host: str, *argv: str, timeout: float = 30, check: bool = True):
        ns = self.lan.controller_ns if host == "controller" else self.machines[host].netns
        return self.lan.exec_in(ns, *argv, timeout=timeout, check=check)

    def close(self) -> None:
        self._background.shutdown(wait=True)
        try:
            failed = self.diagnose() if self.machines else ""
        except (OSError, subprocess.SubprocessError) as exc:  # the teardown goes on regardless
            failed = f"(could not ask the hosts: {exc})"
        if failed:
            print(f"\nfailed units at teardown (also in {self.workdir}/failed-units.log):\n{failed}")
        if self.sim:
            self.sim.stop()
        with ThreadPoolExecutor(3) as pool:
            list(pool.map(lambda m: m.shutdown(), self.machines.values()))
        if self.lan:
            self.lan.close()


def recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP lines as {host: {ok: N, changed: N, failed: N, ...}}."""
    hosts = {}
    for line in output.split("PLAY RECAP")[-1].splitlines():
        match = re.match(r"^(\S+)\s+:\s+(.*)$", line)
        if match:
            hosts[match.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(2))}
    return hosts
