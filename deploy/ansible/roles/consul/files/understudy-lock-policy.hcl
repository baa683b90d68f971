# The trading lock's Consul token (ACL policy "understudy-lock"): the lock's
# own keys, its own catalog nodes and the sessions on them, and a read of the
# agent's settings (the servers' session_ttl_min, checked at start-up).
# Nothing else: no other key, no service, no ACL, no operator call.
key_prefix "understudy/" {
  policy = "write"
}
node_prefix "understudy-" {
  policy = "write"
}
session_prefix "understudy-" {
  policy = "write"
}
agent_prefix "" {
  policy = "read"
}
