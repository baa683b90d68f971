"""The lease gate: the one code path that creates orders on the venue.

`OrderGate.send` is the only caller of `VenueRest._post_order_unguarded`
(a test keeps it that way). At the moment of sending it asks the lease
whether this node may trade now, on the monotonic clock, and runs the risk
checks on the state of that instant; a refusal is counted and raised, and
nothing reaches the venue.

Every order it lets through is also fenced at the venue (DESIGN §2.2): its
`timestamp` is the venue's time as `venue_clock.py` estimates it and its
`recvWindow` the lease's remaining life less that estimate's uncertainty,
so an order delayed past its sender's lease (a frozen process, a slow
socket) is refused by the venue itself. Without a good enough estimate of
the venue's clock, nothing is sent.

Before that, every order is checked against the venue's own rules for the
symbol (filters.py): its status (nothing is sent unless it is TRADING) and
every filter `exchangeInfo` publishes. An order the venue would refuse is
refused here, counted by the rule it breaks (`symbol-HALT`,
`filter-PRICE_FILTER`, ...), and never sent.
"""
import time
from collections import deque
from typing import Callable

from ..config import RiskSection
from ..coordinator.lease import Lease
from . import risk
from . import venue_errors as ve
from .filters import AccountContext, OrderIntent
from .instrument import Instrument
from .messages import OrderSide, OrderType
from .oms import ManagedOrder, Oms
from .rest import VenueRest
from .venue_clock import VenueClock, format_window


class NotPermitted(Exception):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason if not detail else f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


_SIDES = {"BUY": OrderSide.BUY, "SELL": OrderSide.SELL}


class OrderGate:
    def __init__(self, rest: VenueRest, instrument: Instrument, oms: Oms, limits: RiskSection,
                 lease: Callable[[], Lease | None], risk_view: Callable[[], risk.RiskView],
                 max_orders_per_10s: int, venue_clock: VenueClock, max_recv_window_ms: float,
                 clock: Callable[[], float] = time.monotonic, enabled: Callable[[], bool] = lambda: True,
                 symbol_refusal: Callable[[], str | None] = lambda: None,
                 account_context: Callable[[], AccountContext] | None = None):
        self._rest = rest
        self._instrument = instrument
        self._oms = oms
        self._limits = limits
        self._lease = lease
        self._risk_view = risk_view
        self._clock = clock
        self._venue_clock = venue_clock
        self._enabled = enabled  # the failover controller's switch: off the moment it says stop
        self._max_recv_window_ms = max_recv_window_ms
        # The engine's word on the symbol (its status, or the venue having said it is closed), and what
        # the account holds, for the filters that count open orders or the position.
        self._symbol_refusal = symbol_refusal
        self._account_context = account_context
        self._max_per_10s = max_orders_per_10s
        self._recent_sends: deque[float] = deque()
        self.refusals: dict[str, int] = {}
        self.sent = 0
        self.in_flight = 0
        self.in_flight_accept_by: dict[str, float] = {}  # client id -> when the venue can no longer accept it
        self.closed_reason: str | None = None

    def order_budget(self) -> int:
        """Orders that may still be sent in the current 10 s window."""
        window_start = self._clock() - 10.0
        while self._recent_sends and self._recent_sends[0] < window_start:
            self._recent_sends.popleft()
        return self._max_per_10s - len(self._recent_sends)

    def close(self, reason: str) -> None:
        """Refuses every order from now on (shutdown); sends already under way finish."""
        self.closed_reason = reason

    def _refuse(self, reason: str, detail: str = "") -> NotPermitted:
        self.refusals[reason] = self.refusals.get(reason, 0) + 1
        return NotPermitted(reason, detail)

    def set_instrument(self, instrument: Instrument) -> None:
        """The venue's rules changed (a periodic exchangeInfo): the next order is checked against them."""
        self._instrument = instrument

    def venue_rules_refusal(self, order: ManagedOrder) -> NotPermitted | None:
        """Would the venue refuse this order for the symbol's state or a filter? Counted if so."""
        symbol_reason = self._symbol_refusal()
        if symbol_reason is not None:
            return self._refuse(symbol_reason, f"{self._instrument.symbol} is not trading")
        rules = self._instrument.rules
        if rules is None:
            return None
        intent = OrderIntent(_SIDES.get(order.side) or OrderSide(order.side), OrderType.LIMIT_MAKER,
                             order.qty_steps * self._instrument.step_size,
                             order.price_ticks * self._instrument.tick_size)
        account = self._account_context() if self._account_context is not None else AccountContext()
        refusal = rules.check(intent, account)
        return None if refusal is None else self._refuse(refusal.reason, refusal.detail)

    async def send(self, order: ManagedOrder) -> None:
        """Sends a LIMIT_MAKER order (a quote never takes). Raises NotPermitted
        or a venue error; the OMS records every outcome."""
        reason = self.closed_reason or (None if self._enabled() else "not-primary") or risk.check(self._limits, self._risk_view(),
                                                  risk.OrderIntent(order.side, order.price, order.qty))
        if reason is not None:
            raise self._refuse(reason)
        refused = self.venue_rules_refusal(order)
        if refused is not None:
            raise refused
        # Stay under the venue's order-rate limit rather than be banned by it.
        if self.order_budget() <= 0:
            raise self._refuse("order-rate")
        params = {
            "symbol": self._instrument.symbol, "side": order.side, "type": "LIMIT_MAKER",
            "quantity": self._instrument.qty_text(order.qty_steps),
            "price": self._instrument.price_text(order.price_ticks),
            "newClientOrderId": order.client_id, "newOrderRespType": "RESULT",
        }
        lease = self._lease()
        now = self._clock()
        if lease is None or lease.epoch != order.epoch or not lease.may_trade(now):
            raise self._refuse("no-lease" if lease is None else "stale-epoch" if lease.epoch != order.epoch
                               else "lease-expired")
        fence = self._venue_clock.fence(now, lease.time_left(now), self._max_recv_window_ms)
        if fence is None:
            raise self._refuse(self._venue_clock.problem(now) or "lease-too-short")
        params["timestamp"] = fence.timestamp_ms
        params["recvWindow"] = format_window(fence.window_ms)
        order.sent_at = now
        order.accept_by = fence.accept_by
        self._recent_sends.append(now)
        self._oms.on_sent(order)
        self.sent += 1
        self.in_flight += 1
        self.in_flight_accept_by[order.client_id] = fence.accept_by
        try:
            reply = await self._rest._post_order_unguarded(params)
        except ve.OutcomeUnknown:
            self._oms.on_outcome_unknown(order.client_id, self._clock())
            raise
        except ve.VenueError:
            self._oms.on_rejected(order.client_id, self._clock())
            raise
        finally:
            self.in_flight -= 1
            self.in_flight_accept_by.pop(order.client_id, None)
        self._oms.on_reply(reply, self._clock())
