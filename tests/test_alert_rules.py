"""The alert rules in deploy/prometheus/ under Prometheus' own tools: they
load, their promtool unit tests pass (and fail when a rule is broken), every
alert is tested both firing and quiet, carries a severity and leads to a
runbook section; the Prometheus and Alertmanager examples are valid, and
Alertmanager routes critical to the pager and warning to chat; the
runbooks' amtool commands work against a real Alertmanager."""
import re
import shutil
import subprocess
import time
import urllib.request

import pytest
import yaml

from tests.promql import REPO, RULES, alert_rules
from tests.redisproc import free_port
from tests.runbooks_md import RUNBOOKS, shell_lines

PROM = REPO / "deploy" / "prometheus"
RULE_TESTS = sorted((PROM / "tests").glob("*.test.yml"))
ALERTMANAGER = REPO / "deploy" / "alertmanager" / "alertmanager.yml"
ALERTS_RUNBOOK = REPO / "docs" / "runbooks" / "alerts.md"


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed; scripts/bootstrap.sh installs it from Debian's packages"
    return path


def _run(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([_tool(args[0]), *args[1:]], capture_output=True, text=True, cwd=cwd, timeout=60)


def test_the_rules_load():
    result = _run("promtool", "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_promtool_unit_tests_pass():
    assert RULE_TESTS, "no promtool tests found"
    result = _run("promtool", "test", "rules", *map(str, RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_TESTS)


def _cases() -> list[dict]:
    return [case for path in RULE_TESTS for test in yaml.safe_load(path.read_text())["tests"]
            for case in test.get("alert_rule_test", [])]


@pytest.mark.parametrize("alert", [r["alert"] for r in alert_rules()])
def test_every_alert_is_tested_firing_and_quiet(alert):
    cases = [c for c in _cases() if c["alertname"] == alert]
    assert any(c.get("exp_alerts") for c in cases), f"{alert}: no test shows it firing"
    assert any(not c.get("exp_alerts") for c in cases), f"{alert}: no test shows it quiet"


@pytest.mark.parametrize("alert, breakage", [
    ("UnderstudyNoLockHolder", ("< 1", "< 0")),
    ("UnderstudySplitBrain", ("> 1", "> 2")),
    ("UnderstudySplitBrain", ("for: 3s", "for: 0s")),
    ("UnderstudyFailover", ('reason="peer-silent"', 'reason=~".+"')),
    ("UnderstudyStandbyNotReady", ("== 1)", "== 0)")),
])
def test_the_unit_tests_catch_a_broken_rule(tmp_path, alert, breakage):
    """A negative control: that alert's tests, run against a rule file with
    the rule broken, must fail, naming it."""
    text = RULES.read_text()
    start = text.index(f"- alert: {alert}\n")
    end = text.find("- alert: ", start + 1)
    block = text[start:end if end > 0 else len(text)]
    assert breakage[0] in block
    (tmp_path / "tests").mkdir()
    (tmp_path / RULES.name).write_text(text.replace(block, block.replace(breakage[0], breakage[1], 1)))
    for path in RULE_TESTS:
        suite = yaml.safe_load(path.read_text())
        suite["tests"] = [t for t in suite["tests"]
                          if any(c["alertname"] == alert for c in t.get("alert_rule_test", []))]
        if suite["tests"]:
            (tmp_path / "tests" / path.name).write_text(yaml.safe_dump(suite))
    result = _run("promtool", "test", "rules", *map(str, (tmp_path / "tests").iterdir()))
    assert result.returncode != 0
    assert f"alertname: {alert}" in result.stdout + result.stderr


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_every_alert_has_a_severity_and_a_runbook_section(rule):
    assert rule["labels"]["severity"] in ("critical", "warning")
    assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    url = rule["annotations"]["runbook_url"]
    path, _, anchor = url.partition("#")
    assert (REPO / path) == ALERTS_RUNBOOK, url
    text = ALERTS_RUNBOOK.read_text()
    sections = {_slug(m.group(1)): m.start() for m in re.finditer(r"(?m)^## (.+)$", text)}
    assert anchor in sections, f"{url}: no such section in {ALERTS_RUNBOOK.name}"
    start = sections[anchor]
    following = [s for s in sections.values() if s > start]
    section = text[start:min(following) if following else len(text)]
    for part in ("What it means", "How to confirm", "What to do"):
        assert f"**{part}**" in section, f"{rule['alert']}: the runbook section lacks '{part}'"


def test_every_alert_section_in_the_runbook_is_a_rule():
    names = {r["alert"] for r in alert_rules()}
    headings = set(re.findall(r"(?m)^## (Understudy\w+)\s*$", ALERTS_RUNBOOK.read_text()))
    assert headings == names


def test_the_example_prometheus_config_is_valid(tmp_path):
    config = (PROM / "prometheus.yml").read_text().replace("/etc/prometheus/rules/understudy.rules.yml", str(RULES))
    assert str(RULES) in config
    (tmp_path / "prometheus.yml").write_text(config)
    result = _run("promtool", "check", "config", str(tmp_path / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    job = yaml.safe_load(config)["scrape_configs"][0]
    assert job["job_name"] == "understudy"  # what every rule selects


def test_the_alertmanager_example_is_valid_and_has_no_inline_secrets(tmp_path):
    result = _run("amtool", "check-config", str(ALERTMANAGER))
    assert result.returncode == 0, result.stdout + result.stderr
    text = ALERTMANAGER.read_text()
    for secret_key in ("routing_key:", "service_key:", "api_url:", "auth_password:", "bearer_token:", "url:"):
        assert not re.search(rf"(?m)^\s*-?\s*{secret_key}", text), f"{secret_key} inline; use its *_file form"
    # Negative control: amtool is strict, so the *_file keys above were really understood.
    broken = tmp_path / "alertmanager.yml"
    broken.write_text(text.replace("routing_key_file:", "routing_key_fiel:"))
    assert _run("amtool", "check-config", str(broken)).returncode != 0


@pytest.mark.parametrize("labels, receivers", [
    (["severity=critical", "alertname=UnderstudySplitBrain"], "pager,chat"),
    (["severity=critical", "alertname=UnderstudyNoLockHolder"], "pager,chat"),
    (["severity=warning", "alertname=UnderstudyFailover"], "chat"),
])
def test_alertmanager_routes_critical_to_the_pager_and_warning_to_chat(labels, receivers):
    result = _run("amtool", "config", "routes", "test", f"--config.file={ALERTMANAGER}",
                  f"--verify.receivers={receivers}", *labels)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receivers


def test_the_runbooks_amtool_commands_work_against_a_real_alertmanager(tmp_path):
    """Debian's Alertmanager on a loopback port with the example config (its
    secret files in tmp); every amtool line of the runbooks, pointed at it."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "pagerduty-routing-key").write_text("test-routing-key\n")
    (secrets / "slack-webhook-url").write_text("http://127.0.0.1:9/never-called\n")
    config = tmp_path / "alertmanager.yml"
    config.write_text(ALERTMANAGER.read_text().replace("/etc/alertmanager/secrets/", f"{secrets}/"))
    url = f"http://127.0.0.1:{free_port()}"
    proc = subprocess.Popen([_tool("prometheus-alertmanager"), f"--config.file={config}",
                             f"--storage.path={tmp_path / 'data'}", f"--web.listen-address={url[7:]}",
                             "--cluster.listen-address="], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                urllib.request.urlopen(f"{url}/-/ready", timeout=1)
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "alertmanager did not start"
                time.sleep(0.1)
        lines = [line for path in RUNBOOKS for line in shell_lines(path) if line.segments()[0][0] == "amtool"]
        assert lines, "no runbook gives an amtool command"
        for line in lines:
            assert "--alertmanager.url=" in line.text, f"{line.where}: name the Alertmanager (--alertmanager.url=)"
            text = re.sub(r"--alertmanager\.url=\S+", f"--alertmanager.url={url}", line.text)
            result = subprocess.run(["bash", "-o", "pipefail", "-c", text], capture_output=True, text=True,
                                    timeout=30)
            assert result.returncode == 0, f"{line.where}: {line.text}\n{result.stdout}{result.stderr}"
        silences = _run("amtool", "silence", "query", f"--alertmanager.url={url}")
        assert "UnderstudyNodeDown" in silences.stdout
    finally:
        proc.terminate()
        proc.wait(10)
