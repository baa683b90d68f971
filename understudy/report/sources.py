"""Where the daily report's data comes from: node log files (JSON lines, as
journald or a file keeps them) and the lock history in the lock backend."""
import datetime
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from ..coordinator.backend import HistoryEntry

HISTORY_READ = 1000  # the backend keeps this many lock changes


class ReportInputError(Exception):
    """A log that cannot be read, or a date that is not one."""


@dataclass(frozen=True)
class Window:
    """One UTC day, [start, end)."""

    day: datetime.date

    @property
    def start(self) -> datetime.datetime:
        return datetime.datetime.combine(self.day, datetime.time(), datetime.UTC)

    @property
    def end(self) -> datetime.datetime:
        return self.start + datetime.timedelta(days=1)

    def contains(self, at: datetime.datetime) -> bool:
        return self.start <= at < self.end


def parse_day(text: str, today: datetime.date) -> datetime.date:
    if text == "today":
        return today
    if text == "yesterday":
        return today - datetime.timedelta(days=1)
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise ReportInputError(f"--date: expected YYYY-MM-DD, 'today' or 'yesterday', got {text!r}") from None


def timestamp(record: dict) -> datetime.datetime | None:
    text = record.get("timestamp")
    if not isinstance(text, str):
        return None
    try:
        at = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=datetime.UTC)


def read_logs(paths: Iterable[str], window: Window) -> tuple[list[dict], int]:
    """The node log records of the day, oldest first, and how many lines were
    not node records (other programs' lines in a shared journal, say)."""
    records, skipped = [], 0
    for path in paths:
        for line in _lines(path):
            try:
                record = json.loads(line)
            except ValueError:
                skipped += 1
                continue
            at = timestamp(record) if isinstance(record, dict) else None
            if at is None or "event" not in record or "node" not in record:
                skipped += 1
                continue
            if window.contains(at):
                record["_at"] = at
                records.append(record)
    records.sort(key=lambda r: r["_at"])
    return records, skipped


def _lines(path: str) -> Iterator[str]:
    if path == "-":
        yield from sys.stdin
        return
    try:
        with Path(path).open(encoding="utf-8", errors="replace") as fh:
            yield from fh
    except OSError as exc:
        raise ReportInputError(f"cannot read log {path}: {exc.strerror or exc}") from None


async def read_history(config, secrets, window: Window) -> list[HistoryEntry]:
    """The lock changes of the day from the lock backend, oldest first."""
    from ..coordinator.factory import make_backend

    backend = make_backend(config.lock, secrets)
    try:
        entries = await backend.read_history(HISTORY_READ, time.monotonic() + 3)
    finally:
        await backend.close()
    day = [e for e in entries if window.contains(datetime.datetime.fromtimestamp(e.at, datetime.UTC))]
    return sorted(day, key=lambda e: e.at)
