"""The `ops stats` log line: what this node did since the previous line
(counts and latency histograms, as deltas) and where it stands now
(balances, PnL, mid). One line a minute, one at every role change (so a
line belongs to one role) and one at shutdown.

`understudy report daily` is built from these lines, the role and takeover
lines and the lock history: a day's figures come from what the nodes wrote,
survive restarts (deltas add up; nothing to reset) and need no Prometheus.
A SIGKILLed node loses only its unwritten minute.
"""
import asyncio
import time

from .. import logs
from .histogram import Snapshot

log = logs.get("stats")
STATS_INTERVAL_S = 60.0
TICK_S = 1.0  # how finely time spent quoting is measured


def _minus(now: dict, before: dict) -> dict:
    """Delta of nested dicts of counts; zero deltas are left out."""
    out = {}
    for key, value in now.items():
        previous = before.get(key)
        delta = _minus(value, previous or {}) if isinstance(value, dict) else round(value - (previous or 0), 9)
        if delta:
            out[key] = delta
    return out


class StatsLog:
    def __init__(self, engine):
        self.engine = engine
        self._counts: dict = {}
        self._histograms: dict[str, Snapshot] = {}
        self._interval_started = time.monotonic()
        self._quoting_s = 0.0
        self._marked = time.monotonic()

    def _mark(self) -> None:
        """Adds the time since the last mark to the quoting total, if quoting."""
        now = time.monotonic()
        if self.engine.quoting:
            self._quoting_s += now - self._marked
        self._marked = now

    def _current_counts(self) -> dict:
        e = self.engine
        return {
            "orders_sent": e.gate.sent if e.gate else 0,
            "outcomes": dict(e.oms.outcomes),
            "gate_refusals": dict(e.gate.refusals) if e.gate else {},
            "venue_errors": {str(k): v for k, v in e.rest.errors_by_code.items()} if e.rest else {},
            "fills": e.fills,
            "bought": e.filled_qty["BUY"],
            "sold": e.filled_qty["SELL"],
            "cancel_errors": e.cancel_errors,
            "orphans_cancelled": e.orphans_cancelled,
            "market_reconnects": e.marketdata.reconnects if e.marketdata else 0,
            "user_reconnects": e.userstream.reconnects if e.userstream else 0,
            "book_resyncs": e.book.resyncs,
        }

    def _current_histograms(self) -> dict[str, Snapshot]:
        e = self.engine
        found = {"order_ack_s": e.oms.ack_latency.snapshot(), "cancel_s": e.oms.cancel_latency.snapshot()}
        if e.marketdata is not None:
            found["depth_lag_s"] = e.marketdata.lag.snapshot()
        return found

    def _account(self) -> dict:
        e = self.engine
        if e.account is None or e.instrument is None:
            return {}
        base, quote = e.instrument.base, e.instrument.quote
        account = {"base_asset": base, "base": e.account.total(base), "quote_asset": quote,
                   "quote": e.account.total(quote), "position": e.account.position, "daily_pnl": e.daily_pnl(),
                   "mid": e.book.mid() if e.book.is_live() else None}
        if e.day is not None:
            account.update(day=e.day.day, day_base=e.day.base, day_quote=e.day.quote)
        return account

    def cut(self, reason: str, role: str | None = None) -> None:
        """Writes the line for the interval ending now; `role` is the role the
        interval belonged to (at a role change, the one being left)."""
        try:
            self._mark()
            counts = self._current_counts()
            histograms = self._current_histograms()
            now = time.monotonic()
            deltas = {name: snap.minus(self._histograms.get(name, Snapshot.empty(snap.bounds)))
                      for name, snap in histograms.items()}
            line = {
                "cut": reason, "of_role": role or self.engine.role,
                "interval_s": round(now - self._interval_started, 3),
                "quoting_s": round(self._quoting_s, 3),
                "counts": _minus(counts, self._counts),
                "latency": {name: delta.to_json() for name, delta in deltas.items() if delta.count},
                "account": self._account(),
            }
            self._counts, self._histograms = counts, histograms
            self._interval_started, self._quoting_s = now, 0.0
            log.info("ops stats", **line)
        except Exception as exc:  # noqa: BLE001 - reporting must never take the engine down
            log.warning("ops stats line failed", error=repr(exc))

    async def run(self, stop: asyncio.Event) -> None:
        next_cut = time.monotonic() + STATS_INTERVAL_S
        while not stop.is_set():
            await asyncio.sleep(TICK_S)
            self._mark()
            if time.monotonic() >= next_cut:
                self.cut("interval")
                next_cut += STATS_INTERVAL_S
