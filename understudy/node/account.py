"""Balances, inventory and the day's PnL, fed by outboundAccountPosition
events and reconciled from REST. Sans-I/O."""
from dataclasses import dataclass, field

from .messages import AccountInfo, AccountPosition


@dataclass(slots=True)
class DayReference:
    """Holdings at the start of the UTC day: PnL is measured from here."""

    day: str
    base: float
    quote: float


@dataclass
class AccountState:
    base_asset: str
    quote_asset: str
    inventory_target: float
    free: dict[str, float] = field(default_factory=dict)
    locked: dict[str, float] = field(default_factory=dict)
    synced: bool = False
    last_event_ms: int = 0

    def total(self, asset: str) -> float:
        return self.free.get(asset, 0.0) + self.locked.get(asset, 0.0)

    @property
    def position(self) -> float:
        return self.total(self.base_asset) - self.inventory_target

    def on_account_info(self, info: AccountInfo) -> None:
        self.free = {b.asset: b.free for b in info.balances}
        self.locked = {b.asset: b.locked for b in info.balances}
        self.synced = True

    def on_position(self, event: AccountPosition) -> None:
        if event.E < self.last_event_ms:
            return  # an older update delivered late
        self.last_event_ms = event.E
        for row in event.B:
            self.free[row.a] = row.f
            self.locked[row.a] = row.l

    def pnl(self, day: DayReference, mid: float | None) -> float:
        """Trading PnL since the day began: the quote gained plus the base
        gained valued at mid. The inventory target's own revaluation is not
        the strategy's PnL and is left out."""
        if mid is None:
            return 0.0
        return (self.total(self.quote_asset) - day.quote) + (self.total(self.base_asset) - day.base) * mid
