"""The append-only audit log: one JSON line per order-creating or
order-cancelling request (whatever its outcome), and one per order leaving the
book. Drills prove the single-writer invariants from this file alone."""
import json
import os


class AuditLog:
    def __init__(self, path: str | None):
        self.path = path
        self._fh = open(path, "a", buffering=1, encoding="utf-8") if path else None

    def write(self, record: dict) -> None:
        if self._fh is not None:
            self._fh.write(json.dumps(record, separators=(",", ":")) + "\n")

    def sync(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
