"""Timing security of SIGNED requests, exactly as Binance documents it.

Source: Binance Spot API docs (github.com/binance/binance-spot-api-docs),
rest-api.md and web-socket-api.md, "Timing security":

* "`SIGNED` requests also require a `timestamp` parameter which should be the
  current timestamp either in milliseconds or microseconds."
* "`recvWindow` ... may only be specified in milliseconds. `recvWindow`
  supports up to three decimal places of precision (e.g., 6000.346) so that
  microseconds may be specified. If `recvWindow` is not sent, it defaults to
  5000 milliseconds. Maximum `recvWindow` is 60000 milliseconds."
* The processing logic::

      serverTime = getCurrentTime()
      if (timestamp < (serverTime + 1 second) && (serverTime - timestamp) <= recvWindow) {
        // begin processing request
        serverTime = getCurrentTime()
        if (serverTime - timestamp) <= recvWindow {
          // forward request to Matching Engine
        } else {
          // reject request
        }
      } else {
        // reject request
      }

  CHANGELOG 2025-05-22 (live 2025-06-06) describes the second check: "Just
  before a request is forwarded to the Matching Engine, if the difference
  between `timestamp` and the current `serverTime` is greater than
  `recvWindow`, the request is rejected. Rejection by this check increments
  ... Unfilled Order Count"; CHANGELOG 2025-08-12 moved it to "after your
  message leaves our message broker, just before it is sent to the Matching
  Engine" and enabled the three decimal places.

Every comparison here is in microseconds: a millisecond timestamp names the
instant at the start of its millisecond, and `timestamp + recvWindow` is the
request's deadline to the microsecond (the node uses it as its lease fence).
"""
import re

from . import errors

# How a timestamp's unit is told apart (the docs say both are accepted, not how):
# CHANGELOG 2024-12-09 rejects a `timestamp` "before 2017-01-01 (less than
# 1483228800000)" or "more than 10 seconds after the current time", so every
# valid millisecond timestamp is below 2017-01-01 in microseconds and every
# valid microsecond timestamp is at or above it. The ranges cannot overlap.
MICROSECONDS_FROM = 1_483_228_800_000_000

DEFAULT_RECV_WINDOW_US = 5_000_000
MAX_RECV_WINDOW_US = 60_000_000
AHEAD_TOLERANCE_US = 1_000_000  # "timestamp < (serverTime + 1 second)"

_RECV_WINDOW = re.compile(r"([0-9]{1,12})(?:\.([0-9]+))?")  # DECIMAL, milliseconds


def _text(value) -> str:
    """A parameter as text: REST sends text; the WebSocket API sends JSON numbers too."""
    if isinstance(value, bool):
        return repr(value)  # never a number, though `True == 1` in Python
    return value if isinstance(value, str) else str(value)


def timestamp_us(value) -> int:
    """`timestamp` (milliseconds or microseconds) in microseconds. Raises -1100 on junk."""
    text = _text(value)
    # isdigit() alone takes other scripts' digits, which int() would read.
    if not (text.isascii() and text.isdigit() and len(text) <= 20):
        raise errors.bad_param("timestamp")
    number = int(text)
    return number if number >= MICROSECONDS_FROM else number * 1000


def recv_window_us(value) -> int:
    """`recvWindow` (milliseconds, up to three decimals) in microseconds.

    None means not sent: the documented default of 5000 ms. Junk is -1100, a
    fourth decimal -1111 (BAD_PRECISION), more than 60000 ms -1131."""
    if value is None:
        return DEFAULT_RECV_WINDOW_US
    text = _text(value)
    if text.isascii() and text.isdigit() and len(text) <= 12:  # whole milliseconds, the common case
        window = int(text) * 1000
        if window > MAX_RECV_WINDOW_US:
            raise errors.recv_window_too_large()
        return window
    match = _RECV_WINDOW.fullmatch(text)
    if not match:
        raise errors.bad_param("recvWindow")
    whole, fraction = match.groups()
    fraction = fraction or ""
    if len(fraction) > 3:
        raise errors.too_much_precision("recvWindow")
    window = int(whole) * 1000 + int(fraction.ljust(3, "0"))
    if window > MAX_RECV_WINDOW_US:
        raise errors.recv_window_too_large()
    return window


def check_at_receipt(timestamp: int, recv_window: int, now: int) -> None:
    """The check when the request arrives (all arguments in microseconds)."""
    if timestamp >= now + AHEAD_TOLERANCE_US:
        raise errors.ahead_of_server()
    if now - timestamp > recv_window:
        raise errors.outside_recv_window()


def check_before_matching(deadline: int, now: int) -> None:
    """The check again just before the matching engine: `deadline` is timestamp + recvWindow."""
    if now > deadline:
        raise errors.outside_recv_window()


def audit_fields(params: dict) -> dict:
    """What the audit log keeps of a request's timing parameters, read leniently: a
    request rejected for its signature still tells when its sender signed it."""
    out = {}
    raw_ts = params.get("timestamp")
    if raw_ts is not None:
        try:
            ts = timestamp_us(raw_ts)
        except errors.VenueError:
            pass
        else:
            # client_ts_ms as before (whole milliseconds, what checkers read); client_ts_us exact.
            out["client_ts_ms"], out["client_ts_us"] = ts // 1000, ts
    raw_window = params.get("recvWindow")
    if raw_window in (None, ""):
        out["recv_window_ms"] = DEFAULT_RECV_WINDOW_US / 1000
    elif _RECV_WINDOW.fullmatch(_text(raw_window)):
        out["recv_window_ms"] = float(_text(raw_window))  # the value as sent, decimals and all
    return out
