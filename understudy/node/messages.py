"""Typed venue messages, decoded by msgspec straight from the wire bytes:
one Struct per Binance Spot message the node reads, enums for every field
Binance documents as a closed set (enums.md), and every one-letter field
commented with what Binance calls it (user-data-stream.md,
web-socket-streams.md). Fixtures of every message, copied from Binance's
documentation and from recorded payloads, are decoded by these structs in
tests/test_binance_fixtures.py.

Prices and quantities arrive as decimal strings; they are decoded to float
in C (lax mode) because the book and the strategy compute in floats, and
rounded to the symbol's tick and step only when an order is built.

**Unknown enum values.** A value outside the documented set never decodes
to a documented member and never fails the whole message: it becomes a
pseudo-member named UNKNOWN that keeps the raw value (`.known` is False,
`.value` is what the venue sent), so the reader can count it, log it and
apply its own policy (see `oms.py`: an order whose status it cannot read is
left as it was and asked about over REST; `engine.py`: a symbol whose status
it cannot read is not quoted). A silent default would turn an unknown order
status into NEW.

Conditional fields (those Binance sends only in some cases) are optional
and default to "absent" (None, or what absence means in the docs, e.g.
`orderListId` -1); required fields are those every documented payload has.
"""
import enum

import msgspec


class VenueEnum(enum.Enum):
    """A closed set of values the venue sends; see the module's note on unknown values."""

    @classmethod
    def _missing_(cls, value):
        if not isinstance(value, str):
            return None  # not a string at all: a malformed message, a decode error
        unknown = object.__new__(cls)
        unknown._name_ = "UNKNOWN"
        unknown._value_ = value
        return unknown

    @property
    def known(self) -> bool:
        return self._name_ != "UNKNOWN"


class SymbolStatus(VenueEnum):  # enums.md, "Symbol status"
    TRADING = "TRADING"
    END_OF_DAY = "END_OF_DAY"
    HALT = "HALT"
    BREAK = "BREAK"
    CANCEL_ONLY = "CANCEL_ONLY"
    # Older documentation also listed these; a venue still sending them is understood.
    PRE_TRADING = "PRE_TRADING"
    POST_TRADING = "POST_TRADING"
    AUCTION_MATCH = "AUCTION_MATCH"


class OrderStatus(VenueEnum):  # enums.md, "Order status"
    NEW = "NEW"
    PENDING_NEW = "PENDING_NEW"  # a pending leg of an order list
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    PENDING_CANCEL = "PENDING_CANCEL"  # "currently unused"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    EXPIRED_IN_MATCH = "EXPIRED_IN_MATCH"  # expired by self-trade prevention


class ExecutionType(VenueEnum):  # enums.md, "Execution types"
    NEW = "NEW"
    CANCELED = "CANCELED"
    REPLACED = "REPLACED"  # the order was amended (order amend keep priority)
    REJECTED = "REJECTED"
    TRADE = "TRADE"
    EXPIRED = "EXPIRED"
    TRADE_PREVENTION = "TRADE_PREVENTION"  # expired by self-trade prevention


class OrderSide(VenueEnum):
    BUY = "BUY"
    SELL = "SELL"


class OrderType(VenueEnum):  # enums.md, "Order types"
    LIMIT = "LIMIT"
    MARKET = "MARKET"
    STOP_LOSS = "STOP_LOSS"
    STOP_LOSS_LIMIT = "STOP_LOSS_LIMIT"
    TAKE_PROFIT = "TAKE_PROFIT"
    TAKE_PROFIT_LIMIT = "TAKE_PROFIT_LIMIT"
    LIMIT_MAKER = "LIMIT_MAKER"


class TimeInForce(VenueEnum):
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"


class StpMode(VenueEnum):  # enums.md, "STP Modes"
    NONE = "NONE"
    EXPIRE_MAKER = "EXPIRE_MAKER"
    EXPIRE_TAKER = "EXPIRE_TAKER"
    EXPIRE_BOTH = "EXPIRE_BOTH"
    DECREMENT = "DECREMENT"
    TRANSFER = "TRANSFER"


class ContingencyType(VenueEnum):
    OCO = "OCO"
    OTO = "OTO"


class ListStatusType(VenueEnum):  # enums.md, "Order List Status"
    RESPONSE = "RESPONSE"
    EXEC_STARTED = "EXEC_STARTED"
    UPDATED = "UPDATED"
    ALL_DONE = "ALL_DONE"


