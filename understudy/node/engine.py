"""One node's engine: it wires the venue adapter, the local book, account
state, strategy, risk and the OMS together and runs them.

Start-up is crash-safe: subscribe to user data, sync the account, fetch open
orders and cancel what an earlier run of this node left resting, sync the
book, check risk — and only then quote. Every order goes through the lease
gate (`order_gate.py`); cancels go by client id.

The symbol's state is the venue's: nothing is quoted unless exchangeInfo
says TRADING (read at start, then every `market.exchange_info_interval_s`,
and at once when an order is refused with "Market is closed."); in any other
state the node cancels its own orders and stays halted, the state named in
its halt reasons. Every order is checked against every filter the venue
publishes before it is sent (order_gate.py, filters.py).

Every loop runs supervised (`supervision.py`): one that fails unexpectedly
is logged, counted and restarted with a backoff; one that keeps failing is
fatal — the node ends its lease, stops trading and exits for systemd to
restart it. A bug is not a PanicStop: the latch is for risk and operators.
"""
import asyncio
import datetime
import time

import aiohttp
import msgspec

from .. import logs
from ..config import NodeConfig, Secrets
from ..coordinator.lease import Lease
from ..supervision import Policy, Supervisor
from . import risk, strategy
from . import venue_errors as ve
from .account import AccountState, DayReference
from .book import LocalBook
from . import client_ids as client_ids_mod
from .client_ids import ClientIdFactory
from .decode_ledger import DecodeLedger
from .filters import AccountContext, symbol_refusal
from .instrument import Instrument
from .marketdata import MarketData
from .messages import AccountPosition, ExecutionReport, ExecutionType, OpenOrder, OrderSide
from .oms import ManagedOrder, Oms
from .order_gate import NotPermitted, OrderGate
from .rest import VenueRest
from .state_store import StateStore
from .stats_log import StatsLog
from .userstream import UserStream
from .venue_clock import VenueClock

log = logs.get("engine")
RECONCILE_GRACE_S = 2.0
STARTUP_TIMEOUT_S = 15.0
AVG_PRICE_MAX_AGE_S = 120.0  # an older venue average price is not used; the book's mid stands in
VERIFICATIONS_AT_ONCE = 8  # orders being asked about over REST at the same time, at most


