"""The order state machine, fed by REST replies, executionReports and
reconciliation. Sans-I/O: every method takes `now` (monotonic seconds).

Replies and stream events race each other, so a status only moves forward:
a REST `NEW` arriving after a streamed fill does not undo the fill, and
nothing leaves a terminal state.

What the venue says is taken as Binance documents it:
- an order status the node does not know (messages.py) changes nothing: the
  order keeps its status, the value is counted, and the order is queued in
  `to_verify` for the engine to ask the venue about it over REST;
- a TRADE report with a zero last quantity is no fill (its status and
  cumulative quantity still count); a TRADE_PREVENTION report is no fill
  either (self-trade prevention expired quantity instead of trading it);
- an amendment (`REPLACED`, order amend keep priority) sets the order's new
  quantity, and follows the order if the amendment gave it a new client id;
- an ACK reply (no status) acknowledges the order without guessing one.
"""
from collections import OrderedDict, deque
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

from typing import Callable

from . import client_ids
from .decode_ledger import DecodeLedger
from .histogram import Histogram
from .messages import ExecutionReport, ExecutionType, OpenOrder, OrderReply, OrderStatus


class Status(Enum):
    PENDING_NEW = "PENDING_NEW"  # sent, no answer yet
    UNKNOWN = "UNKNOWN"  # the send's outcome is unknown; reconciliation decides
    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    PENDING_CANCEL = "PENDING_CANCEL"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    GONE = "GONE"  # no longer on the venue; how it ended is in the balances


TERMINAL = frozenset({Status.FILLED, Status.CANCELED, Status.REJECTED, Status.EXPIRED, Status.GONE})
_RANK = {Status.PENDING_NEW: 0, Status.UNKNOWN: 0, Status.NEW: 1, Status.PARTIALLY_FILLED: 2,
         Status.PENDING_CANCEL: 3}
# Every documented venue status, and what it means here. A venue PENDING_NEW (an order list's pending
# leg) is accepted and open; EXPIRED_IN_MATCH (self-trade prevention) is expired.
_VENUE_STATUS = {OrderStatus.NEW: Status.NEW, OrderStatus.PENDING_NEW: Status.NEW,
                 OrderStatus.PARTIALLY_FILLED: Status.PARTIALLY_FILLED, OrderStatus.FILLED: Status.FILLED,
                 OrderStatus.CANCELED: Status.CANCELED, OrderStatus.REJECTED: Status.REJECTED,
                 OrderStatus.EXPIRED: Status.EXPIRED, OrderStatus.EXPIRED_IN_MATCH: Status.EXPIRED,
                 OrderStatus.PENDING_CANCEL: Status.PENDING_CANCEL}
assert set(_VENUE_STATUS) == set(OrderStatus), "every documented order status has a meaning here"
TO_VERIFY_KEPT = 1_000
FINISHED_KEPT = 1_000
SEEN_TRADES_KEPT = 100_000


@dataclass(slots=True)
class ManagedOrder:
    client_id: str
    side: str
    price_ticks: int
    qty_steps: int
    price: float
    qty: float
    epoch: int
    level: int | None  # the strategy's quote slot; None for an adopted order
    sent_at: float
    status: Status = Status.PENDING_NEW
    order_id: int | None = None
    filled: float = 0.0
    acked_at: float | None = None
    cancel_sent_at: float | None = None
    finished_at: float | None = None
    accept_by: float = float("-inf")  # the venue refuses it from then on (its recvWindow fence, set at sending)
    prevented: float = 0.0  # quantity expired by self-trade prevention (the venue's `A`)
    amendments: int = 0

    @property
    def is_live(self) -> bool:
        return self.status not in TERMINAL

    def may_still_land(self, now: float) -> bool:
        """Sent, never acknowledged, and its fence not yet passed: the venue
        may still accept it, whatever a cancel or a listing said before."""
        return self.acked_at is None and self.order_id is None and now < self.accept_by

    @property
    def remaining(self) -> float:
        """What may still fill: original quantity less executed and STP-prevented quantity."""
        return max(0.0, self.qty - self.filled - self.prevented)


