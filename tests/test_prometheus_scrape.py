"""A real Prometheus (Debian's package) scraping a running two-node cluster
(simulated exchange, redis-server, two node processes) every 250 ms, with
the alert rules of deploy/prometheus loaded: the lock-ownership query sees
exactly one holder, and after a SIGKILL of the primary the new one; the
failover alert fires and the no-holder and split-brain alerts do not. The
rules, the Grafana dashboard and the runbooks' queries name only metrics
the nodes export, and run."""
import signal
import time
import urllib.request

import pytest

from tests.clusterproc import running_pair
from tests.promproc import PrometheusProcess
from tests.promql import RULES, alert_rules, dashboard_queries, exposed_names, metric_names, runbook_queries

pytestmark = pytest.mark.timeout(120)
JOB = "understudy"
HOLDERS = f'understudy_lock_held{{job="{JOB}"}} == 1'
PROMETHEUS_OWN = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """The cluster and the Prometheus scraping it; tests run in file order and the last one kills a node."""
    tmp = tmp_path_factory.mktemp("scrape")
    with running_pair(tmp, "--seed", "9", "--flow-rate", "1") as cluster:
        targets = [f"127.0.0.1:{cluster.admin_ports[n]}" for n in ("sg-1", "sg-2")]
        prom = PrometheusProcess(tmp / "prometheus", JOB, targets, rule_files=[RULES]).start()
        try:
            yield cluster, prom
        finally:
            prom.stop()


def _holders(prom) -> list[str]:
    return sorted(r["metric"]["node"] for r in prom.query(HOLDERS))


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_the_lock_ownership_query_sees_exactly_one_holder(pair):
    cluster, prom = pair
    # Both nodes scraped, one of them holding and quoting.
    prom.wait_for(f'up{{job="{JOB}"}} == 1', lambda r: len(r) == 2, 20, "both nodes scraped")
    prom.wait_for(f'{HOLDERS} and on (node) understudy_quoting == 1', lambda r: len(r) == 1, 30,
                  "one quoting holder")
    [holder] = _holders(prom)
    other = "sg-2" if holder == "sg-1" else "sg-1"
    assert prom.query(f'sum(understudy_lock_held{{job="{JOB}"}})')[0]["value"][1] == "1"
    roles = {r["metric"]["node"]: r["metric"]["role"] for r in prom.query(f'understudy_role{{job="{JOB}"}} == 1')}
    assert roles == {holder: "primary", other: "standby"}
    # The nodes agree with what Prometheus sees: /primary answers 200 on the holder only.
    assert _status(f"{cluster.nodes[holder].admin_url}/primary") == 200
    assert _status(f"{cluster.nodes[other].admin_url}/primary") == 503


def _exported(cluster) -> set[str]:
    names = set(PROMETHEUS_OWN)
    for proc in cluster.nodes.values():
        with urllib.request.urlopen(f"{proc.admin_url}/metrics", timeout=2) as resp:
            names |= exposed_names(resp.read().decode())
    return names


def test_every_metric_the_alert_rules_name_is_exported(pair):
    cluster, prom = pair
    exported = _exported(cluster)
    scraped = set(prom.api("label/__name__/values"))
    for rule in alert_rules():
        missing = metric_names(rule["expr"]) - exported
        assert not missing, f"{rule['alert']} reads {missing}, which no node exports"
    # The ownership metrics reached Prometheus, not just the text page.
    assert {"understudy_lock_held", "understudy_lock_epoch", "understudy_role",
            "understudy_peer_heartbeat_age_seconds", "understudy_takeovers_total"} <= scraped


def test_every_dashboard_query_runs_and_names_exported_metrics(pair):
    cluster, prom = pair
    exported = _exported(cluster)
    for where, expr in dashboard_queries():
        missing = metric_names(expr) - exported
        assert not missing, f"{where} reads {missing}, which no node exports: {expr}"
        prom.query(expr)  # valid PromQL, or the API says why (promproc asserts success)
    # The panels at the heart of it show data from the running pair.
    assert prom.query(f'max(understudy_lock_epoch{{job="{JOB}"}})')
    assert len(prom.query(f'understudy_peer_heartbeat_age_seconds{{job="{JOB}"}} < 60')) == 2


def test_every_query_a_runbook_gives_runs_and_names_exported_metrics(pair):
    cluster, prom = pair
    exported = _exported(cluster)
    queries = runbook_queries()
    assert len(queries) >= 5
    for where, expr in queries:
        missing = metric_names(expr) - exported
        assert not missing, f"{where} reads {missing}, which no node exports: {expr}"
        prom.query(expr)


def test_after_a_sigkill_of_the_primary_the_query_sees_the_new_holder(pair):
    cluster, prom = pair
    [old] = prom.wait_for(HOLDERS, lambda r: len(r) == 1, 20, "one holder")
    # Steady state first: the cold start's own "no holder" (both nodes starting) has cleared.
    prom.wait_for('ALERTS{alertname="UnderstudyNoLockHolder"}', lambda r: not r, 10, "no-holder alert clear")
    old_node = old["metric"]["node"]
    old_epoch = float(prom.query(f'understudy_lock_epoch{{node="{old_node}"}}')[0]["value"][1])
    new_node = "sg-2" if old_node == "sg-1" else "sg-1"
    cluster.nodes[old_node].signal(signal.SIGKILL)
    cluster.nodes[old_node].wait()
    killed_at, killed_at_wall = time.monotonic(), time.time()
    seen = []
    deadline = killed_at + 15
    while time.monotonic() < deadline:
        seen.append(_holders(prom))
        assert len(seen[-1]) <= 1, f"two holders seen: {seen[-1]}"
        if seen[-1] == [new_node]:
            break
        time.sleep(0.1)
    assert seen[-1] == [new_node], f"holders seen after the kill: {seen}"
    new_epoch = float(prom.query(f'understudy_lock_epoch{{node="{new_node}"}}')[0]["value"][1])
    assert new_epoch > old_epoch
    assert prom.query(f'up{{job="{JOB}",instance="127.0.0.1:{cluster.admin_ports[old_node]}"}}')[0]["value"][1] == "0"

    # The takeover is counted under its reason, with its steps timed (from detection, on the new holder).
    prom.wait_for(f'understudy_takeovers_total{{node="{new_node}",reason="peer-silent"}} == 1', bool, 10,
                  "the takeover counted")
    [total] = prom.wait_for(f'understudy_takeover_seconds_sum{{node="{new_node}",phase="total"}}', bool, 10,
                            "the takeover timed")
    assert 0 < float(total["value"][1]) < 3.0
    for phase in ("acquire", "protective_cancel", "reconcile", "first_quote"):
        assert prom.query(f'understudy_takeover_seconds_count{{node="{new_node}",phase="{phase}"}} >= 1'), phase

    # The rules saw it too: the failover alert fires for the new holder...
    prom.wait_for('ALERTS{alertname="UnderstudyFailover",alertstate="firing"}',
                  lambda r: [a["metric"]["node"] for a in r] == [new_node], 20, "UnderstudyFailover firing")
    # ...while "no holder" (the gap was shorter than its 5 s) did not fire after the kill, and "split
    # brain" never even went pending. (A cold start of both nodes does leave the lock unheld for a
    # few seconds: that "no holder" is real, and the runbooks say to silence it for a full restart.)
    firing = prom.query('ALERTS{alertname="UnderstudyNoLockHolder",alertstate="firing"}[1m]')
    assert not [t for series in firing for t, _ in series["values"] if t >= killed_at_wall]
    assert not prom.query('max_over_time(ALERTS{alertname="UnderstudySplitBrain"}[5m])')
