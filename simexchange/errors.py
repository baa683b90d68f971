"""Binance error codes and the HTTP statuses they come with."""


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


def ahead_of_server(ms: int) -> VenueError:
    return VenueError(-1021, f"Timestamp for this request was {ms}ms ahead of the server's time.")


def recv_window_too_large() -> VenueError:
    return VenueError(-1131, "recvWindow must be less than 60000")


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


def unknown_order() -> VenueError:
    return VenueError(-2011, "Unknown order sent.")


def order_does_not_exist() -> VenueError:
    return VenueError(-2013, "Order does not exist.")


INSUFFICIENT_BALANCE = "Account has insufficient balance for requested action."
WOULD_TAKE = "Order would immediately match and take."
DUPLICATE_ORDER = "Duplicate order sent."
