"""Supervised tasks: no long-lived loop of a node dies silently.

Each task is started with a policy:
- `RESTART`: an unexpected exception is logged with its traceback, counted,
  and the loop is started again after a backoff that doubles up to a
  ceiling. Only for loops that hold no promise while down (a stats writer,
  a reconcile timer, a pause-flag poll) or whose absence the role machine
  notices by itself. Too many failures within `window_s` escalate to fatal.
- `FATAL`: the first unexpected exception is fatal at once.

Fatal means: `on_fatal(reason)` is called — the node's handler ends its
lease and stops trading at once (it does not wait for anything) and then
makes the process exit non-zero, so systemd restarts it. A node never keeps
announcing a role whose machinery is dead.

A task that returns normally, or is cancelled, is not a failure.
"""
import asyncio
import time
from collections import Counter, deque
from dataclasses import dataclass
from enum import Enum
from typing import Awaitable, Callable

from . import logs

log = logs.get("supervisor")


class Policy(Enum):
    RESTART = "restart"
    FATAL = "fatal"


@dataclass(frozen=True)
class Limits:
    backoff_s: float = 0.1
    max_backoff_s: float = 5.0
    max_failures: int = 5  # within window_s; one more is fatal
    window_s: float = 60.0


class Supervisor:
    def __init__(self, on_fatal: Callable[[str], None], limits: Limits = Limits(),
                 clock: Callable[[], float] = time.monotonic):
        self.on_fatal = on_fatal
        self.limits = limits
        self.clock = clock
        self.failures: Counter = Counter()  # by task name, for /metrics
        self.fatal_reason: str | None = None
        self._recent: dict[str, deque[float]] = {}
        self._tasks: set[asyncio.Task] = set()

    def spawn(self, name: str, run: Callable[[], Awaitable], policy: Policy) -> asyncio.Task:
        """Starts `run()` under `policy`. `run` is a factory: a restart calls it again."""
        if not callable(run):
            raise TypeError(f"{name}: supervise a function that makes the coroutine, not a coroutine")
        task = asyncio.get_running_loop().create_task(self._supervise(name, run, policy), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _supervise(self, name: str, run: Callable[[], Awaitable], policy: Policy) -> None:
        backoff = self.limits.backoff_s
        while True:
            try:
                await run()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the point of a supervisor
                self.failures[name] += 1
                log.exception("supervised task failed", task=name, error=repr(exc), policy=policy.value)
                if policy is Policy.FATAL or self._too_many(name):
                    self.fail(f"task {name} failed: {type(exc).__name__}: {exc}")
                    return
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.limits.max_backoff_s)
            log.warning("restarting supervised task", task=name)

    def _too_many(self, name: str) -> bool:
        now = self.clock()
        recent = self._recent.setdefault(name, deque())
        recent.append(now)
        while recent and recent[0] < now - self.limits.window_s:
            recent.popleft()
        return len(recent) > self.limits.max_failures

    def fail(self, reason: str) -> None:
        """Escalates: once only, whoever calls it first."""
        if self.fatal_reason is not None:
            return
        self.fatal_reason = reason
        log.critical("fatal: the node fences itself and exits", reason=reason)
        self.on_fatal(reason)

    def cancel_all(self) -> list[asyncio.Task]:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        return tasks
