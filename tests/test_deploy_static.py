"""The playbooks without hosts: Ansible's syntax check, ansible-lint's
production profile (and proof that it does flag a violation), and the
wheelhouse builder's guard. The real apply is in test_deploy_apply.py."""
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
ANSIBLE_DIR = REPO / "deploy" / "ansible"
VENV_BIN = Path(sys.executable).parent


def ansible_env() -> dict:
    return {**os.environ, "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
            "NO_COLOR": "1", "ANSIBLE_LOCAL_TEMP": "/tmp"}


@pytest.mark.parametrize("playbook", ["site.yml", "upgrade.yml", "drill.yml"])
def test_playbook_syntax(playbook):
    done = subprocess.run([str(VENV_BIN / "ansible-playbook"), "--syntax-check", playbook], cwd=ANSIBLE_DIR,
                          env=ansible_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def lint(directory: Path, *paths: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "ansible-lint"), "--nocolor", *paths], cwd=directory,
                          env={**ansible_env(), "ANSIBLE_LINT_SKIP_VERSION_CHECK": "1"},
                          capture_output=True, text=True, timeout=300)


def test_ansible_lint_production_profile_passes():
    done = lint(ANSIBLE_DIR)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "Profile 'production' was required, and it passed" in output
    # Every playbook, role file and inventory file was looked at, none skipped.
    processed = int(output.split(" files processed")[0].rsplit(" in ", 1)[1])
    expected = len([p for p in ANSIBLE_DIR.rglob("*") if p.is_file() and p.suffix in (".yml", ".yaml", ".j2")])
    assert processed >= expected - 2, output


def test_ansible_lint_flags_a_violation(tmp_path):
    """The linter really runs the production rules on our tree: a task using
    a short module name, a shell pipe and no name fails it."""
    copy = tmp_path / "ansible"
    shutil.copytree(ANSIBLE_DIR, copy)
    tasks = copy / "roles" / "base" / "tasks" / "main.yml"
    tasks.write_text(tasks.read_text() + "\n- shell: cat /etc/os-release | head -1\n")
    done = lint(copy, "roles/base")
    output = done.stdout + done.stderr
    assert done.returncode != 0
    for rule in ("fqcn", "name[missing]", "risky-shell-pipe"):
        assert rule in output, output


def test_wheelhouse_builder_refuses_another_python_version(tmp_path):
    """pip evaluates dependency markers with the Python running it, so a
    wheelhouse resolved by another patch level can miss dependencies (redis
    needs async-timeout below 3.11.3): the builder refuses."""
    done = subprocess.run([str(ANSIBLE_DIR / "build-wheelhouse.sh"), str(tmp_path / "wh")],
                          env={**os.environ, "PYTHON": sys.executable, "TARGET_PYTHON_VERSION": "3.11.0"},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "but the hosts run 3.11.0" in done.stderr
    assert not (tmp_path / "wh").exists()


RENDER_PLAYBOOK = """
- name: Render what the roles would write, for every host, on the controller
  hosts: all
  gather_facts: false
  connection: local
  vars:
    ansible_python_interpreter: "{{{{ ansible_playbook_python }}}}"
  tasks:
    - name: Render the firewall
      ansible.builtin.template:
        src: {roles}/base/templates/nftables.conf.j2
        dest: "{out}/{{{{ inventory_hostname }}}}/nftables.conf"
        mode: "0600"
    - name: Render the Consul server's config
      ansible.builtin.template:
        src: "{roles}/consul/templates/{{{{ item }}}}.j2"
        dest: "{out}/{{{{ inventory_hostname }}}}/{{{{ item }}}}"
        mode: "0600"
      loop: [consul.hcl, secrets.hcl]
      when: "'consul_servers' in group_names"
    - name: Render the node's config
      ansible.builtin.template:
        src: {roles}/node/templates/node.toml.j2
        dest: "{out}/{{{{ inventory_hostname }}}}/node.toml"
        mode: "0600"
      when: "'nodes' in group_names"
"""


def test_three_consul_servers_render_a_valid_cluster(tmp_path):
    """The documented three-server layout (docs/deploy-consul.md): the example inventory with three
    hosts in consul_servers, rendered by the roles' own templates. Each server's config passes the
    real Consul's `consul validate`, expects three servers and joins all three; the nodes list all
    three; each firewall admits RPC and gossip from the other servers only and the API from the nodes."""
    inventory = tmp_path / "inventory"
    shutil.copytree(ANSIBLE_DIR / "inventory" / "example", inventory)
    hosts = yaml.safe_load((inventory / "hosts.yml").read_text())
    servers = {"witness": "10.20.0.20", "consul-2": "10.20.0.21", "consul-3": "10.20.0.22"}
    hosts["all"]["children"]["consul_servers"] = {"hosts": {
        "witness": None, **{name: {"understudy_private_address": servers[name]} for name in ("consul-2", "consul-3")}}}
    (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts))
    (inventory / "group_vars" / "all" / "vault.yml").write_text(yaml.safe_dump({
        "vault_understudy_consul_agent_token": "3f1c5a52-5d2b-4b7e-9a55-0f6e1c2d3b4a",
        "vault_understudy_consul_gossip_key": "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s="}))
    # The roles' defaults, below every inventory variable as in a real run (play vars would win over them).
    for role in ("base", "node", "consul"):
        shutil.copy(ANSIBLE_DIR / "roles" / role / "defaults" / "main.yml", inventory / "group_vars" / "all" /
                    f"00-{role}-defaults.yml")
    (inventory / "group_vars" / "all" / "zz-lock.yml").write_text("understudy_lock_backend: consul\n")
    out = tmp_path / "out"
    for host in (*servers, "sg-1", "sg-2"):
        (out / host).mkdir(parents=True)
    playbook = tmp_path / "render.yml"
    playbook.write_text(RENDER_PLAYBOOK.format(roles=ANSIBLE_DIR / "roles", out=out))
    done = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", str(inventory / "hosts.yml"), str(playbook)],
                          cwd=ANSIBLE_DIR, env=ansible_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]

    consul = REPO / ".tools" / "bin" / "consul"
    for name, address in servers.items():
        checked = subprocess.run([str(consul), "validate", str(out / name)], capture_output=True, text=True,
                                 timeout=30)
        assert checked.returncode == 0 and "Configuration is valid" in checked.stdout, checked.stdout + checked.stderr
        hcl = (out / name / "consul.hcl").read_text()
        assert "bootstrap_expect = 3" in hcl and f'bind_addr = "{address}"' in hcl
        assert sorted(json.loads(re.search(r"^retry_join = (.*)$", hcl, re.M).group(1))) == sorted(servers.values())
        rules = (out / name / "nftables.conf").read_text()
        for port, proto in (("8300", "tcp"), ("8301", "tcp"), ("8301", "udp")):
            sources = set(re.findall(rf"ip saddr (\S+) {proto} dport {port} accept", rules))
            assert sources == set(servers.values()) - {address}, (name, port, proto, rules)
        assert set(re.findall(r"ip saddr (\S+) tcp dport 8500 accept", rules)) == {"10.20.0.11", "10.20.0.12"}
        assert "dport 6379" not in rules
    for node in ("sg-1", "sg-2"):
        config = tomllib.loads((out / node / "node.toml").read_text())
        assert config["lock"]["backend"] == "consul" and config["lock"]["ttl_s"] == 0.5
        assert sorted(config["lock"]["consul"]["urls"]) == [f"http://{a}:8500" for a in sorted(servers.values())]
        assert "dport 8300" not in (out / node / "nftables.conf").read_text()
