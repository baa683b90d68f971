"""Holding the trading lock: acquire, keep renewing, and notice the moment
the lease is gone.

The lease (`lease.py`) is the only thing the order gate trusts, and it
expires by itself at its safe deadline: if this loop is starved, wedged or
cut off from the backend, the gate still refuses from the deadline on.
Renewal calls are bounded by that same deadline, so none blocks past it.

Failsafe (DESIGN §2.4): while no renewal has *definitely* failed, the lease
also lasts as long as `failsafe_until()` — a deadline granted by the only
other node that could trade, which has promised not to before it. A backend
that cannot be reached therefore does not stop trading while the peer still
vouches; a backend that answers "not yours" ends the lease at once, and so
does one that answers nonsense (`BackendNonsense`) or makes the renewer
fail in any way nobody foresaw: the loss is then reported through
`on_lost` like any other, so the node fences and says so in its heartbeats
instead of announcing a lease nobody renews.

Nothing here relies on a cancellation being honoured (Python 3.11's
`wait_for` can swallow one): every backend call is bounded by `bounded()`,
which hands control back at the deadline whatever the call does, and
stopping the renewer ends the lease first and waits for the task only
briefly.
"""
import asyncio
import math
import time
from dataclasses import replace
from typing import Callable

from .. import logs
from .backend import BackendNonsense, BackendUnavailable, LockBackend, bounded
from .lease import Lease

log = logs.get("lock")
RENEWER_STOP_WAIT_S = 0.5  # how long release/close wait for the renewer to notice; it is abandoned after


