"""Binance-style fixed-window limits: request weight per IP per minute and
new orders per account per 10 s."""
from dataclasses import dataclass, field


@dataclass(slots=True)
class FixedWindow:
    limit: int
    window_ms: int
    _window: int = -1
    _counts: dict = field(default_factory=dict)

    def add(self, key: str, amount: int, now_ms: int) -> tuple[int, int]:
        """Counts `amount` for `key`; returns (used in this window, ms until it resets)."""
        window = now_ms // self.window_ms
        if window != self._window:
            self._window, self._counts = window, {}
        used = self._counts.get(key, 0) + amount
        self._counts[key] = used
        return used, (window + 1) * self.window_ms - now_ms

    def used(self, key: str, now_ms: int) -> int:
        return self._counts.get(key, 0) if now_ms // self.window_ms == self._window else 0
