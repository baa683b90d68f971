"""Binance error codes and the HTTP statuses they come with.

Messages are Binance's (errors.md of the Spot API docs, or a reply recorded
from the venue where the docs give only a template)."""


class VenueError(Exception):
    def __init__(self, code: int, msg: str, http_status: int = 400, retry_after: int | None = None):
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg
        self.http_status = http_status
        self.retry_after = retry_after

    def body(self) -> dict:
        return {"code": self.code, "msg": self.msg}


def too_many_requests(limit: int, retry_after: int) -> VenueError:
    return VenueError(
        -1003,
        f"Too many requests; current limit of IP request weight per minute is {limit}. "
        "Please use WebSocket Streams for live updates to avoid polling the API.",
        429,
        retry_after,
    )


def too_many_raw_requests(limit: int, retry_after: int) -> VenueError:
    # errors.md -1003, the template: "Too much request weight used; current limit is %s request weight per %s."
    return VenueError(-1003, f"Too much request weight used; current limit is {limit} request weight per 5 MINUTE. "
                             "Please use WebSocket Streams for live updates to avoid polling the API.", 429, retry_after)


def too_many_orders(limit: int, interval: str, retry_after: int) -> VenueError:
    return VenueError(-1015, f"Too many new orders; current limit is {limit} orders per {interval}.", 429, retry_after)


def unauthorized() -> VenueError:
    return VenueError(-2015, "Invalid API-key, IP, or permissions for action.", 401)


def bad_api_key_format() -> VenueError:
    return VenueError(-2014, "API-key format invalid.", 401)


def bad_signature() -> VenueError:
    return VenueError(-1022, "Signature for this request is not valid.")


def outside_recv_window() -> VenueError:
    return VenueError(-1021, "Timestamp for this request is outside of the recvWindow.")


def ahead_of_server() -> VenueError:
    # errors.md, -1021 INVALID_TIMESTAMP: the 1000 ms is the venue's tolerance, not the offset,
    # and replies recorded from Binance carry this text whatever the offset.
    return VenueError(-1021, "Timestamp for this request was 1000ms ahead of the server's time.")


def recv_window_too_large() -> VenueError:
    # CHANGELOG 2019-08-15: "-1131 BAD_RECV_WINDOW recvWindow must be less than 60000"; the text as
    # Binance sends it, recorded: {"code":-1131,"msg":"'recvWindow' must be less than 60000."}
    return VenueError(-1131, "'recvWindow' must be less than 60000.")


def too_much_precision(param: str) -> VenueError:
    return VenueError(-1111, f"Parameter '{param}' has too much precision.")


def ip_banned(until_ms: int, retry_after: int) -> VenueError:
    """HTTP 418, errors.md -1003: "Way too much request weight used; IP banned until %s. Please use
    WebSocket Streams for live updates to avoid bans." (%s is the ban's end in epoch ms, as recorded)."""
    return VenueError(-1003, f"Way too much request weight used; IP banned until {until_ms}. "
                             "Please use WebSocket Streams for live updates to avoid bans.", 418, retry_after)


def missing(param: str) -> VenueError:
    return VenueError(-1102, f"Mandatory parameter '{param}' was not sent, was empty/null, or malformed.")


def bad_param(param: str) -> VenueError:
    return VenueError(-1100, f"Illegal characters found in parameter '{param}'.")


def duplicate_param(param: str) -> VenueError:
    return VenueError(-1101, f"Duplicate values for parameter '{param}'.")


def unknown_param(param: str) -> VenueError:
    return VenueError(-1104, f"Not all sent parameters were read; read 0 parameter(s) but was sent '{param}'.")


def invalid_symbol() -> VenueError:
    return VenueError(-1121, "Invalid symbol.")


def filter_failure(name: str) -> VenueError:
    return VenueError(-1013, f"Filter failure: {name}")


def rejected(msg: str) -> VenueError:
    return VenueError(-2010, msg)


def amend_rejected(msg: str) -> VenueError:
    """-2038 ORDER_AMEND_REJECTED, with one of the matching engine's messages (errors.md)."""
    return VenueError(-2038, msg)


def symbol_status_mismatch() -> VenueError:
    return VenueError(-1220, "The symbol's status does not match the requested symbolStatus.")


def bad_combination() -> VenueError:
    return VenueError(-1128, "Combination of optional parameters invalid.")


def subscription_active() -> VenueError:
    return VenueError(-2035, "User Data Stream subscription already active.")


def subscription_inactive() -> VenueError:
    return VenueError(-2036, "User Data Stream subscription not active.")


def unknown_order() -> VenueError:
    return VenueError(-2011, "Unknown order sent.")


def order_does_not_exist() -> VenueError:
    return VenueError(-2013, "Order does not exist.")


def order_type_not_in_oco() -> VenueError:
    return VenueError(-1158, "Order type not supported in OCO.")


def oco_needs_a_contingent_order() -> VenueError:
    return VenueError(-1168, "At least one OCO order must be contingent.")


# errors.md -1165/-1166/-1196/-1197: which side of the market each leg of an OCO must sit on.
def buy_oco_limit_must_be_below() -> VenueError:
    return VenueError(-1165, "A limit order in a buy OCO must be below.")


def sell_oco_limit_must_be_above() -> VenueError:
    return VenueError(-1166, "A limit order in a sell OCO must be above.")


def buy_oco_stop_loss_must_be_above() -> VenueError:
    return VenueError(-1196, "A stop loss order in a buy OCO must be above.")


def sell_oco_stop_loss_must_be_below() -> VenueError:
    return VenueError(-1197, "A stop loss order in a sell OCO must be below.")


# Recorded from Binance (errors.md names only the codes): cancelling a list that is unknown or done,
# and querying one that is unknown.
def unknown_order_list() -> VenueError:
    return VenueError(-2011, "Unknown order list sent.")


def order_list_does_not_exist() -> VenueError:
    return VenueError(-2013, "Order list does not exist.")


MARKET_CLOSED = "Market is closed."  # errors.md: "The symbol is not trading."
INSUFFICIENT_BALANCE = "Account has insufficient balance for requested action."
WOULD_TAKE = "Order would immediately match and take."
DUPLICATE_ORDER = "Duplicate order sent."
OCO_BAD_PRICES = "The relationship of the prices for the orders is not correct."
WOULD_TRIGGER = "Order would trigger immediately."
TAKE_PROFIT_UNSUPPORTED = "Take profit orders are not supported for this symbol."
TAKE_PROFIT_LIMIT_UNSUPPORTED = "Take profit limit orders are not supported for this symbol."
# -2010 for an order type the symbol does not take (errors.md), by type.
UNSUPPORTED_ORDER_TYPES = {
    "STOP_LOSS": "Stop loss orders are not supported for this symbol.",
    "STOP_LOSS_LIMIT": "Stop loss limit orders are not supported for this symbol.",
    "TAKE_PROFIT": TAKE_PROFIT_UNSUPPORTED,
    "TAKE_PROFIT_LIMIT": TAKE_PROFIT_LIMIT_UNSUPPORTED,
}
ICEBERG_UNSUPPORTED = "Iceberg orders are not supported for this symbol."
TRAILING_UNSUPPORTED = "Trailing stop orders are not supported for this symbol."
PEGGED_UNSUPPORTED = "Pegged orders are not supported for this symbol."
