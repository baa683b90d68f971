"""What a node keeps across restarts, in one small JSON file written
atomically: the day's PnL reference and the PanicStop latch (an operator who
pulled PanicStop wants it to stay pulled through a restart)."""
import json
import os
from pathlib import Path

from .account import DayReference


class StateStore:
    def __init__(self, directory: str, node_id: str):
        self.path = Path(directory) / f"{node_id}.state.json"

    def _read(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise RuntimeError(f"cannot read node state {self.path}: {exc}") from exc

    def _write(self, data: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.path)

    def day_reference(self, day: str, base: float, quote: float) -> DayReference:
        """The stored reference for `day`, or a new one from current holdings."""
        data = self._read()
        stored = data.get("day")
        if stored and stored.get("day") == day:
            return DayReference(day, stored["base"], stored["quote"])
        ref = DayReference(day, base, quote)
        self._write({**data, "day": {"day": day, "base": base, "quote": quote}})
        return ref

    def panic(self) -> str | None:
        return self._read().get("panic")

    def set_panic(self, reason: str | None) -> None:
        data = self._read()
        if reason is None:
            data.pop("panic", None)
        else:
            data["panic"] = reason
        self._write(data)
