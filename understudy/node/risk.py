"""Pre-trade risk: every order intent is checked against the limits at the
moment it would be sent. Sans-I/O; the primary and the standby run the same
checks on the same state."""
import msgspec

from ..config import RiskSection


class RiskView(msgspec.Struct, frozen=True):
    """What the checks need to know, read from the engine at send time
    (a msgspec Struct: built on every order, it must be cheap to build)."""

    mid: float | None
    book_age_s: float
    position: float  # base held minus the inventory target
    open_orders: int
    open_buy_qty: float
    open_sell_qty: float
    daily_pnl: float
    panic: bool


class OrderIntent(msgspec.Struct, frozen=True):
    side: str
    price: float
    qty: float


CHECKS = ("panic-stop", "stale-book", "daily-loss-limit", "max-order-notional", "max-open-orders", "price-band",
          "max-position")  # every name check() can return; exported per name, zeros included


def check(limits: RiskSection, view: RiskView, intent: OrderIntent) -> str | None:
    """None when the order may go; otherwise the name of the limit it breaks."""
    if view.panic:
        return "panic-stop"
    if view.mid is None or view.book_age_s > limits.max_book_age_s:
        return "stale-book"
    if view.daily_pnl <= -limits.daily_loss_limit:
        return "daily-loss-limit"
    if intent.price * intent.qty > limits.max_order_notional:
        return "max-order-notional"
    if view.open_orders + 1 > limits.max_open_orders:
        return "max-open-orders"
    if abs(intent.price - view.mid) / view.mid * 1e4 > limits.price_band_bps:
        return "price-band"
    # Worst case: every open order on this side fills, and this one too.
    if intent.side == "BUY" and view.position + view.open_buy_qty + intent.qty > limits.max_position + 1e-12:
        return "max-position"
    if intent.side == "SELL" and view.position - view.open_sell_qty - intent.qty < -limits.max_position - 1e-12:
        return "max-position"
    return None


def state_problems(limits: RiskSection, view: RiskView) -> list[str]:
    """Checks on the state itself, run before quoting starts and continuously."""
    problems = []
    if view.panic:
        problems.append("panic-stop")
    if view.mid is None or view.book_age_s > limits.max_book_age_s:
        problems.append("stale-book")
    if abs(view.position) > limits.max_position + 1e-12:
        problems.append("max-position")
    if view.daily_pnl <= -limits.daily_loss_limit:
        problems.append("daily-loss-limit")
    return problems
