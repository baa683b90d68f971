#!/usr/bin/python3
"""Ansible module: a Consul cluster's ACLs for the Understudy trading lock, idempotently, in one call
(one remote execution instead of a task per HTTP request: the witness is the slowest host of a run).

Bootstraps the ACLs with the management token the caller gives (once per cluster: Consul refuses a
second bootstrap), then creates or updates each policy and each token whose SecretID the caller gives
(Consul never changes a token's secret: rotating one is a new token, docs/deploy-consul.md). Looks
first, writes only what differs: a second run changes nothing. Every token is a no_log argument, so
none reaches Ansible's output; the result names what changed, never a secret."""
import json
import time
import urllib.error
import urllib.request

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: consul_acl
short_description: Bootstrap a Consul cluster's ACLs and keep some policies and tokens as given
description:
  - Waits for a leader, bootstraps the ACLs with I(management_token) unless that token already works,
    then creates or updates each policy (name, description, rules) and each token (secret, description,
    one policy) so that Consul has exactly what is given. Only stdlib HTTP; the API on the server itself.
options:
  url:
    description: The Consul HTTP API of one server.
    type: str
    default: http://127.0.0.1:8500
  management_token:
    description: The management token (a UUID); ACLs are bootstrapped with it.
    type: str
    required: true
    no_log: true
  policies:
    description: Policies to create or update, each with C(name), C(description), C(rules).
    type: list
    elements: dict
    default: []
  tokens:
    description: Tokens to create or update, each with C(name) (a label), C(secret) (its SecretID, a UUID),
      C(description) and C(policy) (the one policy it carries).
    type: list
    elements: dict
    default: []
  leader_timeout:
    description: Seconds to wait for the servers to elect a leader, and for the ACL system to answer.
    type: int
    default: 60
author: Understudy
"""

RETURN = r"""
actions:
  description: What was done (or would be, in check mode), e.g. C(created policy understudy-lock).
  type: list
  elements: str
  returned: always
"""


class ConsulError(Exception):
    pass


class Consul:
    def __init__(self, url: str, deadline: float):
        self.url = url.rstrip("/")
        self.deadline = deadline

    def call(self, method: str, path: str, token: str | None, body=None, ok=(200,)) -> tuple[int, object]:
        """(status, decoded JSON); retries 5xx and refused connections until the deadline."""
        while True:
            request = urllib.request.Request(
                self.url + path, method=method, data=None if body is None else json.dumps(body).encode(),
                headers={"X-Consul-Token": token} if token else {})
            try:
                with urllib.request.urlopen(request, timeout=5) as reply:
                    status, raw = reply.status, reply.read()
            except urllib.error.HTTPError as exc:
                status, raw = exc.code, exc.read()
            except OSError as exc:  # not listening yet
                status, raw = 0, str(exc).encode()
            if status in ok:
                try:
                    return status, json.loads(raw or b"null")
                except ValueError:
                    return status, raw.decode(errors="replace")
            if (status == 0 or status >= 500) and time.monotonic() < self.deadline:
                time.sleep(0.5)
                continue
            raise ConsulError(f"{method} {path}: HTTP {status}: {raw[:300].decode(errors='replace')}")


def run(module: AnsibleModule) -> list[str]:
    p = module.params
    consul = Consul(p["url"], time.monotonic() + p["leader_timeout"])
    management = p["management_token"]
    actions: list[str] = []

    while not consul.call("GET", "/v1/status/leader", None)[1]:
        if time.monotonic() >= consul.deadline:
            raise ConsulError(f"no Consul leader within {p['leader_timeout']} s")
        time.sleep(0.5)

    status, _ = consul.call("GET", "/v1/acl/token/self", management, ok=(200, 403))
    if status == 403:
        actions.append("bootstrapped the ACLs")
        if not module.check_mode:
            status, reply = consul.call("PUT", "/v1/acl/bootstrap", None, {"BootstrapSecret": management},
                                        ok=(200, 403))
            if status == 403:
                raise ConsulError("these servers' ACLs were bootstrapped with another management token "
                                  f"({reply}): put that one in the vault, or reset the bootstrap "
                                  "(docs/deploy-consul.md)")

    for policy in p["policies"]:
        status, found = consul.call("GET", f"/v1/acl/policy/name/{policy['name']}", management, ok=(200, 404))
        wanted = {"Name": policy["name"], "Description": policy["description"], "Rules": policy["rules"]}
        if status == 404:
            actions.append(f"created policy {policy['name']}")
            if not module.check_mode:
                consul.call("PUT", "/v1/acl/policy", management, wanted)
        elif (found["Description"], found["Rules"]) != (policy["description"], policy["rules"]):
            actions.append(f"updated policy {policy['name']}")
            if not module.check_mode:
                consul.call("PUT", f"/v1/acl/policy/{found['ID']}", management, wanted)

    for token in p["tokens"]:
        # A token's own secret may read the token: 403 means Consul does not know it.
        status, found = consul.call("GET", "/v1/acl/token/self", token["secret"], ok=(200, 403))
        wanted = {"SecretID": token["secret"], "Description": token["description"],
                  "Policies": [{"Name": token["policy"]}], "Local": False}
        if status == 403:
            actions.append(f"created token {token['name']}")
            if not module.check_mode:
                consul.call("PUT", "/v1/acl/token", management, wanted)
        elif (found["Description"], [x["Name"] for x in found.get("Policies") or []]) != \
                (token["description"], [token["policy"]]):
            actions.append(f"updated token {token['name']}")
            if not module.check_mode:
                consul.call("PUT", f"/v1/acl/token/{found['AccessorID']}", management, wanted)
    return actions


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str", "default": "http://127.0.0.1:8500"},
            "management_token": {"type": "str", "required": True, "no_log": True},
            "policies": {"type": "list", "elements": "dict", "default": [], "options": {
                "name": {"type": "str", "required": True},
                "description": {"type": "str", "required": True},
                "rules": {"type": "str", "required": True}}},
            "tokens": {"type": "list", "elements": "dict", "default": [], "options": {
                "name": {"type": "str", "required": True},
                "secret": {"type": "str", "required": True, "no_log": True},
                "description": {"type": "str", "required": True},
                "policy": {"type": "str", "required": True}}},
            "leader_timeout": {"type": "int", "default": 60},
        },
        supports_check_mode=True,
    )
    try:
        actions = run(module)
    except ConsulError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=bool(actions), actions=actions)


if __name__ == "__main__":
    main()
