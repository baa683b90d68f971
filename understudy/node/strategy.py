"""Two-sided quotes around mid with inventory skew. Sans-I/O and stateless:
the same inputs give the same quotes on the primary and on the standby."""
import msgspec

from ..config import StrategySection
from .instrument import Instrument


class Quote(msgspec.Struct, frozen=True):
    side: str  # BUY or SELL
    level: int
    price_ticks: int
    qty_steps: int


def desired_quotes(mid: float, position: float, max_position: float, cfg: StrategySection,
                   instrument: Instrument) -> list[Quote]:
    """Long inventory shifts both quotes down (sell sooner, buy later); a side
    whose fill would take the position past the limit is not quoted."""
    lean = max(-1.0, min(1.0, position / max_position))
    skew_bps = -cfg.inventory_skew_bps * lean
    steps = instrument.qty_steps(cfg.order_qty)
    qty = steps * instrument.step_size
    quotes = []
    for level in range(cfg.levels):
        offset_bps = cfg.half_spread_bps + level * cfg.level_gap_bps
        if position + qty * (level + 1) <= max_position + 1e-12:
            bid = mid * (1 + (skew_bps - offset_bps) / 1e4)
            quotes.append(Quote("BUY", level, instrument.price_ticks(bid, "BUY"), steps))
        if position - qty * (level + 1) >= -max_position - 1e-12:
            ask = mid * (1 + (skew_bps + offset_bps) / 1e4)
            quotes.append(Quote("SELL", level, instrument.price_ticks(ask, "SELL"), steps))
    return quotes


def stale_quotes(working: dict[tuple[str, int], Quote], desired: list[Quote], tolerance_ticks: int):
    """(keys of working quotes to cancel, desired quotes to place). A working
    quote stays while it is within the tolerance of where it should be."""
    wanted = {(q.side, q.level): q for q in desired}
    cancel, place = [], []
    for key, quote in working.items():
        target = wanted.get(key)
        if target is None or abs(target.price_ticks - quote.price_ticks) > tolerance_ticks \
                or target.qty_steps != quote.qty_steps:
            cancel.append(key)
    for key, quote in wanted.items():
        if key not in working or key in cancel:
            place.append(quote)
    return cancel, place