class ListOrderStatus(VenueEnum):  # enums.md, "Order List Order Status"
    EXECUTING = "EXECUTING"
    ALL_DONE = "ALL_DONE"
    REJECT = "REJECT"


class RateLimitType(VenueEnum):
    REQUEST_WEIGHT = "REQUEST_WEIGHT"
    ORDERS = "ORDERS"
    RAW_REQUESTS = "RAW_REQUESTS"
    CONNECTIONS = "CONNECTIONS"  # WebSocket API connection limits


class RateLimitInterval(VenueEnum):
    SECOND = "SECOND"
    MINUTE = "MINUTE"
    HOUR = "HOUR"
    DAY = "DAY"


class _Wire(msgspec.Struct, frozen=True, kw_only=True):
    pass


Level = tuple[float, float]  # [price, quantity]


# -- market streams (web-socket-streams.md) --------------------------------------------
class DepthUpdate(_Wire, kw_only=True):
    """`<symbol>@depth` / `<symbol>@depth@100ms`, "Diff. Depth Stream"."""

    e: str  # Event type: "depthUpdate"
    E: int  # Event time
    s: str  # Symbol
    U: int  # First update ID in event
    u: int  # Final update ID in event
    b: list[Level]  # Bids to be updated
    a: list[Level]  # Asks to be updated


class StreamEvent(_Wire, kw_only=True):
    """Any market-stream or WebSocket API event, read only for its type (and time)."""

    e: str  # Event type
    E: int = 0  # Event time


class ServerShutdown(_Wire, kw_only=True):
    """web-socket-streams.md and web-socket-api.md, "Server Shutdown": the server
    is about to close this connection; a client reconnects as soon as it can."""

    e: str  # Event type: "serverShutdown"
    E: int  # Event time


class CombinedStreamMessage(_Wire, kw_only=True):
    """`/stream?streams=...` wraps each payload: {"stream": name, "data": payload}."""

    stream: str
    data: msgspec.Raw


# -- REST: general and market data (rest-api.md) ---------------------------------------
class ServerTime(_Wire, kw_only=True):
    serverTime: int


class RateLimit(_Wire, kw_only=True):
    """enums.md, "Rate limiters". Binance's own example of `exchangeInfo` shows an
    empty placeholder object ("All limits are optional"), hence the defaults."""

    rateLimitType: RateLimitType | None = None
    interval: RateLimitInterval | None = None
    intervalNum: int = 0
    limit: int = 0
    count: int | None = None  # in WebSocket API replies: the usage so far


class SymbolInfo(_Wire, kw_only=True):
    """One entry of `exchangeInfo`'s `symbols`. Filters stay raw here: `filters.py`
    decodes them into one struct per filter type."""

    symbol: str
    status: SymbolStatus
    baseAsset: str
    baseAssetPrecision: int = 8
    quoteAsset: str
    quotePrecision: int = 8
    quoteAssetPrecision: int = 8
    baseCommissionPrecision: int = 8
    quoteCommissionPrecision: int = 8
    orderTypes: list[OrderType] = []
    icebergAllowed: bool = False
    ocoAllowed: bool = False
    otoAllowed: bool = False
    opoAllowed: bool = False
    quoteOrderQtyMarketAllowed: bool = False
    allowTrailingStop: bool = False
    cancelReplaceAllowed: bool = False
    amendAllowed: bool = False
    pegInstructionsAllowed: bool = False
    isSpotTradingAllowed: bool = True
    isMarginTradingAllowed: bool = False
    filters: list[msgspec.Raw] = []
    permissions: list[str] = []
    permissionSets: list[list[str]] = []
    defaultSelfTradePreventionMode: StpMode | None = None
    allowedSelfTradePreventionModes: list[StpMode] = []


class ExchangeInfo(_Wire, kw_only=True):
    timezone: str = "UTC"
    serverTime: int = 0
    rateLimits: list[RateLimit] = []
    exchangeFilters: list[msgspec.Raw] = []
    symbols: list[SymbolInfo]


class DepthSnapshot(_Wire, kw_only=True):
    lastUpdateId: int
    bids: list[Level]
    asks: list[Level]


class AveragePrice(_Wire, kw_only=True):
    """`GET /api/v3/avgPrice`: the average PERCENT_PRICE(_BY_SIDE) is judged against."""

    mins: int = 0
    price: float
    closeTime: int = 0


# -- REST: orders ----------------------------------------------------------------------
class OrderFill(_Wire, kw_only=True):
    """One fill of a FULL order reply."""

    price: float
    qty: float
    commission: float
    commissionAsset: str | None = None
    tradeId: int


