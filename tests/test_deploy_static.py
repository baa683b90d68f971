"""The playbooks without hosts: Ansible's syntax check, ansible-lint's
production profile (and proof that it does flag a violation), and the
wheelhouse builder's guard. The real apply is in test_deploy_apply.py."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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