class TradingLock:
    def __init__(self, backend: LockBackend, node: str, ttl_s: float, drift: float = 0.01, margin_s: float = 0.05,
                 renew_every_s: float | None = None, clock: Callable[[], float] = time.monotonic,
                 on_lost: Callable[[str], None] | None = None):
        if ttl_s * (1 - drift) - margin_s <= 0:
            raise ValueError("lock ttl too short for its drift and margin: a lease would be born expired")
        self.backend = backend
        self.node = node
        self.ttl_s = ttl_s
        self.drift = drift
        self.margin_s = margin_s
        self.renew_every_s = renew_every_s if renew_every_s is not None else ttl_s / 4
        self.clock = clock
        self.on_lost = on_lost
        self.failsafe_until: Callable[[], float] = lambda: -math.inf
        self._lease: Lease | None = None
        self.epoch_floor = 0  # the highest epoch this node has seen; never accept one below it
        self.lost_reason: str | None = None
        self.renewals = 0
        self.renew_failures = 0
        self.renew_errors = 0  # renewals that got nonsense or failed unforeseen: each one ended the lease
        self.renewers_abandoned = 0
        self.restores = 0
        self.renew_latency_s: list[float] = []
        self._renewer: asyncio.Task | None = None

    @property
    def lease(self) -> Lease | None:
        """The lock's own lease, stretched to the peer lease while that lasts longer."""
        lease = self._lease
        if lease is None:
            return None
        peer_until = self.failsafe_until()
        return lease if peer_until <= lease.safe_deadline else replace(lease, safe_deadline=peer_until)

    @lease.setter
    def lease(self, lease: Lease | None) -> None:
        self._lease = lease

    def on_failsafe(self, now: float | None = None) -> bool:
        """True while the lock's own lease has run out and only the peer lease keeps this node trading."""
        lease, now = self._lease, self.clock() if now is None else now
        return lease is not None and not lease.may_trade(now) and self.failsafe_until() > now

    def may_trade(self, now: float | None = None) -> bool:
        return self.lease is not None and self.lease.may_trade(self.clock() if now is None else now)

    def observe_epoch(self, epoch: int) -> None:
        self.epoch_floor = max(self.epoch_floor, epoch)

    def _grant(self, epoch: int, sent_at: float, not_before: float = -math.inf) -> Lease:
        return Lease.granted(epoch, sent_at, self.ttl_s, self.drift, self.margin_s, not_before)

    async def try_acquire(self, not_before: float = -math.inf) -> Lease | None:
        """One attempt, bounded by the life the lease would have. The lease
        permits trading from `not_before` on (the peer leases this node granted)."""
        sent_at = self.clock()
        deadline = self._grant(0, sent_at).safe_deadline
        epoch = await bounded(self.backend.try_acquire(self.node, self.ttl_s, self.epoch_floor, deadline),
                              deadline, "acquire")
        if epoch is None:
            return None
        if epoch <= self.epoch_floor:
            # A backend handing out an epoch we have seen is broken; trading on it would defeat fencing.
            log.critical("lock backend returned a stale epoch; refusing it", epoch=epoch, floor=self.epoch_floor)
            await self._quiet_release(epoch)
            return None
        self.observe_epoch(epoch)
        self.lease = self._grant(epoch, sent_at, not_before)
        self.lost_reason = None
        log.info("trading lock acquired", epoch=epoch, lease_s=round(self.lease.time_left(self.clock()), 3),
                 trade_from_s=round(max(0.0, not_before - self.clock()), 3))
        self._renewer = asyncio.get_running_loop().create_task(self._renew_loop(self.lease.epoch))
        return self.lease

    async def acquire(self, timeout_s: float) -> Lease | None:
        """Tries until acquired or `timeout_s` passes, waking as soon as the lock frees."""
        until = self.clock() + timeout_s
        while self.clock() < until:
            try:
                lease = await self.try_acquire()
                if lease is not None:
                    return lease
                await self.backend.wait_until_free(min(1.0, until - self.clock()), until)
            except (BackendUnavailable, BackendNonsense) as exc:
                log.warning("lock backend unavailable while acquiring", error=str(exc))
                await asyncio.sleep(min(0.05, max(0.0, until - self.clock())))
        return None

    async def _renew_loop(self, epoch: int) -> None:
        """Supervises the renewals: whatever goes wrong in them ends this
        epoch's lease and is reported, never a silent death."""
        try:
            await self._renew(epoch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a renewer that cannot go on must end the lease it keeps
            self.renew_errors += 1
            log.exception("lease renewer failed", error=repr(exc), epoch=epoch)
            if self._lease is not None and self._lease.epoch == epoch:
                self._lose(f"renewer failed: {type(exc).__name__}")

    def _holds(self, epoch: int) -> bool:
        return self._lease is not None and self._lease.epoch == epoch

    async def _renew(self, epoch: int) -> None:
        next_at = self.clock() + self.renew_every_s
        while self._holds(epoch):
            await asyncio.sleep(max(0.0, min(next_at, self.lease.safe_deadline) - self.clock()))
            if not self._holds(epoch):
                return
            sent_at = self.clock()
            deadline = self.lease.safe_deadline
            if deadline <= sent_at:
                self._lose("safe deadline passed without a renewal or a peer lease")
                return
            try:
                ok = await bounded(self.backend.renew(self.node, epoch, self.ttl_s, deadline), deadline, "renew")
            except BackendUnavailable as exc:
                self.renew_failures += 1
                log.warning("lease renewal failed", error=str(exc),
                            lease_left_s=round(self.lease.time_left(self.clock()), 3) if self.lease else 0)
                next_at = self.clock() + min(0.05, self.renew_every_s)
                continue
            except BackendNonsense as exc:
                self.renew_errors += 1
                log.error("lock backend answered a renewal with nonsense", error=str(exc), epoch=epoch)
                self._lose(f"lock backend answered nonsense: {exc}")
                return
            if not self._holds(epoch):
                return
            if not ok:
                ok = await self._try_restore(epoch)
                if not self._holds(epoch):
                    return
            if not ok:
                self._lose("renewal found the lock no longer ours")
                return
            self.renewals += 1
            self.renew_latency_s.append(self.clock() - sent_at)
            del self.renew_latency_s[:-1000]
            self.lease = self._grant(epoch, sent_at, self._lease.not_before)
            next_at = sent_at + self.renew_every_s

    async def _try_restore(self, epoch: int) -> bool:
        """The key lapsed (say, through a backend outage this node rode on
        the peer lease): take it back at the same epoch if nobody acquired
        it since. Any doubt is a loss."""
        deadline = self.lease.safe_deadline
        try:
            restored = await bounded(self.backend.restore(self.node, epoch, self.ttl_s, deadline), deadline, "restore")
        except (BackendUnavailable, BackendNonsense) as exc:
            log.warning("lock restore failed", error=str(exc))
            return False
        if restored:
            self.restores += 1
            log.warning("the lock had lapsed with nobody taking it since: restored at the same epoch", epoch=epoch)
        return restored

    def _lose(self, reason: str) -> None:
        lease, self.lease = self.lease, None
        self.lost_reason = reason
        log.warning("trading lock lost", reason=reason, epoch=lease.epoch if lease else None)
        if self.on_lost is not None:
            self.on_lost(reason)

    async def _stop_renewing(self) -> None:
        """The caller has ended the lease already, so a renewer that outlives
        this (its cancellation swallowed) finds nothing to renew and returns;
        it is waited for briefly, then abandoned — never awaited unbounded."""
        task, self._renewer = self._renewer, None
        if task is None or task is asyncio.current_task() or task.done():
            return
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=RENEWER_STOP_WAIT_S)
        if not done:
            self.renewers_abandoned += 1
            log.error("lease renewer ignored its cancellation; abandoned (the lease had already ended)",
                      wait_s=RENEWER_STOP_WAIT_S)

    async def release_epoch(self, epoch: int) -> None:
        """Frees the key of a lease this node already ended locally (a fatal failure), so the peer
        need not wait out the TTL; any failure is quiet: the key expires by itself."""
        await self._stop_renewing()
        await self._quiet_release(epoch)

    async def _quiet_release(self, epoch: int) -> None:
        deadline = self.clock() + self.ttl_s
        try:
            await bounded(self.backend.release(self.node, epoch, deadline), deadline, "release")
        except (BackendUnavailable, BackendNonsense):
            pass

    async def release(self, target: str | None = None, marker_ttl_s: float = 5.0) -> bool:
        """Gives the lock up (to `target` only, when named). The lease ends first:
        this node stops trading before anyone else can start."""
        lease, self.lease = self.lease, None
        await self._stop_renewing()
        if lease is None:
            return False
        deadline = self.clock() + self.ttl_s
        if target is None:
            call = self.backend.release(self.node, lease.epoch, deadline)
        else:
            call = self.backend.release_to(self.node, lease.epoch, target, marker_ttl_s, deadline)
        return await bounded(call, deadline, "release")

    async def close(self) -> None:
        """Ends the lease (if still held) and stops renewing; never hangs."""
        self.lease = None
        await self._stop_renewing()
