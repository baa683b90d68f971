"""Chaos drills: fault injectors, scenarios and the invariant checker over the venue's audit log."""