class NodeEngine:
    def __init__(self, config: NodeConfig, secrets: Secrets, clock=time.monotonic):
        self.cfg = config
        self.secrets = secrets
        self.clock = clock
        self.node_id = config.node.id
        self.book = LocalBook(config.market.symbol)
        self.ledger = DecodeLedger()  # everything the node could not read from the venue
        self.oms = Oms(self.node_id, self.ledger, on_verify=self._schedule_verify)
        self.ids = ClientIdFactory(self.node_id, time.time_ns() // 1_000_000)
        self.store = StateStore(config.node.state_dir, self.node_id)
        self.solo = config.node.mode == "solo"
        self._solo_lease = Lease.solo(0) if self.solo else None
        self.trading_lock = None  # cluster mode: the TradingLock the failover controller drives
        self.trading_enabled = self.solo  # cluster mode: only while the controller says primary
        self.role_entries: dict[str, int] = {}  # how often each role was entered: self-fences for /metrics
        self.stats = StatsLog(self)
        self.role = "starting"
        self.orphans_cancelled = 0
        self.quoting = False
        self.halt_reasons: list[str] = ["starting"]
        self.panic_reason: str | None = None
        self.fills = 0
        self.filled_qty = {"BUY": 0.0, "SELL": 0.0}
        self.cancel_errors = 0
        self.instrument: Instrument | None = None
        self.account: AccountState | None = None
        self.day: DayReference | None = None
        self.started_at = time.time()
        self._requote = asyncio.Event()
        self._stop = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self.rest: VenueRest | None = None
        self.gate: OrderGate | None = None
        self.marketdata: MarketData | None = None
        self.userstream: UserStream | None = None
        self.venue_clock = VenueClock(config.venue.max_clock_uncertainty_ms, config.venue.unreachable_after_s)
        self.supervisor = Supervisor(self._fatal)
        self.on_fatal = None  # set by the process (run.py): ends the lease and makes the node exit
        self.orphan_sweeps_failed = 0
        self._foreign_seen: set[str] = set()  # other clients' orders already reported
        # The symbol as the venue last described it, and when the venue last said it was closed.
        self.market_closed_at: float | None = None  # monotonic; cleared by an exchangeInfo read after it
        self.rules_read_at: float | None = None
        self.rules_refresh = asyncio.Event()  # set to read exchangeInfo now
        self.exchange_info_failures = 0
        self.market_closed_refusals = 0
        self.avg_price: tuple[float, float] | None = None  # (price, monotonic time read)
        self.foreign_open = (0, 0.0)  # other clients' open orders on the symbol, and their open BUY quantity
        self._verifying: set[str] = set()
        self.verifications = 0

    @property
    def role(self) -> str:
        return self._role

    @role.setter
    def role(self, role: str) -> None:
        # Set by the failover controller (cluster) or _set_role (solo); counted
        # for /metrics, and the ops stats line is cut so each is one role's.
        if role == getattr(self, "_role", None):
            return
        previous = getattr(self, "_role", None)
        self._role = role
        self.role_entries[role] = self.role_entries.get(role, 0) + 1
        if previous is not None:
            self.stats.cut(f"role {previous} -> {role}", role=previous)

    # -- views -------------------------------------------------------------------
    def risk_view(self) -> risk.RiskView:
        now = self.clock()
        mid = self.book.mid() if self.book.is_live() else None
        open_orders, open_buy_qty, open_sell_qty = self.oms.exposure()
        return risk.RiskView(
            mid=mid, book_age_s=self.book.age(now), position=self.account.position if self.account else 0.0,
            open_orders=open_orders, open_buy_qty=open_buy_qty, open_sell_qty=open_sell_qty,
            daily_pnl=self.daily_pnl(mid), panic=self.panic_reason is not None)

    def daily_pnl(self, mid: float | None = None) -> float:
        if self.account is None or self.day is None:
            return 0.0
        return self.account.pnl(self.day, mid if mid is not None else self.book.mid())

    @property
    def lease(self) -> Lease | None:
        if self.solo:
            return self._solo_lease
        return self.trading_lock.lease if self.trading_lock is not None else None

    def set_trading(self, enabled: bool) -> None:
        """The failover controller's switch. Off takes effect at once: the
        quote loop and the gate both see it before the next order."""
        self.trading_enabled = enabled
        self._evaluate_quoting()
        self._requote.set()

    def _set_role(self, role: str) -> None:
        if not self.solo:
            return  # in a cluster the failover controller owns the role
        if role != self.role:
            log.info("role changed", previous=self.role, new=role)
        self.role = role
        logs.CONTEXT.role = role
        logs.CONTEXT.epoch = self.lease.epoch if self.lease else None

    # -- lifecycle ---------------------------------------------------------------
    async def start(self) -> None:
        """Connects and syncs; returns once the node is quoting or halted."""
        cfg = self.cfg
        self._session = aiohttp.ClientSession()
        self.rest = VenueRest(self._session, cfg.venue.rest_url, self.secrets.api_key, self.secrets.api_secret,
                              cfg.venue.recv_window_ms, cfg.venue.request_timeout_s,
                              venue_time_ms=self._venue_time_ms, ledger=self.ledger)
        self.panic_reason = self.store.panic()
        self.instrument = self._instrument_from(await self.rest.exchange_info(cfg.market.symbol))
        self.rules_read_at = self.clock()
        self._note_rules(None, self.instrument)
        self.account = AccountState(self.instrument.base, self.instrument.quote, cfg.risk.inventory_target)
        self.gate = OrderGate(self.rest, self.instrument, self.oms, cfg.risk, lambda: self.lease, self.risk_view,
                              cfg.venue.max_orders_per_10s, self.venue_clock, cfg.venue.recv_window_ms,
                              self.clock, enabled=lambda: self.trading_enabled, symbol_refusal=self.symbol_problem,
                              account_context=self.account_context)
        for _ in range(3):  # a first estimate of the venue's clock before anything is signed with it
            await self.probe_venue_clock()
        self._spawn(self._venue_clock_loop, "venue-clock")

        # User data first, so nothing that happens during the REST sync is missed.
        self.userstream = UserStream(cfg.venue.ws_api_url, self.secrets.api_key, self.secrets.api_secret,
                                     self._on_execution, self._on_position, self._on_user_resubscribed,
                                     ledger=self.ledger, on_missed=self._on_user_event_missed)
        self._spawn(lambda: self.userstream.run(self._stop), "userstream")
        await asyncio.wait_for(self.userstream.subscribed.wait(), STARTUP_TIMEOUT_S)

        await self.sync_account()
        leftovers, foreign = self.oms.reconcile(await self.rest.open_orders(cfg.market.symbol), self.clock(), 0.0)
        if leftovers and not self.solo:
            # Not ours to cancel without the lock: the lock holder's orphan sweep takes them.
            log.warning("orders of an earlier run of this node are resting", orders=leftovers)
        elif leftovers:
            log.warning("cancelling orders an earlier run left resting", orders=leftovers)
            await self.cancel_own_orders("restart")
        if foreign:
            log.warning("open orders on the account that are not this node's", orders=foreign)

        self.marketdata = MarketData(self.book, self.rest, cfg.venue.stream_url, cfg.market.depth_stream,
                                     cfg.market.snapshot_limit, self._on_book_update, self.clock, ledger=self.ledger)
        self._spawn(lambda: self.marketdata.run(self._stop), "marketdata")
        deadline = self.clock() + STARTUP_TIMEOUT_S
        while not (self.book.is_live() and self.book.age(self.clock()) < cfg.risk.max_book_age_s):
            if self.clock() > deadline:
                raise TimeoutError("the order book did not sync in time")
            await asyncio.sleep(0.02)

        self._spawn(self._reconcile_loop, "reconcile")
        self._spawn(self._exchange_info_loop, "exchange-info")
        self._spawn(lambda: self.stats.run(self._stop), "stats")
        self._spawn(self._quote_loop, "quoter")
        self._evaluate_quoting()

    def _spawn(self, run, name: str) -> asyncio.Task:
        """Every engine loop is restartable (`run` makes a fresh one): its state lives in the OMS,
        the book and the account, not in the loop."""
        return self.supervisor.spawn(name, run, Policy.RESTART)

    def stop_sending(self, reason: str) -> None:
        """No order leaves from this instant on, whatever else is still running."""
        self.trading_enabled = False
        self.quoting = False
        if self.gate is not None:
            self.gate.close(reason)

    def _fatal(self, reason: str) -> None:
        """A loop that cannot be kept alive: the process's handler stops sending, ends the lease
        and makes the node exit (alone, as in a benchmark, it only stops sending)."""
        if self.on_fatal is not None:
            self.on_fatal(reason)
        else:
            self.stop_sending(f"fatal: {reason}")

    async def stop(self) -> None:
        """Stops quoting, cancels this node's orders, closes connections."""
        self.quoting = False
        self.halt_reasons = ["stopping"]
        if self.gate is not None:
            self.gate.close("stopping")
            await self._sends_settled()
        if self.rest is not None and self.oms.live:
            await self.cancel_own_orders("shutdown")
        self.stats.cut("stopping")
        self._stop.set()
        tasks = self.supervisor.cancel_all()
        # Bounded: a loop that swallows its cancellation (Python 3.11) must not hold the shutdown.
        await asyncio.wait(tasks, timeout=2.0) if tasks else None
        if self._session is not None:
            await self._session.close()

    async def _sends_settled(self) -> None:
        """Waits until no order send of ours can still land: each one already
        handed to the venue is answered, or its recvWindow fence has passed
        (the venue refuses it from then on). Bounded by the request timeout."""
        deadline = self.clock() + self.cfg.venue.request_timeout_s + 0.5
        while self.gate.in_flight and self.clock() < deadline:
            if max(self.gate.in_flight_accept_by.values(), default=0.0) <= self.clock():
                return  # unanswered, but the venue can no longer accept any of them
            await asyncio.sleep(0.005)

    async def sends_settled(self) -> None:
        """Returns once no order of this node can still reach the matching
        engine: every send answered, or its recvWindow fence passed."""
        if self.gate is not None:
            await self._sends_settled()
        unresolved = self._unresolved_sends()
        if unresolved:
            await asyncio.sleep(unresolved - self.clock())

    def _unresolved_sends(self) -> float:
        """When the last send whose outcome is unknown stops being acceptable to the venue (0 if none)."""
        now = self.clock()
        return max((o.accept_by for o in self.oms.live.values() if o.may_still_land(now)), default=0.0)

    # -- the venue's clock -------------------------------------------------------
    def _venue_time_ms(self) -> float:
        """Venue time for signed requests; the wall clock until the first probe."""
        estimate = self.venue_clock.venue_time_ms(self.clock())
        return estimate if estimate is not None else time.time() * 1000

    async def probe_venue_clock(self) -> None:
        sent_at = self.clock()
        try:
            server_ms = await self.rest.server_time()
        except ve.VenueError as exc:
            self.venue_clock.on_failure()
            log.debug("venue clock probe failed", error=str(exc))
            return
        self.venue_clock.on_round_trip(sent_at, server_ms, self.clock())

    async def _venue_clock_loop(self) -> None:
        """Also the venue path's pulse: a node that cannot reach the venue's REST API is not ready."""
        while True:
            await asyncio.sleep(self.cfg.venue.clock_probe_interval_s)
            await self.probe_venue_clock()
            if self.venue_clock.problem(self.clock()) is not None:
                self._evaluate_quoting()

    # -- account -----------------------------------------------------------------
    async def sync_account(self) -> None:
        self.account.on_account_info(await self.rest.account())
        day = datetime.datetime.now(datetime.UTC).date().isoformat()
        if self.day is None or self.day.day != day:
            self.day = self.store.day_reference(day, self.account.total(self.instrument.base),
                                                self.account.total(self.instrument.quote))

    async def _reconcile_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.venue.reconcile_interval_s)
            try:
                await self.reconcile()
            except ve.VenueError as exc:
                log.warning("reconcile failed", error=str(exc))

    async def reconcile(self) -> None:
        await self.sync_account()
        venue_open = await self.rest.open_orders(self.cfg.market.symbol)
        adopted, foreign = self.oms.reconcile(venue_open, self.clock(), RECONCILE_GRACE_S)
        self._note_foreign(venue_open, foreign)
        if adopted:
            log.warning("reconcile found untracked orders of this node", orders=adopted)
        await self.sweep_orphans([o.clientOrderId for o in venue_open])
        self._evaluate_quoting()

    def holds_lock(self) -> bool:
        """Holding a lease whose deadline has not passed: from the instant the
        lock is acquired, through the takeover steps, whether quoting or not."""
        lease = self.lease
        return not self.solo and lease is not None and self.clock() < lease.safe_deadline

    def _older_epoch(self, client_ids: list[str]) -> list[str]:
        """Understudy's orders of an epoch before ours. Orders that name no epoch are another
        client's of the same account (the desk's own, an OCO): the takeover's protective
        cancel-all takes them, but a primary does not fight them afterwards."""
        epoch = self.lease.epoch
        older = []
        for cid in client_ids:
            parsed = client_ids_mod.parse(cid)
            if parsed is not None and parsed.epoch < epoch:
                older.append(cid)
            elif parsed is None and cid not in self._foreign_seen:
                self._foreign_seen.add(cid)
                log.warning("an open order that is not Understudy's rests on the account; left alone",
                            client_id=cid)
        return older

    async def sweep_orphans(self, client_ids: list[str]) -> int:
        """The fencing a venue without fencing tokens allows: the lock holder
        cancels any order of an older epoch, by client id, whenever one shows up — in the protective cancel's listing, on
        the user data stream, in a reconcile — from the moment it holds the
        lock, not only once it quotes. Returns how many it found."""
        if not self.holds_lock():
            return 0
        orphans = self._older_epoch(client_ids)
        for cid in orphans:
            log.warning("cancelling an older epoch's order", client_id=cid, epoch=self.lease.epoch if self.lease else None)
            self.orphans_cancelled += 1
            try:
                await self.rest.cancel_order(self.cfg.market.symbol, cid)
            except ve.UnknownOrder:
                pass
            except ve.VenueError as exc:
                self.orphan_sweeps_failed += 1
                log.warning("orphan cancel failed", client_id=cid, error=str(exc))
                continue
            self.oms.on_cancel_unknown_order(cid, self.clock())
        return len(orphans)

    async def protective_cancel(self) -> int:
        """Takeover step one: whatever rests on the symbol goes, whoever sent
        it (order lists too). Only a fresh lease holder calls this. An order
        of an older epoch that the listing afterwards still shows (one that
        was in flight during the cancel-all) is swept at once. Returns how
        many older-epoch orders are still open: the step is done at zero."""
        try:
            cancelled = await self.rest.cancel_all_orders(self.cfg.market.symbol)
        except ve.UnknownOrder:
            cancelled = []  # nothing was open
        venue_open = await self.rest.open_orders(self.cfg.market.symbol)
        self.oms.reconcile(venue_open, self.clock(), 0.0)
        swept = await self.sweep_orphans([o.clientOrderId for o in venue_open])
        left = self._older_epoch([o.clientOrderId for o in await self.rest.open_orders(self.cfg.market.symbol)]) \
            if swept else []
        log.info("protective cancel done", cancelled=len(cancelled), swept_after=swept, older_left=len(left))
        return len(left)

    # -- the symbol as the venue describes it ------------------------------------------
    def symbol_problem(self) -> str | None:
        """Why no order may be sent on the symbol now, as the venue says it; None while it trades.
        The venue having refused an order with "Market is closed." counts until an exchangeInfo
        read after that refusal says TRADING again."""
        if self.instrument is None or self.instrument.rules is None:
            return None  # a hand-built instrument (tests, benchmarks): no venue word on its status
        reason = symbol_refusal(self.instrument.rules.status)
        if reason is not None:
            return reason
        if self.market_closed_at is not None:
            return "symbol-closed-by-venue"
        return None

    def _note_rules(self, previous: Instrument | None, current: Instrument) -> None:
        rules = current.rules
        if previous is None or previous.rules is None or previous.rules.status is not rules.status:
            level = log.info if rules.status.known and rules.accepts_new_orders else log.warning
            level("symbol status", symbol=current.symbol, status=rules.status.value,
                  previous=previous.rules.status.value if previous is not None and previous.rules else None)
            if not rules.status.known:
                self.ledger.on_unknown_value("exchangeInfo", "status", rules.status.value, current.symbol)
        known_before = {u.filter_type for u in previous.rules.unknown} if previous and previous.rules else set()
        for unknown in rules.unknown:
            if unknown.filter_type not in known_before:
                self.ledger.on_unknown_value("exchangeInfo", "filterType", unknown.filter_type, current.symbol)
        if previous is not None and (previous.tick_size, previous.step_size) != (current.tick_size, current.step_size):
            log.warning("the venue changed the symbol's tick or step size", tick=current.tick_size,
                        step=current.step_size, previous_tick=previous.tick_size, previous_step=previous.step_size)

    def _instrument_from(self, info) -> Instrument:
        """The symbol's rules from exchangeInfo; a filter of a known type that does not decode is
        counted like any undecodable reply and raised as LookupError (no rules, no trading on them)."""
        try:
            return Instrument.from_exchange_info(info, self.cfg.market.symbol)
        except msgspec.DecodeError as exc:
            self.ledger.on_undecodable("rest", "GET /api/v3/exchangeInfo filters", exc)
            raise LookupError(f"exchangeInfo: a filter of {self.cfg.market.symbol} does not decode: {exc}") from exc

    async def refresh_rules(self) -> None:
        """Reads exchangeInfo (and the average price, if a percent-price filter needs it) and acts
        on a change of the symbol's status or filters at once."""
        read_at = self.clock()
        instrument = self._instrument_from(await self.rest.exchange_info(self.cfg.market.symbol))
        previous, self.instrument = self.instrument, instrument
        self.rules_read_at = read_at
        if self.market_closed_at is not None and read_at > self.market_closed_at:
            if instrument.rules.accepts_new_orders:
                log.warning("exchangeInfo says the symbol trades again after the venue said it was closed",
                            status=instrument.rules.status.value)
            self.market_closed_at = None  # exchangeInfo's word, read after the refusal, is the newer one
        if self.gate is not None:
            self.gate.set_instrument(instrument)
        self._note_rules(previous, instrument)
        rules = instrument.rules
        if rules.get("PERCENT_PRICE") is not None or rules.get("PERCENT_PRICE_BY_SIDE") is not None:
            try:
                avg = await self.rest.avg_price(self.cfg.market.symbol)
                self.avg_price = (avg.price, self.clock())
            except ve.VenueError as exc:
                log.debug("average price unavailable; the book's mid stands in", error=str(exc))
        self._evaluate_quoting()
        self._requote.set()

    async def _exchange_info_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self.rules_refresh.wait(), self.cfg.market.exchange_info_interval_s)
            except asyncio.TimeoutError:
                pass
            self.rules_refresh.clear()
            try:
                await self.refresh_rules()
            except (ve.VenueError, LookupError) as exc:
                self.exchange_info_failures += 1
                log.warning("exchangeInfo read failed; the last rules stand", error=str(exc))

    def on_market_closed(self, client_id: str | None = None) -> None:
        """The venue refused an order because the symbol is not trading: halt now (cancel what
        is ours), and read exchangeInfo to learn the symbol's state."""
        self.market_closed_refusals += 1
        if self.market_closed_at is None:
            log.warning("the venue says the market is closed: halting and reading exchangeInfo",
                        client_id=client_id)
        self.market_closed_at = self.clock()
        self.rules_refresh.set()
        self._evaluate_quoting()
        self._requote.set()

    def reference_price(self) -> float | None:
        """What PERCENT_PRICE(_BY_SIDE) judges an order against: the venue's average price when
        read recently, else the local book's mid (within bps of it on a liquid symbol)."""
        if self.avg_price is not None and self.clock() - self.avg_price[1] <= AVG_PRICE_MAX_AGE_S:
            return self.avg_price[0]
        return self.book.mid() if self.book.is_live() else None

    def account_context(self) -> AccountContext:
        """The account at the venue as this node knows it, for the filters that count orders or
        the position: its own orders plus other clients' seen in the last listing."""
        _, buy_qty, _ = self.oms.exposure()
        open_orders = len(self.oms.live)  # an order whose cancel is unanswered still counts at the venue
        foreign_orders, foreign_buy_qty = self.foreign_open
        base_held = self.account.total(self.instrument.base) if self.account is not None else 0.0
        return AccountContext(open_orders=open_orders + foreign_orders,
                              open_orders_exchange=open_orders + foreign_orders, base_held=base_held,
                              open_buy_qty=buy_qty + foreign_buy_qty, reference_price=self.reference_price())

    def _note_foreign(self, venue_open: list[OpenOrder], foreign: list[str]) -> None:
        ids = set(foreign)
        others = [o for o in venue_open if o.clientOrderId in ids]
        self.foreign_open = (len(others), sum(o.origQty - o.executedQty for o in others if o.side is OrderSide.BUY))

    # -- orders the venue said something unreadable about ---------------------------------
    def _schedule_verify(self, client_id: str) -> None:
        if client_id in self._verifying or len(self._verifying) >= VERIFICATIONS_AT_ONCE:
            return  # the periodic reconcile covers what is not asked about now
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a unit test driving the OMS): the reconcile covers it
        self._verifying.add(client_id)
        loop.create_task(self._verify(client_id))

    async def _verify(self, client_id: str) -> None:
        """A one-shot query of one order: nothing may escape it unseen."""
        try:
            self.verifications += 1
            venue_order = await self.rest.query_order(self.cfg.market.symbol, client_id)
            self.oms.on_verified(venue_order, self.clock())
        except ve.UnknownOrder:
            self.oms.to_verify.pop(client_id, None)
            self.oms.on_cancel_unknown_order(client_id, self.clock())
        except ve.VenueError as exc:
            log.warning("could not ask the venue about an order", client_id=client_id, error=str(exc))
        except Exception as exc:  # noqa: BLE001
            self.supervisor.failures["order-verify"] += 1
            log.exception("asking the venue about an order failed unexpectedly", client_id=client_id,
                          error=repr(exc))
        finally:
            self._verifying.discard(client_id)
        self._requote.set()

    def _on_user_event_missed(self) -> None:
        """A user-data event did not decode: a fill or a status may be missing; REST has it."""
        if self.account is not None and self.account.synced:
            asyncio.get_running_loop().create_task(self._safe_reconcile())

    def readiness(self) -> dict[str, bool]:
        now = self.clock()
        problems = risk.state_problems(self.cfg.risk, self.risk_view())
        return {
            "market_data": self.book.is_live() and self.book.age(now) <= self.cfg.risk.max_book_age_s,
            "account": bool(self.account and self.account.synced and self.userstream and self.userstream.connected),
            "risk": not problems,
            "venue": self.venue_problem() is None,
        }

    def venue_problem(self) -> str | None:
        """Why orders cannot reach the venue now: its REST path down, a ban, or its clock unknown."""
        now = self.clock()
        if self.rest is not None and self.rest.banned_until > now:
            return "venue-banned"
        return self.venue_clock.problem(now)

    def _on_user_resubscribed(self) -> None:
        if self.account is not None and self.account.synced:
            asyncio.get_running_loop().create_task(self._safe_reconcile())

    async def _safe_reconcile(self) -> None:
        """A one-shot task: nothing may escape it unseen; the reconcile loop tries again anyway."""
        try:
            await self.reconcile()
        except ve.VenueError as exc:
            log.warning("reconcile after resubscribe failed", error=str(exc))
        except Exception as exc:  # noqa: BLE001
            self.supervisor.failures["reconcile-after-resubscribe"] += 1
            log.exception("reconcile after resubscribe failed unexpectedly", error=repr(exc))

    # -- stream callbacks --------------------------------------------------------
    def _on_execution(self, report: ExecutionReport) -> None:
        if report.x is ExecutionType.NEW and self.oms.get(report.c) is None and self.holds_lock():
            asyncio.get_running_loop().create_task(self._sweep_quietly(report.c))
        fill = self.oms.on_execution(report, self.clock())
        if fill is not None:
            self.fills += 1
            self.filled_qty[fill.side] += fill.qty
            log.info("fill", client_id=fill.client_id, side=fill.side, price=fill.price, qty=fill.qty,
                     maker=fill.is_maker)
            self._requote.set()

    async def _sweep_quietly(self, client_id: str) -> None:
        try:
            await self.sweep_orphans([client_id])
        except Exception as exc:  # noqa: BLE001 - a one-shot sweep; the reconcile loop sweeps again
            self.orphan_sweeps_failed += 1
            self.supervisor.failures["orphan-sweep"] += 1
            log.exception("orphan sweep failed", client_id=client_id, error=repr(exc))

    def _on_position(self, event: AccountPosition) -> None:
        self.account.on_position(event)
        self._requote.set()

    def _on_book_update(self) -> None:
        self._requote.set()

    # -- quoting -----------------------------------------------------------------
    def _evaluate_quoting(self) -> None:
        reasons = risk.state_problems(self.cfg.risk, self.risk_view())
        if self.lease is None or not self.lease.may_trade(self.clock()):
            reasons.append("no-lease")
        venue_problem = self.venue_problem()
        if venue_problem is not None:
            reasons.append(venue_problem)
        symbol_problem = self.symbol_problem()
        if symbol_problem is not None:
            reasons.append(symbol_problem)
        if not self.userstream.connected:
            reasons.append("user-stream-down")
        if not self.trading_enabled:
            reasons.append("not-primary")
        was = self.quoting
        self.quoting = not reasons
        self.halt_reasons = reasons
        self._set_role("primary" if self.quoting else "halted")
        if was != self.quoting:
            log.info("quoting " + ("started" if self.quoting else "halted"), reasons=reasons)
            self._requote.set()

    async def _quote_loop(self) -> None:
        while True:
            await self._requote.wait()
            self._requote.clear()
            self._evaluate_quoting()
            try:
                await self.requote()
            except (ve.VenueError, NotPermitted) as exc:
                log.warning("requote incomplete", error=str(exc))
                await asyncio.sleep(0.05)

    async def requote(self) -> None:
        """Brings the resting quotes to where the strategy wants them."""
        if not self.quoting:
            if self.oms.working():
                await self.cancel_own_orders("halted: " + ",".join(self.halt_reasons))
            return
        mid = self.book.mid()
        desired = strategy.desired_quotes(mid, self.account.position, self.cfg.risk.max_position,
                                          self.cfg.strategy, self.instrument)
        live = self.oms.working()
        working = {key: strategy.Quote(o.side, o.level, o.price_ticks, o.qty_steps) for key, o in live.items()}
        tolerance = int(mid * self.cfg.strategy.requote_tolerance_bps / 1e4 / self.instrument.tick_size)
        cancel, place = strategy.stale_quotes(working, desired, tolerance)
        # Cancels go out first, but the new quotes do not wait a round trip for
        # their answers: until answered, a cancelled quote still counts against
        # the position limit (it may yet fill), just not as a resting order.
        if place and self.gate.order_budget() < len(place):
            # Cancelling now would leave the book without quotes the gate then refuses to replace.
            return
        lease = self.lease  # read once: the lease can end at any await below, and then nothing is placed
        if lease is None:
            place = []
        cancels = [asyncio.ensure_future(self._cancel(live[key].client_id)) for key in cancel]
        if cancels:
            await asyncio.sleep(0)  # lets every cancel reach the transport before any new order
        results = []
        if place:
            epoch = lease.epoch
            orders = [ManagedOrder(self.ids.next(epoch), q.side, q.price_ticks, q.qty_steps,
                                   q.price_ticks * self.instrument.tick_size, q.qty_steps * self.instrument.step_size,
                                   epoch, q.level, self.clock()) for q in place]
            results = await asyncio.gather(*(self._place(o) for o in orders), return_exceptions=True)
        results += await asyncio.gather(*cancels, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, (ve.VenueError, NotPermitted)):
                raise result

    async def _place(self, order: ManagedOrder) -> None:
        try:
            await self.gate.send(order)
        except NotPermitted as exc:
            log.info("order refused by the gate", reason=exc.reason, detail=exc.detail, side=order.side,
                     price=order.price, qty=order.qty)
        except ve.MarketClosed as exc:
            log.warning("order refused by the venue: market closed", code=exc.code, client_id=order.client_id)
            self.on_market_closed(order.client_id)
        except ve.OrderRejected as exc:
            log.info("order rejected by the venue", code=exc.code, msg=exc.msg, client_id=order.client_id)
        except ve.VenueError as exc:
            log.warning("order failed", code=exc.code, msg=exc.msg, client_id=order.client_id,
                        kind=type(exc).__name__)

    async def _cancel(self, client_id: str) -> None:
        self.oms.on_cancel_sent(client_id, self.clock())
        try:
            reply = await self.rest.cancel_order(self.cfg.market.symbol, client_id)
            self.oms.on_cancelled(client_id, reply.executedQty, self.clock())
        except ve.UnknownOrder:
            self.oms.on_cancel_unknown_order(client_id, self.clock())
        except ve.VenueError as exc:
            self.cancel_errors += 1
            self.oms.on_cancel_failed(client_id, self.clock())
            log.warning("cancel failed", client_id=client_id, error=str(exc))
            if isinstance(exc, ve.MarketClosed):
                self.on_market_closed(client_id)

    async def cancel_own_orders(self, reason: str, passes: int = 3) -> int:
        """Cancels every live order of this node, by client id, then asks the
        venue what of ours still rests (a send racing the cancel, an order
        from an earlier run) and goes again. Returns how many remain."""
        remaining: list[str] = []
        for _ in range(passes):
            # A send still under way would land after this pass: let it be answered first.
            if self.gate is not None:
                await self._sends_settled()
            ids = list(self.oms.live)
            if ids:
                log.info("cancelling own orders", reason=reason, count=len(ids))
                await asyncio.gather(*(self._cancel(cid) for cid in ids))
            # A send whose outcome is unknown may reach the matching engine until its fence
            # passes: the venue's listing says nothing about it before then.
            unresolved = self._unresolved_sends()
            if unresolved:
                log.info("waiting out the recvWindow of sends with unknown outcome",
                         wait_s=round(unresolved - self.clock(), 3))
                await asyncio.sleep(min(unresolved - self.clock(), self.cfg.venue.recv_window_ms / 1000))
            self.oms.reconcile(await self.rest.open_orders(self.cfg.market.symbol), self.clock(), 0.0)
            remaining = list(self.oms.live)
            if not remaining:
                return 0
        log.error("orders still resting after cancel", orders=remaining)
        return len(remaining)

    async def panic(self, reason: str) -> int:
        """PanicStop: stop quoting, cancel everything of ours, latch until cleared."""
        self.panic_reason = reason
        self.store.set_panic(reason)
        self.quoting = False
        log.critical("PANIC STOP", reason=reason)
        await self._sends_settled()
        remaining = await self.cancel_own_orders("panic")
        self._evaluate_quoting()
        return remaining

    def clear_panic(self) -> None:
        log.warning("panic stop cleared by operator", was=self.panic_reason)
        self.panic_reason = None
        self.store.set_panic(None)
        self._evaluate_quoting()

    # -- reporting ---------------------------------------------------------------
    def health(self) -> dict:
        now = self.clock()
        md, us, rest = self.marketdata, self.userstream, self.rest
        ws_ok = bool(md and md.connected and us and us.connected)
        book_ok = self.book.is_live() and self.book.age(now) <= self.cfg.risk.max_book_age_s
        api_ok = bool(rest) and rest.blocked_until <= now
        healthy = ws_ok and book_ok and api_ok and self.panic_reason is None
        return {
            "status": "ok" if healthy else "degraded",
            "system": {"node": self.node_id, "role": self.role, "uptime_s": round(time.time() - self.started_at, 1),
                       "panic": self.panic_reason},
            "strategy": {"quoting": self.quoting, "halt_reasons": self.halt_reasons},
            "ws": {"market": bool(md and md.connected), "user": bool(us and us.connected),
                   "book": self.book.state.value, "book_age_s": round(self.book.age(now), 3)},
            "api": {"ok": api_ok, "used_weight": rest.used_weight if rest else 0,
                    "errors": dict(rest.errors_by_code) if rest else {}},
            "oms": {"live_orders": self.oms.count(), "outcomes": dict(self.oms.outcomes)},
        }

    def status(self) -> dict:
        mid = self.book.mid()
        return {
            **self.health(),
            "lease": {"epoch": self.lease.epoch if self.lease else None,
                      "may_trade": bool(self.lease and self.lease.may_trade(self.clock()))},
            "market": {"symbol": self.book.symbol, "best_bid": self.book.best_bid, "best_ask": self.book.best_ask,
                       "mid": mid, "update_id": self.book.update_id, "resyncs": self.book.resyncs,
                       "reconnects": self.marketdata.reconnects if self.marketdata else 0},
            "account": {"position": self.account.position if self.account else None,
                        "base": self.account.total(self.instrument.base) if self.account else None,
                        "quote": self.account.total(self.instrument.quote) if self.account else None,
                        "daily_pnl": self.daily_pnl()},
            "orders": [{"client_id": o.client_id, "side": o.side, "price": round(o.price, 8), "qty": round(o.qty, 8),
                        "filled": round(o.filled, 8), "status": o.status.value} for o in self.oms.live.values()],
            "fills": {"count": self.fills, "bought": self.filled_qty["BUY"], "sold": self.filled_qty["SELL"]},
            "gate": {"sent": self.gate.sent if self.gate else 0, "refusals": dict(self.gate.refusals) if self.gate else {}},
            "venue": self.venue_status(),
        }

    def venue_status(self) -> dict:
        """The symbol as the venue describes it, and what the node could not read from the venue."""
        rules = self.instrument.rules if self.instrument is not None else None
        md, us = self.marketdata, self.userstream
        return {
            "symbol_status": rules.status.value if rules is not None else None,
            "symbol_problem": self.symbol_problem(),
            "filters": sorted(rules.filters) if rules is not None else [],
            "unknown_filters": sorted({u.filter_type for u in rules.unknown}) if rules is not None else [],
            "market_closed_refusals": self.market_closed_refusals,
            "exchange_info_failures": self.exchange_info_failures,
            "streams": {"market_reconnects": md.reconnects if md else 0, "user_reconnects": us.reconnects if us else 0,
                        "market_handovers": md.handovers if md else 0,
                        "market_shutdown_notices": md.shutdown_notices if md else 0,
                        "user_handovers": us.handovers if us else 0,
                        "user_shutdown_notices": us.shutdown_notices if us else 0,
                        "user_terminations": us.terminations if us else 0},
            "oms": {"zero_qty_trades": self.oms.zero_qty_trades, "prevented_matches": self.oms.prevented_matches,
                    "amendments": self.oms.amendments, "verifications": self.verifications,
                    "cancel_all_order_lists": self.rest.order_lists_cancelled if self.rest else 0},
            "decode": self.ledger.summary(),
        }
