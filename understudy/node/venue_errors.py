"""Venue failures as types, so callers decide by kind, not by parsing text.

`OutcomeUnknown` is the dangerous one: the request may or may not have
reached the matching engine. An order send that ends in it is resolved by
querying the order by its client id, never by sending it again.
"""


class VenueError(Exception):
    def __init__(self, code: int, msg: str, http_status: int = 0):
        super().__init__(f"venue error {code} (HTTP {http_status}): {msg}")
        self.code = code
        self.msg = msg
        self.http_status = http_status


class RateLimited(VenueError):
    def __init__(self, code: int, msg: str, http_status: int, retry_after_s: float):
        super().__init__(code, msg, http_status)
        self.retry_after_s = retry_after_s


class AuthRejected(VenueError):
    """-2014/-2015/-1022: the key, its permissions or the signature."""


class TimestampRejected(VenueError):
    """-1021: our clock or the recvWindow."""


class FilterFailure(VenueError):
    """-1013: price, size or notional outside the symbol's filters."""


class OrderRejected(VenueError):
    """-2010: insufficient balance, would take as LIMIT_MAKER, duplicate id..."""


class UnknownOrder(VenueError):
    """-2011 "Unknown order sent." on cancel, -2013 on query: the venue has no such (open) order."""


class CancelRejected(VenueError):
    """-2011 with any other message (errors.md lists several: cancel restrictions, an account
    that may not cancel...): the cancel failed and the order may well still rest."""


class BadRequest(VenueError):
    """Any other 4xx: our request is malformed."""


class OutcomeUnknown(VenueError):
    """Timeout, dropped connection or 5xx: the request may have executed."""


class UndecodableReply(OutcomeUnknown):
    """HTTP 200 with a body that is not the documented reply (counted in the decode
    ledger): the request executed, but what it did cannot be read. Resolved as an
    unknown outcome is: by asking the venue."""


class MarketClosed(OrderRejected):
    """-2010 (or -1010/-2011/-2038) "Market is closed.": the symbol is not trading
    (errors.md). The node halts on the symbol at once and asks exchangeInfo why."""


MARKET_CLOSED_MSG = "Market is closed."


_BY_CODE = {
    -1003: RateLimited, -1015: RateLimited,
    -1021: TimestampRejected,
    -1022: AuthRejected, -2014: AuthRejected, -2015: AuthRejected,
    -1013: FilterFailure,
    -2010: OrderRejected,
    -2011: UnknownOrder, -2013: UnknownOrder,
}


def from_reply(http_status: int, code: int, msg: str, retry_after_s: float | None = None) -> VenueError:
    if http_status in (418, 429):
        return RateLimited(code, msg, http_status, retry_after_s if retry_after_s is not None else 1.0)
    if http_status >= 500:
        return OutcomeUnknown(code, msg, http_status)
    kind = _BY_CODE.get(code, BadRequest)
    if code in (-1010, -2010, -2011, -2038) and msg.strip() == MARKET_CLOSED_MSG:
        return MarketClosed(code, msg, http_status)
    if code == -2011 and not msg.strip().startswith("Unknown order"):
        return CancelRejected(code, msg, http_status)
    if kind is RateLimited:
        return RateLimited(code, msg, http_status, retry_after_s if retry_after_s is not None else 1.0)
    return kind(code, msg, http_status)
