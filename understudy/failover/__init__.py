"""Hot standby: heartbeats, the role state machine, takeover, switchover and pause."""
