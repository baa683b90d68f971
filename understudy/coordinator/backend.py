"""The backend-independent trading-lock API.

A backend answers three ways: yes, no ("lost the race", "not the owner"),
or `BackendUnavailable` — no answer before the deadline. The last is not a
no: a holder that cannot reach the backend keeps its lease until the safe
deadline and not a moment longer. Every call takes an absolute deadline on
the monotonic clock, never a retry count.
"""
import abc
import asyncio
import time
from dataclasses import dataclass, field


class BackendUnavailable(Exception):
    """No answer from the lock backend before the deadline."""


class BackendNonsense(Exception):
    """The backend answered, but with something that is not an answer to the
    question (a reply that does not decode, a protocol error, a value of the
    wrong type). Unlike silence this is definite: nothing it says can be
    trusted, so a holder gives its lease up at once rather than ride it out."""


class BackendMisconfigured(Exception):
    """The backend works but is set up so that the lock cannot keep its
    promises (a Consul server whose session_ttl_min is above the lock's TTL,
    say): a node refuses to start rather than trade on it."""


# Calls abandoned at their deadline whose coroutine had not finished yet (a
# cancellation swallowed below us, say): kept referenced so they are not
# garbage-collected mid-flight, and counted for /metrics.
_abandoned: set[asyncio.Task] = set()
abandoned_calls = 0


def _abandon(task: asyncio.Task) -> None:
    global abandoned_calls
    task.cancel()
    if task.done():
        if not task.cancelled():
            task.exception()
        return
    abandoned_calls += 1
    _abandoned.add(task)

    def forget(t: asyncio.Task) -> None:
        _abandoned.discard(t)
        if not t.cancelled():
            t.exception()  # retrieved: an abandoned call's failure is no news

    task.add_done_callback(forget)


@dataclass(frozen=True, slots=True)
class LockState:
    holder: str | None
    epoch: int | None
    ttl_left_s: float | None
    handover_to: str | None
    last_epoch: int  # the highest epoch the backend has handed out


@dataclass(frozen=True, slots=True)
class Pause:
    paused: bool
    by: str = ""
    reason: str = ""
    since: float = 0.0  # wall clock


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One change of the lock: who had it, who has it, why, and how long the steps took."""

    epoch: int | None
    from_node: str | None
    to_node: str | None
    reason: str
    at: float  # wall clock
    timings: dict = field(default_factory=dict)


async def bounded(awaitable, deadline: float, what: str):
    """Runs `awaitable` until the monotonic `deadline`; past it, or on a
    connection failure, raises BackendUnavailable.

    The caller gets control back at the deadline whatever the call does: it
    runs as its own task, and one that does not finish in time is cancelled
    and abandoned, not awaited. Neither `wait_for` nor `asyncio.timeout` can
    promise that, because both wait for the inner call to honour the
    cancellation, and on Python 3.11 a library's own `wait_for` (redis-py's,
    with a socket timeout) can swallow it and carry on.
    """
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        if hasattr(awaitable, "close"):
            awaitable.close()
        raise BackendUnavailable(f"{what}: deadline already passed")
    task = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait({task}, timeout=remaining)
    except BaseException:
        _abandon(task)  # our caller was cancelled: the call goes too, and we do not wait for it
        raise
    if not done:
        _abandon(task)
        raise BackendUnavailable(f"{what}: no answer within {remaining * 1000:.0f} ms")
    try:
        return task.result()
    except (TimeoutError, asyncio.TimeoutError):
        raise BackendUnavailable(f"{what}: the client timed out") from None
    except asyncio.CancelledError:
        # Cancelled from below (a client library tearing its connection down), not by our caller.
        raise BackendUnavailable(f"{what}: the call was cancelled under us") from None
    except (OSError, ConnectionError) as exc:
        raise BackendUnavailable(f"{what}: {type(exc).__name__}: {exc}") from exc


def next_epoch(stored: int, now_ms: int, floor: int) -> int:
    """Epochs come from a hybrid clock: one more than the last, but never
    less than the backend's clock in milliseconds, nor than anything the
    caller has already seen. A backend that lost its data therefore still
    hands out an epoch above every one it gave before (each of those was at
    most its grant time plus the few grants within one millisecond, and a
    restart takes longer than that)."""
    return max(stored + 1, now_ms, floor + 1)


class LockBackend(abc.ABC):
    """What the trading lock needs from Redis or Consul."""

    server_failovers = 0  # calls that moved on to another server of the backend (Consul's servers)

    def frees_within_s(self, ttl_s: float) -> float:
        """At most how long after a silent holder's last renewal the backend frees its key."""
        return ttl_s

    async def check(self, ttl_s: float, deadline: float) -> None:
        """Raises BackendMisconfigured when the backend cannot hold a lock of `ttl_s` as promised."""
        return None

    @abc.abstractmethod
    async def try_acquire(self, node: str, ttl_s: float, epoch_floor: int, deadline: float) -> int | None:
        """One attempt. The new epoch, or None when held or handed to another node."""

    @abc.abstractmethod
    async def renew(self, node: str, epoch: int, ttl_s: float, deadline: float) -> bool:
        """Extends the lock if it is still ours at this epoch."""

    @abc.abstractmethod
    async def restore(self, node: str, epoch: int, ttl_s: float, deadline: float) -> bool:
        """Takes the lock back at the same epoch when it lapsed while nobody
        acquired it since (the last epoch handed out is still `epoch`): the
        holder that rode a backend outage on the peer lease keeps its epoch
        and its orders. False when anyone else acquired it meanwhile, or the
        backend lost its data."""

    @abc.abstractmethod
    async def release(self, node: str, epoch: int, deadline: float) -> bool:
        """Frees the lock if it is still ours at this epoch."""

    @abc.abstractmethod
    async def release_to(self, node: str, epoch: int, target: str, marker_ttl_s: float, deadline: float) -> bool:
        """Frees the lock with a hand-over marker: until it expires, only `target` may acquire."""

    @abc.abstractmethod
    async def inspect(self, deadline: float) -> LockState:
        """Holder, epoch and time left, as the backend sees them."""

    @abc.abstractmethod
    async def wait_until_free(self, timeout_s: float, deadline: float) -> None:
        """Returns when the lock may have become free, or after `timeout_s`."""

    @abc.abstractmethod
    async def get_pause(self, deadline: float) -> Pause:
        ...

    @abc.abstractmethod
    async def set_pause(self, pause: Pause, deadline: float) -> None:
        ...

    @abc.abstractmethod
    async def append_history(self, entry: HistoryEntry, keep: int, deadline: float) -> None:
        ...

    @abc.abstractmethod
    async def read_history(self, limit: int, deadline: float) -> list[HistoryEntry]:
        """Newest first."""

    async def close(self) -> None:
        return None
