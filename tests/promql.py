"""What the alert-rule, dashboard and scrape tests need to know about PromQL
and the exposition format: which metric names an expression reads, which a
node's /metrics declares, and the dashboard's queries with Grafana's
variables filled in."""
import json
import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
RULES = REPO / "deploy" / "prometheus" / "understudy.rules.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "cluster-overview.json"

_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
             "offset", "inf", "nan"}
# The values a dashboard's variables take when its queries are checked.
GRAFANA_VARIABLES = {"$job": "understudy", "$__rate_interval": "1m", "$__range": "1h", "$__interval": "15s"}


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (a lexer's worth, enough for our rules)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges and subqueries
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)  # label lists
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        name = match.group(0)
        following = text[match.end():].lstrip()
        if name.lower() in _KEYWORDS or following.startswith("("):
            continue  # a keyword, or a function call
        if re.fullmatch(r"\d+[smhdwy]|e\d+", name):
            continue
        names.add(name)
    return names


def exposed_names(metrics_text: str) -> set[str]:
    """Every name a /metrics page declares or samples; a histogram declares
    its _bucket, _sum and _count series, whether observed yet or not."""
    names = set()
    for line in metrics_text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()[:4]
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"} if kind == "histogram" else {name}
        elif line and not line.startswith("#"):
            names.add(re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", line).group(0))
    return names


def alert_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, expr) of every panel target and annotation, variables filled in."""
    d = dashboard()
    found = [(f"panel {p['title']!r} target {t['refId']}", t["expr"]) for p in d["panels"] for t in p.get("targets", [])]
    found += [(f"annotation {a['name']!r}", a["expr"]) for a in d["annotations"]["list"] if "expr" in a]
    out = []
    for where, expr in found:
        for variable, value in sorted(GRAFANA_VARIABLES.items(), key=lambda kv: -len(kv[0])):
            expr = expr.replace(variable, value)
        out.append((where, expr))
    return out


def runbook_queries() -> list[tuple[str, str]]:
    """(where, expr) of every ```promql block in docs/runbooks/*.md."""
    found = []
    for path in sorted((REPO / "docs" / "runbooks").glob("*.md")):
        block, start = None, 0
        for number, line in enumerate(path.read_text().splitlines(), 1):
            stripped = line.strip()
            if stripped.startswith("```"):
                if block is not None:
                    found.append((f"{path.name}:{start}", " ".join(block)))
                    block = None
                elif stripped[3:].strip() == "promql":
                    block, start = [], number
            elif block is not None and stripped:
                block.append(stripped)
    return found