class OrderReply(_Wire, kw_only=True):
    """`POST /api/v3/order`: ACK (ids only), RESULT (the order's state) or FULL
    (RESULT and its fills). An ACK says nothing about the status: `status` is
    None then, never a guessed NEW."""

    symbol: str
    orderId: int
    orderListId: int = -1  # -1 unless part of an order list
    clientOrderId: str
    transactTime: int = 0
    price: float | None = None
    origQty: float | None = None
    executedQty: float = 0.0
    origQuoteOrderQty: float = 0.0
    cummulativeQuoteQty: float = 0.0
    status: OrderStatus | None = None
    timeInForce: TimeInForce | None = None
    type: OrderType | None = None
    side: OrderSide | None = None
    workingTime: int | None = None  # only once the order is working on the book
    selfTradePreventionMode: StpMode | None = None
    fills: list[OrderFill] = []  # FULL only


class CancelReply(_Wire, kw_only=True):
    """`DELETE /api/v3/order`, and each leg's report inside an order list's."""

    symbol: str
    origClientOrderId: str  # the cancelled order's client id
    orderId: int
    orderListId: int = -1
    clientOrderId: str  # the cancel request's own client id
    transactTime: int = 0
    price: float | None = None
    origQty: float | None = None
    executedQty: float = 0.0
    origQuoteOrderQty: float = 0.0
    cummulativeQuoteQty: float = 0.0
    status: OrderStatus = OrderStatus.CANCELED
    timeInForce: TimeInForce | None = None
    type: OrderType | None = None
    side: OrderSide | None = None
    stopPrice: float | None = None
    icebergQty: float | None = None
    selfTradePreventionMode: StpMode | None = None


class AmendedOrder(_Wire, kw_only=True):
    """The order after an amendment: its new quantity, and the new client id it may have got."""

    symbol: str
    orderId: int
    orderListId: int = -1
    origClientOrderId: str  # its client id before the amendment
    clientOrderId: str  # its client id now
    price: float
    qty: float  # the new quantity
    executedQty: float
    preventedQty: float = 0.0
    quoteOrderQty: float = 0.0
    cumulativeQuoteQty: float = 0.0
    status: OrderStatus
    timeInForce: TimeInForce | None = None
    type: OrderType
    side: OrderSide
    workingTime: int | None = None
    selfTradePreventionMode: StpMode | None = None


class AmendReply(_Wire, kw_only=True):
    """`PUT /api/v3/order/amend/keepPriority` (order amend keep priority). The node sends no
    amendments; an amendment made by anyone else reaches it as a REPLACED executionReport."""

    transactTime: int
    executionId: int
    amendedOrder: AmendedOrder
    listStatus: msgspec.Raw = msgspec.Raw(b"")  # only for an order in an order list


class OrderListLeg(_Wire, kw_only=True):
    symbol: str
    orderId: int
    clientOrderId: str


class CancelAllEntry(_Wire, kw_only=True):
    """One entry of `DELETE /api/v3/openOrders`'s reply: a cancelled order,
    or an order list (OCO, OTO, OTOCO) with its legs' cancel reports in
    `orderReports` and no `orderId` of its own, as Binance documents it."""

    symbol: str
    # A plain order's fields:
    orderId: int | None = None
    origClientOrderId: str | None = None
    clientOrderId: str | None = None
    transactTime: int = 0
    price: float | None = None
    origQty: float | None = None
    executedQty: float = 0.0
    origQuoteOrderQty: float = 0.0
    cummulativeQuoteQty: float = 0.0
    status: OrderStatus = OrderStatus.CANCELED
    timeInForce: TimeInForce | None = None
    type: OrderType | None = None
    side: OrderSide | None = None
    selfTradePreventionMode: StpMode | None = None
    # An order list's fields:
    orderListId: int = -1
    contingencyType: ContingencyType | None = None
    listStatusType: ListStatusType | None = None
    listOrderStatus: ListOrderStatus | None = None
    listClientOrderId: str | None = None
    transactionTime: int = 0
    orders: list[OrderListLeg] = []
    orderReports: list[CancelReply] = []

    @property
    def is_order_list(self) -> bool:
        return self.contingencyType is not None or self.orderId is None

    def cancelled_orders(self) -> list[CancelReply]:
        if self.is_order_list:
            return list(self.orderReports)
        return [CancelReply(symbol=self.symbol, orderId=self.orderId, origClientOrderId=self.origClientOrderId or "",
                            clientOrderId=self.clientOrderId or "", executedQty=self.executedQty, status=self.status,
                            price=self.price, origQty=self.origQty, side=self.side, type=self.type)]


