"""Typed venue messages, decoded by msgspec straight from the wire bytes.

Prices and quantities arrive as decimal strings; they are decoded to float
in C (lax mode) because the book and the strategy compute in floats, and
rounded to the symbol's tick and step only when an order is built.
"""
import msgspec


class _Wire(msgspec.Struct, frozen=True, kw_only=True):
    pass


Level = tuple[float, float]


class DepthUpdate(_Wire, kw_only=True):
    e: str
    E: int
    s: str
    U: int
    u: int
    b: list[Level]
    a: list[Level]


class DepthSnapshot(_Wire, kw_only=True):
    lastUpdateId: int
    bids: list[Level]
    asks: list[Level]


class ExecutionReport(_Wire, kw_only=True):
    e: str
    E: int
    s: str
    c: str  # the client id of this report's request (the cancel's own id on a cancel)
    S: str
    o: str
    q: float
    p: float
    C: str = ""  # the cancelled order's client id
    x: str  # execution type
    X: str  # order status
    r: str = "NONE"
    i: int
    l: float  # noqa: E741 - Binance's field name
    z: float
    L: float
    n: float = 0.0
    N: str | None = None
    T: int
    t: int = -1
    m: bool = False
    Z: float = 0.0


class BalanceRow(_Wire, kw_only=True):
    a: str
    f: float
    l: float  # noqa: E741


class AccountPosition(_Wire, kw_only=True):
    e: str
    E: int
    u: int
    B: list[BalanceRow]


class UserEvent(_Wire, kw_only=True):
    """The WebSocket API wraps user-data events: {"subscriptionId", "event"}."""

    subscriptionId: int
    event: msgspec.Raw


class EventType(_Wire, kw_only=True):
    e: str


class OpenOrder(_Wire, kw_only=True):
    symbol: str
    orderId: int
    clientOrderId: str
    price: float
    origQty: float
    executedQty: float
    status: str
    side: str
    type: str
    time: int = 0
    updateTime: int = 0


class OrderReply(_Wire, kw_only=True):
    symbol: str
    orderId: int
    clientOrderId: str
    transactTime: int = 0
    price: float = 0.0
    origQty: float = 0.0
    executedQty: float = 0.0
    status: str = "NEW"


class CancelReply(_Wire, kw_only=True):
    symbol: str
    orderId: int
    origClientOrderId: str
    clientOrderId: str
    executedQty: float = 0.0
    status: str = "CANCELED"


class CancelAllEntry(_Wire, kw_only=True):
    """One entry of `DELETE /api/v3/openOrders`'s reply: a cancelled order,
    or an order list (OCO, OTO, OTOCO) with its legs' cancel reports in
    `orderReports` and no `orderId` of its own, as Binance documents it."""

    symbol: str
    orderId: int | None = None
    origClientOrderId: str | None = None
    clientOrderId: str | None = None
    executedQty: float = 0.0
    status: str = "CANCELED"
    orderListId: int = -1
    contingencyType: str | None = None
    listClientOrderId: str | None = None
    orderReports: list[CancelReply] = []

    def cancelled_orders(self) -> list[CancelReply]:
        if self.contingencyType is not None or self.orderId is None:
            return list(self.orderReports)
        return [CancelReply(symbol=self.symbol, orderId=self.orderId, origClientOrderId=self.origClientOrderId or "",
                            clientOrderId=self.clientOrderId or "", executedQty=self.executedQty, status=self.status)]


class ServerTime(_Wire, kw_only=True):
    serverTime: int


class Balance(_Wire, kw_only=True):
    asset: str
    free: float
    locked: float


class AccountInfo(_Wire, kw_only=True):
    balances: list[Balance]
    canTrade: bool = True


class ErrorReply(_Wire, kw_only=True):
    code: int
    msg: str


class SymbolFilters(_Wire, kw_only=True):
    symbol: str
    baseAsset: str
    quoteAsset: str
    filters: list[dict]


class ExchangeInfo(_Wire, kw_only=True):
    symbols: list[SymbolFilters]
