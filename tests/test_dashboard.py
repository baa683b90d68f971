"""The Grafana dashboard (deploy/grafana/cluster-overview.json): importable
structure, panels that do not overlap, the topics the operator needs, and
queries that are valid PromQL (checked by promtool). That every query names
only metrics the nodes export, and runs against a real Prometheus scraping a
real pair, is tested in tests/test_prometheus_scrape.py."""
import shutil
import subprocess

import yaml

from tests.promql import dashboard, dashboard_queries, metric_names

TOPICS = ("lock holder", "epoch", "heartbeat age", "takeover", "quotes", "inventory", "pnl", "role")


def _panels() -> list[dict]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def test_the_dashboard_is_importable():
    d = dashboard()
    assert d["uid"] == "understudy-overview" and d["title"].startswith("Understudy")
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["job"]["query"] == "understudy"  # the job the alert rules select
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    for panel in _panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"] and panel["description"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)) and all(t["expr"].strip() for t in panel["targets"])
        assert all('job="$job"' in t["expr"] for t in panel["targets"]), panel["title"]


def test_panels_fit_the_grid_without_overlapping():
    cells = {}
    for panel in dashboard()["panels"]:
        g = panel["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, panel["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_the_overview_covers_what_the_operator_needs():
    titles = " | ".join(p["title"].lower() for p in _panels())
    for topic in TOPICS:
        assert topic in titles, f"no panel about {topic}"
    read = set().union(*(metric_names(expr) for _, expr in dashboard_queries()))
    assert {"understudy_lock_held", "understudy_lock_epoch", "understudy_peer_heartbeat_age_seconds",
            "understudy_takeovers_total", "understudy_takeover_seconds_bucket", "understudy_quote_price",
            "understudy_position", "understudy_daily_pnl"} <= read


def _promtool_check(tmp_path, exprs: list[str]) -> subprocess.CompletedProcess:
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"dashboard:query_{i}", "expr": e}
                                                         for i, e in enumerate(exprs)]}]}
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump(rules))
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed; scripts/bootstrap.sh installs it"
    return subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=30)


def test_every_query_is_valid_promql(tmp_path):
    queries = dashboard_queries()
    result = _promtool_check(tmp_path, [expr for _, expr in queries])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(queries)} rules found" in result.stdout
    # Negative control: promtool does reject a broken query.
    assert _promtool_check(tmp_path, ["sum by (node (understudy_lock_held)"]).returncode != 0
