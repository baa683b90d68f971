"""Fixed-point amounts: every price, quantity and balance is an int of 1e-8.

Binance quotes everything with 8 decimals; integers keep the matching engine
exact and make price levels usable as dict keys.
"""
from decimal import Decimal, InvalidOperation

SCALE = 10**8


def parse_amount(text: str) -> int:
    """'0.1' -> 10_000_000. Raises ValueError on junk or more than 8 decimals."""
    try:
        value = Decimal(text)
    except (InvalidOperation, TypeError):
        raise ValueError(f"not a number: {text!r}") from None
    if not value.is_finite():
        raise ValueError(f"not a finite number: {text!r}")
    scaled = value * SCALE
    if scaled != scaled.to_integral_value():
        raise ValueError(f"too much precision: {text!r}")
    return int(scaled)


def format_amount(units: int) -> str:
    sign = "-" if units < 0 else ""
    units = abs(units)
    return f"{sign}{units // SCALE}.{units % SCALE:08d}"


def notional(price: int, qty: int) -> int:
    """Quote amount of qty at price, floored to 1e-8."""
    return price * qty // SCALE