class ListOrderReport(_Wire, kw_only=True):
    """A leg's report inside an order list reply: the order's state after placement, or after
    its cancel (which adds the cancelled order's own id, `origClientOrderId`)."""

    symbol: str
    orderId: int
    orderListId: int
    clientOrderId: str
    origClientOrderId: str | None = None  # cancel replies only
    transactTime: int = 0
    price: float
    origQty: float
    executedQty: float
    origQuoteOrderQty: float = 0.0
    cummulativeQuoteQty: float = 0.0
    status: OrderStatus
    timeInForce: TimeInForce | None = None
    type: OrderType
    side: OrderSide
    stopPrice: float | None = None
    icebergQty: float | None = None
    workingTime: int | None = None
    selfTradePreventionMode: StpMode | None = None


class OrderListReply(_Wire, kw_only=True):
    """An order list as the REST API shows it (`POST /api/v3/orderList/oco`,
    `DELETE /api/v3/orderList`, `GET /api/v3/orderList`, `GET /api/v3/openOrderList`)."""

    orderListId: int
    contingencyType: ContingencyType
    listStatusType: ListStatusType
    listOrderStatus: ListOrderStatus
    listClientOrderId: str
    transactionTime: int
    symbol: str
    orders: list[OrderListLeg]
    orderReports: list[ListOrderReport] = []  # placement and cancel replies only


class OpenOrder(_Wire, kw_only=True):
    """`GET /api/v3/order` and each entry of `GET /api/v3/openOrders`."""

    symbol: str
    orderId: int
    orderListId: int = -1
    clientOrderId: str
    price: float
    origQty: float
    executedQty: float
    cummulativeQuoteQty: float = 0.0
    status: OrderStatus
    timeInForce: TimeInForce | None = None
    type: OrderType
    side: OrderSide
    stopPrice: float = 0.0
    icebergQty: float = 0.0
    time: int = 0
    updateTime: int = 0
    isWorking: bool = True
    workingTime: int | None = None
    origQuoteOrderQty: float = 0.0
    selfTradePreventionMode: StpMode | None = None


# -- REST: account -----------------------------------------------------------------------
class Balance(_Wire, kw_only=True):
    asset: str
    free: float
    locked: float


class AccountInfo(_Wire, kw_only=True):
    makerCommission: int = 0
    takerCommission: int = 0
    canTrade: bool = True
    canWithdraw: bool = True
    canDeposit: bool = True
    updateTime: int = 0
    accountType: str = "SPOT"
    balances: list[Balance]
    permissions: list[str] = []


class ErrorReply(_Wire, kw_only=True):
    code: int
    msg: str


# -- the user data stream (user-data-stream.md), over the WebSocket API -------------------
class ExecutionReport(_Wire, kw_only=True):
    """"Order Update". Conditional fields (trailing stops, strategies, STP,
    SOR, pegged orders) default to absent."""

    e: str  # Event type: "executionReport"
    E: int  # Event time
    s: str  # Symbol
    c: str  # Client order ID (on a cancel: the cancel request's own id)
    S: OrderSide  # Side
    o: OrderType  # Order type
    f: TimeInForce | None = None  # Time in force
    q: float  # Order quantity (after an amendment: the new quantity)
    p: float  # Order price
    P: float = 0.0  # Stop price
    F: float = 0.0  # Iceberg quantity
    g: int = -1  # OrderListId
    C: str = ""  # Original client order ID: the id of the order being canceled
    x: ExecutionType  # Current execution type
    X: OrderStatus  # Current order status
    r: str = "NONE"  # Order reject reason (open-ended: "will be an error code")
    i: int  # Order ID
    l: float  # noqa: E741 - Last executed quantity
    z: float  # Cumulative filled quantity
    L: float  # Last executed price
    n: float = 0.0  # Commission amount
    N: str | None = None  # Commission asset
    T: int  # Transaction time
    t: int = -1  # Trade ID
    v: int | None = None  # Prevented Match Id (only for orders expired by STP)
    I: int = 0  # noqa: E741 - Execution Id
    w: bool = False  # Is the order on the book?
    m: bool = False  # Is this trade the maker side?
    M: bool = False  # Ignore
    O: int = 0  # noqa: E741 - Order creation time
    Z: float = 0.0  # Cumulative quote asset transacted quantity
    Y: float = 0.0  # Last quote asset transacted quantity (i.e. lastPrice * lastQty)
    Q: float = 0.0  # Quote Order Quantity
    W: int | None = None  # Working Time (only once the order is on the book)
    V: StpMode | None = None  # SelfTradePreventionMode
    d: int | None = None  # Trailing Delta (trailing stops only)
    D: int | None = None  # Trailing Time (trailing stops only)
    j: int | None = None  # Strategy Id (if given at placement)
    J: int | None = None  # Strategy Type (if given at placement)
    A: float | None = None  # Prevented Quantity (STP)
    B: float | None = None  # Last Prevented Quantity (STP, execution type TRADE_PREVENTION)
    u: int | None = None  # Trade Group Id (STP)
    U: int | None = None  # Counter Order Id (STP)
    Cs: str | None = None  # Counter Symbol (STP)
    pl: float | None = None  # Prevented Execution Quantity (STP)
    pL: float | None = None  # Prevented Execution Price (STP)
    pY: float | None = None  # Prevented Execution Quote Qty (STP)
    b: str | None = None  # Match Type (orders with allocations)
    a: int | None = None  # Allocation ID (orders with allocations)
    k: str | None = None  # Working Floor (orders that may have allocations)
    uS: bool | None = None  # UsedSor
    eR: str | None = None  # Expiry Reason (expired orders only)

    @property
    def client_id(self) -> str:
        """The id of the order this report is about: on a cancel `c` is the
        cancel request's own id and `C` the order's."""
        return self.C if self.x is ExecutionType.CANCELED and self.C else self.c


