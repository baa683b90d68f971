"""A deliberately broken node, for the drill checker's negative control: it
runs `understudy node run` with the lease gate disabled — the lease answers
"may trade" whatever its deadline, the recvWindow fence is cut loose from the
lease (every order carries the longest window the config allows, as if the
lease had an hour left), and the trading lock never reports it lost, so the
node never fences itself.

This lives under tests/ on purpose: nothing in the shipped package can
switch the gate off. The drill starts it in place of the real node:

    python -m tests.drill_broken_node --config FILE
"""
import sys

from understudy.coordinator.lease import Lease
from understudy.coordinator.trading_lock import TradingLock
from understudy.node.venue_clock import VenueClock

AN_HOUR_S = 3600.0


def disable_the_lease_gate() -> None:
    # Fail loudly if the names moved: a negative control that silently broke nothing would prove nothing.
    for owner, name in ((Lease, "may_trade"), (TradingLock, "_lose"), (VenueClock, "fence")):
        if not callable(getattr(owner, name, None)):
            raise SystemExit(f"drill_broken_node: {owner.__name__}.{name} is gone; update the negative control")
    Lease.may_trade = lambda self, now: True
    TradingLock._lose = lambda self, reason: None
    fence = VenueClock.fence
    # Only the gate's use of the lease: heartbeats and metrics still report the real time left.
    VenueClock.fence = lambda self, now, lease_left_s, cap_ms: fence(self, now, AN_HOUR_S, cap_ms)


if __name__ == "__main__":
    disable_the_lease_gate()
    from understudy.cli import main

    sys.exit(main(["node", "run", *sys.argv[1:]]))
