"""site.yml applied for real: three Debian 12 hosts booted with systemd
(tests/deploy_hosts.py) get the example inventory with fresh vault secrets;
the simulated exchange stands in for the venue. Then: the rendered configs,
the installed virtualenv's `config check`, the secrets' owner and mode, the
unit verified and hardened, the pair trading under systemd with Redis on the
witness and Prometheus watching, the firewall, and drill.yml freezing the
primary past the watchdog, then upgrade.yml rolling the pair onto a new
release.

The expensive part is building the Debian root the first time (mmdebstrap,
about 50 s on two cores, ~120 MB from deb.debian.org); it is cached under
~/.cache/understudy/deploy (UNDERSTUDY_DEPLOY_CACHE) for later runs. Root, network namespaces and
systemd-nspawn are required, as they are on the machines the suite runs on.
"""
import base64
import json
import re
import time
import tomllib

import pytest
import yaml

from tests.deploy_cluster import ANSIBLE_DIR, HOSTS, REPO, SIM_PORT, DeployedCluster, recap

pytestmark = pytest.mark.timeout(900)

NODES = ("sg-1", "sg-2")
NEXT_VERSION = "0.1.0+next"
SECRET_FILES = {"api_key": "vault_understudy_api_key", "api_secret": "vault_understudy_api_secret",
                "admin_token": "vault_understudy_admin_token", "heartbeat_key": "vault_understudy_heartbeat_key",
                "redis_password": "vault_understudy_redis_password"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    deployed = DeployedCluster(tmp_path_factory.mktemp("deploy"))
    try:
        deployed.start(next_version=NEXT_VERSION)
        with deployed.timings.measure("site.yml"):
            deployed.site_run = deployed.playbook("site.yml")
        yield deployed
    finally:
        deployed.close()
        print(f"\ndeploy test timings (s): {deployed.timings.steps}")


def wait_until(predicate, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(interval)


def http_status(cluster, host: str, url: str) -> int:
    """GET from inside `host` (its firewall and its view), like the playbooks do."""
    script = ("import sys, urllib.request, urllib.error\n"
              "try:\n    print(urllib.request.urlopen(sys.argv[1], timeout=3).status)\n"
              "except urllib.error.HTTPError as e:\n    print(e.code)\n"
              "except OSError:\n    print(0)\n")
    return int(cluster.ssh(host, f"python3 -c '{script}' {url}").strip())


def roles(cluster) -> dict[str, str]:
    found = {}
    for node in NODES:
        url = f"http://{HOSTS[node]}:9100"
        found[node] = ("primary" if http_status(cluster, node, f"{url}/primary") == 200
                       else "standby" if http_status(cluster, node, f"{url}/standby") == 200 else "other")
    return found


def healthy_pair(cluster) -> dict[str, str] | None:
    found = roles(cluster)
    return found if sorted(found.values()) == ["primary", "standby"] else None


def unit_property(cluster, host: str, name: str) -> str:
    return cluster.ssh(host, f"systemctl show -p {name} --value understudy-node").strip()


def test_site_yml_applies_cleanly(cluster):
    run = cluster.site_run
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-3000:]
    summary = recap(run.stdout)
    assert set(summary) == set(HOSTS)
    for host, counts in summary.items():
        assert counts["failed"] == 0 and counts["unreachable"] == 0, summary
        assert counts["changed"] > 10, summary
    print("\n" + run.stdout[run.stdout.index("PLAY RECAP"):].strip())


def test_no_secret_reaches_the_playbook_output(cluster):
    output = cluster.site_run.stdout + cluster.site_run.stderr
    for name, value in cluster.vault.items():
        assert value not in output, f"{name} was printed"


def test_rendered_node_configs(cluster):
    example = yaml.safe_load((ANSIBLE_DIR / "inventory/example/group_vars/all/main.yml").read_text())
    sim = f"{cluster.lan.controller_address}:{SIM_PORT}"
    for node, peer in (("sg-1", "sg-2"), ("sg-2", "sg-1")):
        config = tomllib.loads(cluster.ssh(node, "cat /etc/understudy/node.toml"))
        assert config["node"] == {"id": node, "mode": "cluster", "log_level": "info",
                                  "state_dir": "/var/lib/understudy"}
        assert config["cluster"]["peer"] == peer
        assert config["cluster"]["bind_host"] == HOSTS[node]
        assert config["cluster"]["peer_host"] == HOSTS[peer]
        assert config["cluster"]["peer_admin_url"] == f"http://{HOSTS[peer]}:9100"
        assert config["cluster"]["heartbeat_key"] == {"file": "/etc/understudy/secrets/heartbeat_key"}
        assert config["admin"] == {"host": HOSTS[node], "port": 9100,
                                   "token": {"file": "/etc/understudy/secrets/admin_token"}}
        assert config["lock"]["backend"] == "redis" and config["lock"]["ttl_s"] == 1.0
        assert config["lock"]["redis"] == {"host": HOSTS["witness"], "port": 6379, "username": "understudy",
                                           "password": {"file": "/etc/understudy/secrets/redis_password"},
                                           "key_prefix": "understudy"}
        assert config["venue"]["rest_url"] == f"http://{sim}"
        assert config["venue"]["ws_api_url"] == f"ws://{sim}/ws-api/v3"
        assert config["venue"]["api_key"] == {"file": "/etc/understudy/secrets/api_key"}
        assert config["strategy"] == example["understudy_strategy"]
        assert config["risk"] == example["understudy_risk"]
        assert config["market"] == example["understudy_market"]


def test_installed_virtualenv_passes_config_check_as_the_service_user(cluster):
    for node in NODES:
        out = cluster.ssh(node, "runuser -u understudy -- /opt/understudy/current/bin/understudy "
                                "config check /etc/understudy/node.toml")
        assert out.strip() == f"/etc/understudy/node.toml: ok (node {node}, cluster mode, BTCUSDT)"
        release = cluster.ssh(node, "readlink /opt/understudy/current").strip()
        assert re.fullmatch(r"/opt/understudy/releases/0\.1\.0-[0-9a-f]{12}/venv", release), release
        # The hosts' own Python (bookworm's), not this machine's.
        assert cluster.ssh(node, "/opt/understudy/current/bin/python -V").strip() == "Python 3.11.2"
        # The operator's wrapper runs the same check, as the service user, from sudo.
        assert "ok (node" in cluster.ssh(node, "understudy config check /etc/understudy/node.toml")


def test_secrets_owner_and_mode(cluster):
    for node in NODES:
        listing = cluster.ssh(node, "stat -c '%U %G %a %n' /etc/understudy /etc/understudy/secrets "
                                    "/etc/understudy/node.toml /etc/understudy/secrets/*").splitlines()
        assert listing[:3] == ["root understudy 750 /etc/understudy",
                               "understudy understudy 700 /etc/understudy/secrets",
                               "root understudy 640 /etc/understudy/node.toml"]
        files = {line.rsplit("/", 1)[1]: line.split()[:3] for line in listing[3:]}
        assert files == {name: ["understudy", "understudy", "600"] for name in SECRET_FILES}
        for name, vault_key in SECRET_FILES.items():
            assert cluster.ssh(node, f"cat /etc/understudy/secrets/{name}").strip() == cluster.vault[vault_key]
    witness = cluster.ssh("witness", "stat -c '%U %G %a %n' /etc/alertmanager/secrets/* /etc/redis/users.acl")
    assert witness.splitlines() == [
        "prometheus prometheus 400 /etc/alertmanager/secrets/pagerduty-routing-key",
        "prometheus prometheus 400 /etc/alertmanager/secrets/slack-webhook-url",
        "redis redis 640 /etc/redis/users.acl"]
    # Redis keeps a hash of the password, not the password.
    assert cluster.vault["vault_understudy_redis_password"] not in cluster.ssh("witness", "cat /etc/redis/users.acl")


def test_unit_installed_verified_and_hardened(cluster):
    shipped = (REPO / "deploy/systemd/understudy-node.service").read_text()
    for node in NODES:
        assert cluster.ssh(node, "cat /etc/systemd/system/understudy-node.service") == shipped
        assert cluster.ssh(node, "systemctl is-enabled understudy-node").strip() == "enabled"
        verify = cluster.machines[node].ssh(cluster.key_file, "systemd-analyze verify understudy-node.service")
        assert verify.returncode == 0 and verify.stderr == "", verify.stderr
    # The same check speaks up about a broken unit, so its silence above means something. (systemd
    # ignores a setting it cannot parse and verify still exits 0: the output is what counts.)
    broken = cluster.machines["sg-1"].ssh(
        cluster.key_file, "sed 's/^Restart=always/Restart=sometimes/; s/^WatchdogSec=5s/WatchdogSec=soon/' "
                          "/etc/systemd/system/understudy-node.service > /tmp/broken.service && "
                          "systemd-analyze verify /tmp/broken.service", check=False)
    assert "ignoring: sometimes" in broken.stderr and "ignoring: soon" in broken.stderr, broken.stderr
    exposure = cluster.ssh("sg-1", "systemd-analyze security understudy-node.service | tail -1")
    score = float(re.search(r"exposure level for understudy-node.service: ([\d.]+)", exposure).group(1))
    assert score <= 2.0, exposure


def test_pair_runs_under_systemd_with_the_watchdog(cluster):
    pair = wait_until(lambda: healthy_pair(cluster), 60, "one primary and one ready standby")
    for node in NODES:
        assert cluster.ssh(node, "systemctl is-active understudy-node").strip() == "active"
        assert unit_property(cluster, node, "Type") == "notify"
        assert unit_property(cluster, node, "WatchdogUSec") == "5s"
        assert unit_property(cluster, node, "User") == "understudy"
        assert unit_property(cluster, node, "NRestarts") == "0"
        environ = cluster.ssh(node, "tr '\\0' '\\n' < /proc/$(systemctl show -p MainPID --value "
                                    "understudy-node)/environ")
        assert "UNDERSTUDY_DEPLOY_TEST=1" in environ.splitlines()  # the drop-in is in effect
        assert "WATCHDOG_USEC=5000000" in environ.splitlines()
    status = cluster.ssh("sg-1", "understudy status --config /etc/understudy/node.toml")
    primary = next(node for node, role in pair.items() if role == "primary")
    assert re.search(rf"^{primary}\s+primary\s+\d+", status, re.M), status


def prometheus_query(cluster, query: str) -> list:
    script = ("import json, sys, urllib.parse, urllib.request\n"
              "url = 'http://127.0.0.1:9090/api/v1/query?query=' + urllib.parse.quote(sys.argv[1])\n"
              "print(json.dumps(json.load(urllib.request.urlopen(url, timeout=5))['data']['result']))\n")
    return json.loads(cluster.ssh("witness", f"python3 -c \"{script}\" '{query}'"))


def test_witness_runs_the_lock_and_monitoring(cluster):
    for unit in ("redis-server", "prometheus", "prometheus-alertmanager", "prometheus-node-exporter", "nftables"):
        assert cluster.ssh("witness", f"systemctl is-active {unit}").strip() == "active", unit
    def scraped_nodes():
        up = prometheus_query(cluster, 'up{job="understudy"} == 1')
        return sorted(r["metric"]["instance"] for r in up) == list(NODES)

    wait_until(scraped_nodes, 60, "Prometheus scraping both nodes")
    holders = prometheus_query(cluster, 'sum(understudy_lock_held{job="understudy"})')
    assert holders[0]["value"][1] == "1"
    machines = prometheus_query(cluster, 'up{job="node"} == 1')
    assert sorted(r["metric"]["instance"] for r in machines) == sorted(HOSTS)
    rules = json.loads(cluster.ssh("witness", "python3 -c \"import urllib.request; print(urllib.request.urlopen("
                                              "'http://127.0.0.1:9090/api/v1/rules').read().decode())\""))
    loaded = {rule["name"] for group in rules["data"]["groups"] for rule in group["rules"]}
    ours = {rule["alert"] for path in (REPO / "deploy/prometheus").glob("*.rules.yml")
            for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"] if "alert" in rule}
    assert ours and ours <= loaded
    assert http_status(cluster, "witness", "http://127.0.0.1:9093/-/ready") == 200


REDIS_PROBE = """
import sys, redis
host, password = sys.argv[1], sys.argv[2]
def outcome(client, *command):
    try:
        client.execute_command(*command)
        return "ok"
    except redis.exceptions.RedisError as exc:
        return type(exc).__name__
anonymous = redis.Redis(host=host, socket_timeout=3)
user = redis.Redis(host=host, username="understudy", password=password, socket_timeout=3)
print(outcome(anonymous, "PING"), outcome(user, "PING"), outcome(user, "GET", "understudy:epoch"),
      outcome(user, "GET", "elsewhere:key"), outcome(user, "FLUSHALL"), outcome(user, "CONFIG", "GET", "*"))
"""


def test_redis_lock_user_is_confined_and_persistence_is_on(cluster):
    probe = cluster.in_netns("sg-1", str(REPO / ".venv/bin/python"), "-c", REDIS_PROBE, HOSTS["witness"],
                             cluster.vault["vault_understudy_redis_password"])
    assert probe.stdout.split() == ["AuthenticationError", "ok", "ok", "NoPermissionError", "NoPermissionError",
                                    "NoPermissionError"], probe.stdout
    assert cluster.ssh("witness", "ls /var/lib/redis/appendonlydir | grep -c '\\.aof'").strip() != "0"


PORT_PROBE = """
import socket, sys
from concurrent.futures import ThreadPoolExecutor
def probe(target):
    host, port = target.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=0.5).close()  # one bridge away: ms, or dropped
        return "open"
    except ConnectionRefusedError:
        return "refused"
    except OSError:
        return "filtered"
with ThreadPoolExecutor(len(sys.argv) - 1) as pool:  # side by side: a dropped probe waits its 0.5 s
    print(*pool.map(probe, sys.argv[1:]))
"""


def probe_ports(cluster, source: str, *targets: str) -> list[str]:
    return cluster.in_netns(source, str(REPO / ".venv/bin/python"), "-c", PORT_PROBE, *targets).stdout.split()


def test_firewall_opens_ports_only_between_the_hosts_that_need_them(cluster):
    w, s1, s2 = HOSTS["witness"], HOSTS["sg-1"], HOSTS["sg-2"]
    # The controller is none of the three: it gets SSH and nothing else.
    assert probe_ports(cluster, "controller", f"{w}:22", f"{w}:6379", f"{s1}:9100", f"{s1}:9101") == \
        ["open", "filtered", "filtered", "filtered"]
    # The nodes reach the lock and each other's admin API; not the witness's Prometheus.
    assert probe_ports(cluster, "sg-1", f"{w}:6379", f"{s2}:9100", f"{w}:9090", f"{s2}:9101") == \
        ["open", "open", "filtered", "filtered"]
    # The witness scrapes the nodes (admin /metrics and node_exporter) but is not a lock client anywhere.
    assert probe_ports(cluster, "witness", f"{s1}:9100", f"{s2}:9101", f"{s1}:7400") == \
        ["open", "open", "filtered"]


def test_drill_freeze_primary_past_the_watchdog(cluster):
    """drill.yml against the deployed pair: the primary frozen for 8 s. The
    standby takes the lock; systemd's watchdog (5 s) kills the silent node
    and restarts it; it rejoins as a ready standby."""
    before = wait_until(lambda: healthy_pair(cluster), 60, "a healthy pair before the drill")
    primary = next(node for node, role in before.items() if role == "primary")
    standby = next(node for node in NODES if node != primary)
    run = cluster.playbook("drill.yml", "-e", "drill_scenario=freeze-primary", "-e", "drill_freeze_s=8")
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert f"scenario freeze-primary: {standby} held the lock" in run.stdout
    assert f"{primary} is a ready standby again" in run.stdout
    assert roles(cluster) == {primary: "standby", standby: "primary"}
    assert unit_property(cluster, primary, "NRestarts") == "1"
    journal = cluster.ssh(primary, "journalctl -u understudy-node --no-pager -o cat")
    assert "Watchdog timeout" in journal, journal[-3000:]
    assert unit_property(cluster, standby, "NRestarts") == "0"
    # The lock history the drill printed has the takeover: epoch, from, to, then its timings.
    assert re.search(rf"\d+\s+{primary}\s+{standby}\s+[\d.]+→", run.stdout), run.stdout[-3000:]


def test_upgrade_rolls_the_pair_onto_a_new_release(cluster):
    """upgrade.yml: the standby gets the new release and restarts, the lock is
    switched over to it, then the former primary follows and rejoins as the
    ready standby. Both processes run the new virtualenv afterwards."""
    before = wait_until(lambda: healthy_pair(cluster), 90, "a healthy pair before the upgrade")
    primary = next(node for node, role in before.items() if role == "primary")
    standby = next(node for node in NODES if node != primary)
    run = cluster.playbook("upgrade.yml", "-e", f"node_wheelhouse={cluster.next_release.result()}")
    assert run.returncode == 0, run.stdout[-6000:]
    assert roles(cluster) == {standby: "primary", primary: "standby"}
    for node in NODES:
        release = cluster.ssh(node, "readlink /opt/understudy/current").strip()
        assert f"/releases/{NEXT_VERSION}-" in release, release
        # The running process mapped the new release's compiled modules (msgspec, uvloop...).
        maps = cluster.ssh(node, "cat /proc/$(systemctl show -p MainPID --value understudy-node)/maps")
        assert release.removesuffix("/venv") in maps, node
        assert cluster.ssh(node, "systemctl is-active understudy-node").strip() == "active"
    # The lock moved by switchover, from the old primary to the upgraded standby: no failover.
    assert f"switched over from {primary} to {standby} in" in run.stdout, run.stdout[-3000:]
    assert re.search(rf"\d+\s+{primary}\s+{standby}\s+[\d.]+→", run.stdout), run.stdout[-3000:]


# -- the Consul variant, on the same hosts -----------------------------------------------------------------
CONSUL_SECRETS = {"consul_token": "vault_understudy_consul_lock_token"}


@pytest.fixture(scope="module")
def consul(cluster):
    """The same three hosts moved onto the Consul lock, the way docs/deploy-consul.md says to: both
    nodes stopped (the standby first; a node on each backend could each hold a lock),
    `understudy_lock_backend: consul` in the inventory, site.yml, which starts Consul on the witness
    and the pair on it; then the lock's part of site.yml once more, which must change nothing. The
    release stays the one upgrade.yml installed."""
    pair = roles(cluster)
    with cluster.timings.measure("consul: stop the pair"):
        for node in sorted(NODES, key=lambda n: pair[n] == "primary"):
            cluster.ssh(node, "systemctl stop understudy-node")
    cluster.use_lock_backend("consul")
    release = ("-e", f"node_wheelhouse={cluster.next_release.result()}")
    with cluster.timings.measure("site.yml (consul)"):
        cluster.consul_run = cluster.playbook("site.yml", *release)
    assert cluster.consul_run.returncode == 0, cluster.consul_run.stdout[-8000:]
    # Again, the lock's part only (the consul role, the nodes' lock settings and secrets): the
    # rest is what the Redis variant's runs already apply.
    with cluster.timings.measure("site.yml --tags lock (consul, again)"):
        cluster.consul_again = cluster.playbook("site.yml", "--tags", "lock", *release)
    return cluster


def consul_api(cluster, path: str, method: str = "GET", body: str | None = None) -> tuple[int, object]:
    """Consul's API on the witness, with the management token the role left for the operator."""
    script = ("import json, sys, urllib.request, urllib.error\n"
              "token = open('/etc/consul.d/secrets/management_token').read().strip()\n"
              "body = None if sys.argv[3] == '-' else sys.argv[3].encode()\n"
              "request = urllib.request.Request('http://127.0.0.1:8500' + sys.argv[1], method=sys.argv[2], "
              "data=body, headers={'X-Consul-Token': token})\n"
              "try:\n    reply = urllib.request.urlopen(request, timeout=5)\n"
              "except urllib.error.HTTPError as e:\n    reply = e\n"
              "print(json.dumps([reply.status, reply.read().decode()]))\n")
    out = cluster.ssh("witness", f"python3 -c \"{script}\" '{path}' {method} '{body or '-'}'")
    status, text = json.loads(out)
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def test_consul_variant_applies_and_a_second_run_changes_nothing(consul):
    first, again = consul.consul_run, consul.consul_again
    summary = recap(first.stdout)
    assert set(summary) == set(HOSTS)
    assert all(c["failed"] == 0 and c["unreachable"] == 0 for c in summary.values()), summary
    assert summary["witness"]["changed"] > 5, summary  # the consul role ran there
    assert again.returncode == 0, again.stdout[-8000:]
    assert {host: c["changed"] for host, c in recap(again.stdout).items()} == dict.fromkeys(HOSTS, 0), \
        again.stdout[-8000:]
    for name, value in consul.vault.items():
        assert value not in first.stdout + again.stdout, f"{name} was printed"
    for run in (first, again):
        print("\n" + run.stdout[run.stdout.index("PLAY RECAP"):].strip())


def test_consul_server_runs_with_acls_and_the_lock_settings(consul):
    assert consul.ssh("witness", "systemctl is-active consul redis-server; true").split() == ["active", "active"]
    show = dict(line.split("=", 1) for line in
                consul.ssh("witness", "systemctl show -p Type -p User -p NRestarts consul").split())
    assert show == {"Type": "notify", "User": "consul", "NRestarts": "0"}, show
    version = consul.ssh("witness", "/usr/local/bin/consul version").splitlines()[0]
    assert version == "Consul v1.15.4"
    assert consul.ssh("witness", "cat /etc/systemd/system/consul.service") == \
        (REPO / "deploy/systemd/consul.service").read_text()
    verify = consul.machines["witness"].ssh(consul.key_file, "systemd-analyze verify consul.service")
    assert verify.returncode == 0 and verify.stderr == "", verify.stderr
    exposure = consul.ssh("witness", "systemd-analyze security consul.service | tail -1")
    assert float(re.search(r"consul.service: ([\d.]+)", exposure).group(1)) <= 2.0, exposure
    print(f"\n{exposure.strip()}")
    # The servers' agent token is enough for the agent's own sync (its first try, before the token
    # existed, was refused; it retries within 15 s).
    wait_until(lambda: "agent: Synced node info" in consul.ssh("witness", "journalctl -u consul -o cat --no-pager"),
               30, "the Consul agent syncing its node with its own token")
    listing = consul.ssh("witness", "stat -c '%U %G %a %n' /var/lib/consul /etc/consul.d /etc/consul.d/*.hcl "
                                    "/etc/consul.d/secrets /etc/consul.d/secrets/*").splitlines()
    assert listing == ["consul consul 750 /var/lib/consul", "root consul 750 /etc/consul.d",
                       "root consul 640 /etc/consul.d/consul.hcl", "root consul 640 /etc/consul.d/secrets.hcl",
                       "root root 700 /etc/consul.d/secrets", "root root 600 /etc/consul.d/secrets/management_token"]
    # The settings the lock needs, as the running server reports them.
    status, agent = consul_api(consul, "/v1/agent/self")
    assert status == 200, agent
    debug = agent["DebugConfig"]
    assert debug["ACLsEnabled"] and debug["ACLResolverSettings"]["ACLDefaultPolicy"] == "deny"
    assert debug["SessionTTLMin"] == "100ms"
    assert debug["ConsulRaftElectionTimeout"] == "1s"  # raft_multiplier 1 (5 s with the default 5)
    assert debug["DisableUpdateCheck"] and debug["SerfPortWAN"] == -1
    assert debug["Bootstrap"]  # bootstrap_expect 1: the one server
    status, keyring = consul_api(consul, "/v1/operator/keyring")  # gossip encrypted with the vault's key
    assert [list(pool["Keys"]) for pool in keyring] == [[consul.vault["vault_understudy_consul_gossip_key"]]]
    # The policy is the shipped file, and the nodes' token carries it alone.
    status, policy = consul_api(consul, "/v1/acl/policy/name/understudy-lock")
    assert policy["Rules"] == (ANSIBLE_DIR / "roles/consul/files/understudy-lock-policy.hcl").read_text().rstrip()
    status, tokens = consul_api(consul, "/v1/acl/tokens?policy=" + policy["ID"])
    assert [[p["Name"] for p in t["Policies"]] for t in tokens] == [["understudy-lock"]], tokens


def test_consul_node_configs_and_token_file(consul):
    for node in NODES:
        config = tomllib.loads(consul.ssh(node, "cat /etc/understudy/node.toml"))
        assert config["lock"] == {"backend": "consul", "ttl_s": 0.5, "drift": 0.01, "margin_s": 0.05,
                                  "consul": {"urls": [f"http://{HOSTS['witness']}:8500"],
                                             "token": {"file": "/etc/understudy/secrets/consul_token"},
                                             "key_prefix": "understudy"}}
        assert consul.ssh(node, "stat -c '%U %G %a' /etc/understudy/secrets/consul_token").split() == \
            ["understudy", "understudy", "600"]
        assert consul.ssh(node, "cat /etc/understudy/secrets/consul_token").strip() == \
            consul.vault["vault_understudy_consul_lock_token"]
        assert "ok (node" in consul.ssh(node, "understudy config check /etc/understudy/node.toml")


def test_consul_pair_has_one_primary_holding_the_consul_lock(consul):
    pair = wait_until(lambda: healthy_pair(consul), 60, "one primary and one ready standby on Consul")
    primary = next(node for node, role in pair.items() if role == "primary")
    for node in NODES:
        assert consul.ssh(node, "systemctl is-active understudy-node").strip() == "active"
    status = consul.ssh("sg-1", "understudy status --config /etc/understudy/node.toml")
    epoch = re.search(rf"^{primary}\s+primary\s+(\d+)", status, re.M)
    assert epoch, status
    # Consul's own view: the lock key held by a session of the primary's, on its own catalog node.
    code, entries = consul_api(consul, "/v1/kv/understudy/lock")
    assert code == 200 and entries[0]["Session"], entries
    assert base64.b64decode(entries[0]["Value"]).decode() == f"{primary}|{epoch.group(1)}"
    code, session = consul_api(consul, f"/v1/session/info/{entries[0]['Session']}")
    assert (session[0]["Node"], session[0]["TTL"], session[0]["LockDelay"]) == (f"understudy-{primary}", "500ms", 0)
    # Prometheus on the witness sees it too.
    wait_until(lambda: prometheus_query(consul, 'sum(understudy_lock_held{job="understudy"}) == 1'), 30,
               "Prometheus seeing one lock holder")


CONSUL_PROBE = """
import json, sys, urllib.request, urllib.error
url, token = sys.argv[1], sys.argv[2]
def status(path, token=None, method="GET", body=None):
    request = urllib.request.Request(url + path, method=method, data=body,
                                     headers={"X-Consul-Token": token} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=3) as reply:
            return reply.status, json.loads(reply.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, None
tree = json.dumps([{"KV": {"Verb": "get-tree", "Key": "understudy/"}}]).encode()
anonymous_tree = status("/v1/txn", None, "PUT", tree)
print(status("/v1/kv/understudy/lock")[0], status("/v1/kv/understudy/epoch")[0],
      len(anonymous_tree[1]["Results"] or []) if anonymous_tree[0] == 200 else anonymous_tree[0],
      status("/v1/kv/understudy/lock", token)[0], len(status("/v1/txn", token, "PUT", tree)[1]["Results"]),
      status("/v1/kv/elsewhere/key", token, "PUT", b"x")[0], status("/v1/acl/tokens", token)[0],
      status("/v1/catalog/register", token, "PUT", json.dumps({"Node": "intruder", "Address": "x"}).encode())[0])
"""


def test_consul_refuses_the_anonymous_token_and_confines_the_lock_token(consul):
    probe = consul.in_netns("sg-1", str(REPO / ".venv/bin/python"), "-c", CONSUL_PROBE,
                            f"http://{HOSTS['witness']}:8500", consul.vault["vault_understudy_consul_lock_token"])
    anon_lock, anon_epoch, anon_tree, lock, tree, elsewhere, tokens, register = probe.stdout.split()
    # Anonymous: refused the lock's keys, and a transaction reading the whole prefix sees none of them.
    assert (anon_lock, anon_epoch, anon_tree) == ("403", "403", "0"), probe.stdout
    # The nodes' token: the lock's keys, nothing outside them, no ACLs, no other catalog node.
    assert (lock, elsewhere, tokens, register) == ("200", "403", "403", "403"), probe.stdout
    assert int(tree) >= 2, probe.stdout  # lock and epoch at least


def test_consul_firewall_opens_the_api_to_the_nodes_only(consul):
    w = HOSTS["witness"]
    assert probe_ports(consul, "controller", f"{w}:22", f"{w}:8500", f"{w}:8300", f"{w}:8301") == \
        ["open", "filtered", "filtered", "filtered"]
    # The nodes reach Consul's API, not its RPC or gossip, and no longer Redis.
    assert probe_ports(consul, "sg-1", f"{w}:8500", f"{w}:8300", f"{w}:8301", f"{w}:6379") == \
        ["open", "filtered", "filtered", "filtered"]