class BalanceRow(_Wire, kw_only=True):
    a: str  # Asset
    f: float  # Free
    l: float  # noqa: E741 - Locked


class AccountPosition(_Wire, kw_only=True):
    """"Account Update": the balances an event may have changed, absolute."""

    e: str  # Event type: "outboundAccountPosition"
    E: int  # Event Time
    u: int  # Time of last account update
    B: list[BalanceRow]  # Balances Array


class BalanceUpdate(_Wire, kw_only=True):
    """A deposit, withdrawal or transfer: a delta. The node reads absolute balances
    from outboundAccountPosition and REST, so this only shows in the counts."""

    e: str  # Event Type: "balanceUpdate"
    E: int  # Event Time
    a: str  # Asset
    d: float  # Balance Delta
    T: int  # Clear Time


class ExternalLockUpdate(_Wire, kw_only=True):
    e: str  # Event Type: "externalLockUpdate"
    E: int  # Event Time
    a: str  # Asset
    d: float  # Delta
    T: int  # Transaction Time


class ListStatusOrder(_Wire, kw_only=True):
    s: str  # Symbol
    i: int  # OrderId
    c: str  # ClientOrderId


class ListStatus(_Wire, kw_only=True):
    """Sent beside the legs' executionReports when an order list changes."""

    e: str  # Event Type: "listStatus"
    E: int  # Event Time
    s: str  # Symbol
    g: int  # OrderListId
    c: ContingencyType  # Contingency Type
    l: ListStatusType  # noqa: E741 - List Status Type
    L: ListOrderStatus  # List Order Status
    r: str = "NONE"  # List Reject Reason
    C: str  # List Client Order ID
    T: int  # Transaction Time
    O: list[ListStatusOrder]  # noqa: E741 - the list's orders


class EventStreamTerminated(_Wire, kw_only=True):
    """The subscription ended (unsubscribed, logged out, a listen token expired):
    no more events come on it."""

    e: str  # Event Type: "eventStreamTerminated"
    E: int  # Event Time


class UserEvent(_Wire, kw_only=True):
    """The WebSocket API wraps events: {"subscriptionId", "event"}. A
    connection event (serverShutdown) has no subscription id."""

    subscriptionId: int | None = None
    event: msgspec.Raw


# -- the WebSocket API (web-socket-api.md) ------------------------------------------------
class WsApiResponse(_Wire, kw_only=True):
    """A reply to a request: `result` on success, `error` on failure, and the
    request's effect on the rate limits in `rateLimits` (unless hidden)."""

    id: str | int | None = None
    status: int
    result: msgspec.Raw = msgspec.Raw(b"")  # empty when absent (a failed request)
    error: ErrorReply | None = None
    rateLimits: list[RateLimit] = []


class SubscriptionResult(_Wire, kw_only=True):
    """The `result` of `userDataStream.subscribe` / `.subscribe.signature`."""

    subscriptionId: int