class Exposure(NamedTuple):
    open_orders: int
    buy_qty: float  # unfilled, cancels not yet confirmed included: they may still fill
    sell_qty: float


@dataclass(frozen=True, slots=True)
class Fill:
    client_id: str
    side: str
    price: float
    qty: float
    commission: float
    commission_asset: str | None
    is_maker: bool


class Oms:
    def __init__(self, node_id: str, ledger: DecodeLedger | None = None,
                 on_verify: Callable[[str], None] | None = None):
        self.node_id = node_id
        self.ledger = ledger or DecodeLedger()
        # Called with a client id the venue said something unreadable about: the engine asks the venue.
        self.on_verify = on_verify
        self.to_verify: OrderedDict[str, None] = OrderedDict()
        self.zero_qty_trades = 0  # TRADE reports with a zero last quantity: no fill
        self.prevented_matches = 0  # TRADE_PREVENTION reports
        self.amendments = 0  # REPLACED reports applied
        self.live: dict[str, ManagedOrder] = {}
        self.finished: deque[ManagedOrder] = deque(maxlen=FINISHED_KEPT)
        self.outcomes: dict[str, int] = {}
        self.ack_latency = Histogram()  # send to the venue's REST reply, seconds
        self.cancel_latency = Histogram()  # cancel sent to its confirmation
        self._seen_trades: OrderedDict[tuple[int, int], None] = OrderedDict()
        self._finished_by_id: dict[str, ManagedOrder] = {}

    # -- queries ---------------------------------------------------------------
    def get(self, client_id: str) -> ManagedOrder | None:
        return self.live.get(client_id)

    def working(self) -> dict[tuple[str, int], ManagedOrder]:
        """Quote slots held by orders the strategy can still count on."""
        return {(o.side, o.level): o for o in self.live.values()
                if o.level is not None and o.status in (Status.PENDING_NEW, Status.NEW, Status.PARTIALLY_FILLED)}

    def exposure(self) -> "Exposure":
        """Open orders (pending cancels do not count) and the unfilled quantity
        on each side, in one pass: the risk view wants them on every order."""
        open_orders, buy, sell = 0, 0.0, 0.0
        for o in self.live.values():
            if o.status is not Status.PENDING_CANCEL:
                open_orders += 1
            remaining = o.qty - o.filled - o.prevented
            if remaining > 0.0:
                if o.side == "BUY":
                    buy += remaining
                else:
                    sell += remaining
        return Exposure(open_orders, buy, sell)

    def count(self, *statuses: Status) -> int:
        return sum(1 for o in self.live.values() if not statuses or o.status in statuses)

    # -- order entry -----------------------------------------------------------
    def on_sent(self, order: ManagedOrder) -> None:
        self.live[order.client_id] = order

    def on_reply(self, reply: OrderReply, now: float) -> None:
        order = self.live.get(reply.clientOrderId)
        if order is None:
            return
        order.order_id = reply.orderId
        if order.acked_at is None:
            self.ack_latency.observe(now - order.sent_at)
            order.acked_at = now
        order.filled = max(order.filled, reply.executedQty)
        if reply.status is None:
            # ACK: the venue has the order; its status comes on the stream.
            self._advance(order, Status.NEW, now)
            return
        status = self._venue_status(reply.status, "orderReply", order.client_id)
        if status is not None:
            self._advance(order, status, now)

    def on_rejected(self, client_id: str, now: float) -> None:
        order = self.live.get(client_id)
        if order is not None:
            self._advance(order, Status.REJECTED, now)

    def on_outcome_unknown(self, client_id: str, now: float) -> None:
        order = self.live.get(client_id)
        if order is not None and order.status is Status.PENDING_NEW:
            order.status = Status.UNKNOWN

    # -- cancels ---------------------------------------------------------------
    def on_cancel_sent(self, client_id: str, now: float) -> None:
        order = self.live.get(client_id)
        if order is not None:
            order.cancel_sent_at = now
            self._advance(order, Status.PENDING_CANCEL, now)

    def on_cancelled(self, client_id: str, executed_qty: float, now: float) -> None:
        order = self.live.get(client_id)
        if order is not None:
            if order.cancel_sent_at is not None:
                self.cancel_latency.observe(now - order.cancel_sent_at)
            order.filled = max(order.filled, executed_qty)
            self._advance(order, Status.CANCELED, now)

    def on_cancel_failed(self, client_id: str, now: float) -> None:
        """The cancel got no definite answer: the order may still rest. It goes
        back to working so the next requote cancels it again, rather than
        sitting forever as PENDING_CANCEL at a stale price."""
        order = self.live.get(client_id)
        if order is not None and order.status is Status.PENDING_CANCEL:
            order.status = Status.PARTIALLY_FILLED if order.filled else Status.NEW
            order.cancel_sent_at = None

    def on_cancel_unknown_order(self, client_id: str, now: float) -> None:
        """-2011: the venue has no open order by that id. It filled, was
        cancelled already, or never arrived; either way it is not resting."""
        order = self.live.get(client_id)
        if order is None:
            return
        if order.may_still_land(now):
            # The cancel overtook the send: the order may arrive yet. It stays live until the
            # venue answers the send or its recvWindow passes.
            order.status = Status.UNKNOWN if order.status is Status.PENDING_CANCEL else order.status
            order.cancel_sent_at = None
            return
        self._advance(order, Status.GONE, now)

    # -- the user data stream ----------------------------------------------------
    def on_execution(self, report: ExecutionReport, now: float) -> Fill | None:
        client_id = report.client_id
        order = self.live.get(client_id)
        if order is None and report.x is ExecutionType.REPLACED:
            order = self._follow_amendment(report)
        if order is None:
            # Finished already (say, by the REST cancel reply), yet a fill may still be
            # on its way: count it once, leave the order's final state alone.
            order = self._finished_by_id.get(client_id)
            if order is None or not self._is_fill(report) or (report.i, report.t) in self._seen_trades:
                return None
            self._remember_trade((report.i, report.t))
            order.filled = max(order.filled, report.z)
            return Fill(client_id, order.side, report.L, report.l, report.n, report.N, report.m)
        order.order_id = report.i
        order.filled = max(order.filled, report.z)
        if not report.x.known:
            self.ledger.on_unknown_value("executionReport", "x", report.x.value, client_id)
        fill = None
        if self._is_fill(report) and (report.i, report.t) not in self._seen_trades:
            self._remember_trade((report.i, report.t))
            fill = Fill(client_id, order.side, report.L, report.l, report.n, report.N, report.m)
        elif report.x is ExecutionType.REPLACED:
            self._apply_amendment(order, report)
        elif report.x is ExecutionType.TRADE_PREVENTION:
            self.prevented_matches += 1
        if report.A is not None:
            order.prevented = max(order.prevented, report.A)
        status = self._venue_status(report.X, "executionReport", client_id)
        if status is not None:
            self._advance(order, status, now)
        return fill

    def _is_fill(self, report: ExecutionReport) -> bool:
        """A TRADE report that moved quantity. Binance has sent TRADE reports with a zero
        last quantity; those are no fill (the cumulative quantity still counts)."""
        if report.x is not ExecutionType.TRADE:
            return False
        if report.l <= 0.0:
            self.zero_qty_trades += 1
            return False
        return True

    def _follow_amendment(self, report: ExecutionReport) -> ManagedOrder | None:
        """An amendment may give the order a new client id ("By default, amended orders
        get a random new client order ID"): the order is found by its old id (`C`) or
        its order id, and known by the new one from now on."""
        order = self.live.get(report.C) if report.C else None
        if order is None:
            order = next((o for o in self.live.values() if o.order_id == report.i), None)
        if order is None:
            return None
        del self.live[order.client_id]
        order.client_id = report.c
        self.live[report.c] = order
        return order

    def _apply_amendment(self, order: ManagedOrder, report: ExecutionReport) -> None:
        """The new quantity (`q`) is the order's from now on: the position limit counts it,
        and the strategy sees a quote that is no longer the size it wants."""
        if report.q > 0.0 and order.qty > 0.0 and order.qty_steps > 0:
            step = order.qty / order.qty_steps
            order.qty_steps = round(report.q / step)
        order.qty = report.q
        order.amendments += 1
        self.amendments += 1

    def _venue_status(self, status: OrderStatus, message: str, client_id: str,
                      ask_venue: bool = True) -> Status | None:
        """The venue's status in the OMS's terms; None (counted, and the order queued to
        be asked about over REST) for a status the node does not know."""
        if status.known:
            return _VENUE_STATUS[status]
        self.ledger.on_unknown_value(message, "X" if message == "executionReport" else "status", status.value,
                                     client_id)
        if ask_venue:
            self.verify(client_id)
        return None

    def verify(self, client_id: str) -> None:
        """Queues an order for the engine to ask the venue about (bounded)."""
        if client_id in self.to_verify:
            return
        self.to_verify[client_id] = None
        if len(self.to_verify) > TO_VERIFY_KEPT:
            self.to_verify.popitem(last=False)
        if self.on_verify is not None:
            self.on_verify(client_id)

    def on_verified(self, venue_order: OpenOrder, now: float) -> None:
        """The venue's answer to `GET /api/v3/order` for an order queued in `to_verify`."""
        self.to_verify.pop(venue_order.clientOrderId, None)
        order = self.live.get(venue_order.clientOrderId)
        if order is None:
            return
        order.order_id = venue_order.orderId
        order.filled = max(order.filled, venue_order.executedQty)
        # Not asked again if the answer is unreadable too: the periodic reconcile goes on listing it.
        status = self._venue_status(venue_order.status, "queryOrder", order.client_id, ask_venue=False)
        if status is not None:
            self._advance(order, status, now)

    # -- reconciliation -----------------------------------------------------------
    def reconcile(self, venue_open: list[OpenOrder], now: float, grace_s: float) -> tuple[list[str], list[str]]:
        """Aligns with the venue's open orders. Returns (adopted client ids,
        foreign client ids). Orders younger than `grace_s` are left alone: the
        listing may predate them."""
        on_venue = {o.clientOrderId: o for o in venue_open}
        for order in list(self.live.values()):
            if order.client_id not in on_venue and now - order.sent_at > grace_s and not order.may_still_land(now):
                self._advance(order, Status.GONE, now)
        adopted, foreign = [], []
        for cid, venue_order in on_venue.items():
            order = self.live.get(cid)
            if order is not None:
                order.order_id = venue_order.orderId
                order.filled = max(order.filled, venue_order.executedQty)
                # Listed as open: at least accepted, whatever status the venue gives.
                status = self._venue_status(venue_order.status, "openOrders", cid)
                self._advance(order, status if status is not None else Status.NEW, now)
                continue
            parsed = client_ids.parse(cid)
            if parsed is None or parsed.node != self.node_id:
                foreign.append(cid)
                continue
            # Ours from an earlier run: track it so it is cancelled, never lost.
            status = self._venue_status(venue_order.status, "openOrders", cid)
            self.live[cid] = ManagedOrder(cid, venue_order.side.value, 0, 0, venue_order.price, venue_order.origQty,
                                          parsed.epoch, None, now, status if status is not None else Status.NEW,
                                          venue_order.orderId, venue_order.executedQty, acked_at=now)
            adopted.append(cid)
        return adopted, foreign

    def _remember_trade(self, key: tuple[int, int]) -> None:
        """Trade ids seen, for dedup; bounded, since a node runs for weeks."""
        self._seen_trades[key] = None
        if len(self._seen_trades) > SEEN_TRADES_KEPT:
            self._seen_trades.popitem(last=False)

    def _advance(self, order: ManagedOrder, status: Status, now: float) -> None:
        if order.status in TERMINAL:
            return
        if status in TERMINAL:
            order.status = status
            order.finished_at = now
            self.outcomes[status.value] = self.outcomes.get(status.value, 0) + 1
            del self.live[order.client_id]
            if len(self.finished) == self.finished.maxlen:
                self._finished_by_id.pop(self.finished[0].client_id, None)
            self.finished.append(order)
            self._finished_by_id[order.client_id] = order
        elif _RANK[status] > _RANK[order.status]:
            order.status = status
