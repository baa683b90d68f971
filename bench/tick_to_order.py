"""Tick-to-order latency inside one node process: from a depth event's raw
bytes to the signed order request being handed to the HTTP transport.

    .venv/bin/python bench/tick_to_order.py [--quick] [--samples N] [--warmup N] [--config PATH] [--cpu N]

The node is the real one: a `NodeEngine` built from `examples/solo.toml`
(loaded and validated by `understudy.config.load`), with the parts its
`start()` would connect wired by hand instead: `Instrument` and
`AccountState` from decoded venue replies, `VenueRest`, `OrderGate`,
`MarketData`, a `UserStream` marked subscribed, `Lease.solo(0)`, and the
engine's own `_quote_loop` task. Nothing is replicated: each sample is
`MarketData.handle(raw)` (decode, `LocalBook.on_event`, the engine's
requote Event) -> the quote loop wakes -> `_evaluate_quoting` ->
`NodeEngine.requote` (`strategy.desired_quotes` + `stale_quotes`) -> cancels
of the stale quotes by client id, then new quotes through `OrderGate.send`
(risk check, order-rate window, lease check, OMS) -> `VenueRest.request`
(query encoding + HMAC-SHA256 signature) -> `session.request(...)`.

The session is the measurement point: `TransportTap.request` stamps
`perf_counter_ns()` as the request is handed over, then returns a canned 200
reply so the engine carries on as after a venue reply. Replies are held
until all of a sample's requests are out, as over any real network.

Each sample is one depth event that moves mid by more than
`strategy.requote_tolerance_bps` (alternately up and down), so every sample
cancels all resting quotes and places new ones. Reported, from the raw
bytes being handed to the decoder:
  first request    the first order request handed to the transport: the
                   cancel of a stale quote (the engine sends cancels first);
  first new order  the first new-quote POST;
  all new orders   the last of the new-quote POSTs.
Prints figures, then one JSON object as the last line. Exits 1 if the engine
did not do what each sample requires. Target: p99 <= 250 us (first request).
"""
import argparse
import asyncio
import datetime
import gc
import json
import math
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pinning import pin_to_one_core  # noqa: E402 - bench/pinning.py

import msgspec  # noqa: E402

from understudy import logs  # noqa: E402
from understudy.config import NodeConfig, Secrets, load  # noqa: E402
from understudy.node import strategy  # noqa: E402
from understudy.node.account import AccountState, DayReference  # noqa: E402
from understudy.node.engine import NodeEngine  # noqa: E402
from understudy.node.instrument import Instrument  # noqa: E402
from understudy.node.marketdata import MarketData  # noqa: E402
from understudy.node.messages import ExchangeInfo  # noqa: E402
from understudy.node.order_gate import OrderGate  # noqa: E402
from understudy.node.rest import VenueRest, _account_decoder, _snapshot_decoder  # noqa: E402
from understudy.node.userstream import UserStream  # noqa: E402

TARGET_P99_US = 250.0
TICK_SIZE = 0.01
BOOK_LEVELS = 1000  # per side
LEVEL_SPACING_TICKS = 100  # 1.00 between resting levels, so a few dozen level changes move mid by bps
START_BEST_BID, START_BEST_ASK = 5_999_950, 6_000_050  # ticks: 59999.50 / 60000.50, mid 60000
BACKGROUND_UPDATES = 4  # per side and event: new quantities deeper in the book, as real diffs carry
# The gate allows max_orders_per_10s on the engine's clock; each sample sends a full set of quotes, so
# the clock skips this much idle time between samples, as if requote-worthy moves came this far apart.
SAMPLE_SPACING_S = 1.0

EXCHANGE_INFO = b"""{"symbols": [{"symbol": "BTCUSDT", "status": "TRADING", "baseAsset": "BTC", "quoteAsset": "USDT", "filters": [
  {"filterType": "PRICE_FILTER", "minPrice": "0.01000000", "maxPrice": "1000000.00000000", "tickSize": "0.01000000"},
  {"filterType": "LOT_SIZE", "minQty": "0.00001000", "maxQty": "9000.00000000", "stepSize": "0.00001000"},
  {"filterType": "NOTIONAL", "minNotional": "5.00000000"}]}]}"""
ACCOUNT = b"""{"canTrade": true, "balances": [
  {"asset": "BTC", "free": "10.00000000", "locked": "0.00000000"},
  {"asset": "USDT", "free": "600000.00000000", "locked": "0.00000000"}]}"""
CANCEL_REPLY = (b'{"symbol":"BTCUSDT","orderId":1,"origClientOrderId":"bench","clientOrderId":"bench-cancel",'
                b'"executedQty":"0.00000000","status":"CANCELED"}')
CLIENT_ID_FIELD = "newClientOrderId="


# -- the measurement point ------------------------------------------------------------
class _CannedReply:
    """What `aiohttp.ClientSession.request(...)` returns, reduced to what VenueRest reads.
    Entering it waits for the tap to release the replies, as a reply waits for the network."""

    __slots__ = ("_body", "_arrived")
    status = 200
    headers = {"X-MBX-USED-WEIGHT-1M": "1"}

    def __init__(self, body: bytes, arrived: asyncio.Future | None):
        self._body = body
        self._arrived = arrived

    async def __aenter__(self):
        if self._arrived is not None:
            await self._arrived
        return self

    async def __aexit__(self, *exc_info):
        return False

    async def read(self) -> bytes:
        return self._body


class TransportTap:
    """Stands where VenueRest's aiohttp session stands. `request` is called
    once the signed URL and headers exist, exactly where aiohttp would start
    writing them to a socket: its first act is the timestamp.

    Replies are held until a sample's expected requests have all been handed
    over, as on any real network, whose round trip outlasts the node's burst
    of sends: an instant reply would let the engine process one answer before
    its next request goes out, which it never does in production. A
    watchdog releases them if fewer requests come (the checks then fail)."""

    WATCHDOG_S = 1.0

    def __init__(self):
        self.handoffs: list[tuple[int, str, str, dict]] = []  # (perf_counter_ns, method, url, headers)
        self.watchdog_releases = 0
        self._order_ids = 0
        self._arrived: asyncio.Future | None = None
        self._release_at = 0
        self._watchdog: asyncio.TimerHandle | None = None

    def hold_replies(self, requests: int) -> None:
        """Holds every reply until `requests` more requests have been handed over."""
        loop = asyncio.get_running_loop()
        self._release()  # whatever an earlier sample left held goes now, and its watchdog with it
        self._arrived = loop.create_future()
        self._release_at = len(self.handoffs) + requests
        self._watchdog = loop.call_later(self.WATCHDOG_S, self._release, True)

    def _release(self, by_watchdog: bool = False) -> None:
        if self._arrived is not None and not self._arrived.done():
            self._arrived.set_result(None)
            self.watchdog_releases += by_watchdog
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def request(self, method: str, url: str, *, headers: dict, timeout) -> _CannedReply:
        handed_over = time.perf_counter_ns()
        self.handoffs.append((handed_over, method, url, headers))
        if len(self.handoffs) >= self._release_at:
            self._release()
        path = url.split("?", 1)[0]
        if method == "POST" and path.endswith("/api/v3/order"):
            # The OMS matches the reply to the order by client id, so echo it.
            start = url.index(CLIENT_ID_FIELD) + len(CLIENT_ID_FIELD)
            end = url.find("&", start)
            self._order_ids += 1
            return _CannedReply(b'{"symbol":"BTCUSDT","orderId":%d,"clientOrderId":"%s","status":"NEW",'
                                b'"executedQty":"0.00000000"}'
                                % (self._order_ids, url[start:end if end >= 0 else None].encode()), self._arrived)
        if method == "DELETE" and path.endswith("/api/v3/order"):
            return _CannedReply(CANCEL_REPLY, self._arrived)
        if method == "GET" and path.endswith("/api/v3/openOrders"):
            return _CannedReply(b"[]", self._arrived)  # asked by engine.stop() after its cancels: nothing rests
        raise AssertionError(f"the benchmark does not expect {method} {path}")


# -- the node under test ----------------------------------------------------------------
class PacedClock:
    """The engine's monotonic clock, plus the idle time skipped between samples."""

    def __init__(self):
        self.skipped = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.skipped

    def skip(self, seconds: float) -> None:
        self.skipped += seconds


class SignallingEngine(NodeEngine):
    """The real engine; it only says when a requote has finished, so the
    feeder knows a sample is complete without polling the event loop."""

    def __init__(self, config: NodeConfig, secrets: Secrets, clock):
        super().__init__(config, secrets, clock)
        self.requote_finished = asyncio.Event()

    async def requote(self) -> None:
        try:
            await super().requote()
        finally:
            self.requote_finished.set()


VENUE_OFFSET_MS = 1_700_000_000_000.0  # the venue's clock, a fixed offset from the paced clock


def refresh_venue_clock(engine: NodeEngine) -> None:
    """The venue clock as a fresh 100 µs probe round trip would leave it. The node probes every
    0.5 s off the hot path; the paced clock skips that time between samples, so the bench
    refreshes it instead (the fence itself, on the hot path, is measured)."""
    now = engine.clock()
    engine.venue_clock.on_round_trip(now - 0.0001, int(now * 1000 + VENUE_OFFSET_MS), now)


def build_engine(cfg: NodeConfig, tap: TransportTap, snapshot: bytes) -> SignallingEngine:
    """Wires the engine as NodeEngine.start() does, minus the network."""
    secrets = Secrets(api_key="bench-api-key", api_secret="bench-secret-" + "0" * 51, admin_token="bench-admin")
    engine = SignallingEngine(cfg, secrets, PacedClock())
    engine.rest = VenueRest(tap, cfg.venue.rest_url, secrets.api_key, secrets.api_secret,
                            cfg.venue.recv_window_ms, cfg.venue.request_timeout_s)
    engine.instrument = Instrument.from_exchange_info(
        msgspec.json.Decoder(ExchangeInfo, strict=False).decode(EXCHANGE_INFO), cfg.market.symbol)
    engine.account = AccountState(engine.instrument.base, engine.instrument.quote, cfg.risk.inventory_target)
    engine.account.on_account_info(_account_decoder.decode(ACCOUNT))
    engine.day = DayReference(datetime.datetime.now(datetime.UTC).date().isoformat(),
                              engine.account.total(engine.instrument.base),
                              engine.account.total(engine.instrument.quote))
    refresh_venue_clock(engine)
    engine.gate = OrderGate(engine.rest, engine.instrument, engine.oms, cfg.risk, lambda: engine.lease,
                            engine.risk_view, cfg.venue.max_orders_per_10s, engine.venue_clock,
                            cfg.venue.recv_window_ms, engine.clock)
    engine.userstream = UserStream(cfg.venue.ws_api_url, secrets.api_key, secrets.api_secret, engine._on_execution,
                                   engine._on_position, engine._on_user_resubscribed)
    engine.userstream.subscribed.set()  # as after a successful subscription
    engine.marketdata = MarketData(engine.book, engine.rest, cfg.venue.stream_url, cfg.market.depth_stream,
                                   cfg.market.snapshot_limit, engine._on_book_update, engine.clock)
    if not engine.book.on_snapshot(_snapshot_decoder.decode(snapshot), engine.clock()):
        raise AssertionError("the snapshot was refused")
    return engine


# -- the depth stream ----------------------------------------------------------------------
@dataclass
class Stream:
    snapshot: bytes
    events: list[bytes]
    levels_per_event: float
    last_update_id: int


def price_text(ticks: int) -> str:
    return f"{ticks // 100}.{ticks % 100:02d}000000"


def generate_stream(n_events: int, jump_levels: int, seed: int) -> Stream:
    """Events that move both best prices by `jump_levels` levels, alternately
    up and down: moving up deletes the lowest asks and adds bids above the
    best bid (the book rescans its ask side); moving down does the reverse."""
    rng = random.Random(seed)
    step = LEVEL_SPACING_TICKS

    def qty() -> str:
        return f"{rng.randint(1, 200_000) / 100_000:.8f}"

    best_bid, best_ask = START_BEST_BID, START_BEST_ASK
    last_update_id = 50_000_000
    snapshot = msgspec.json.encode({
        "lastUpdateId": last_update_id,
        "bids": [[price_text(best_bid - i * step), qty()] for i in range(BOOK_LEVELS)],
        "asks": [[price_text(best_ask + i * step), qty()] for i in range(BOOK_LEVELS)]})
    events, level_updates = [], 0
    event_ms = 1_700_000_000_000
    for n in range(n_events):
        bids, asks = {}, {}
        if n % 2 == 0:
            asks.update((best_ask + i * step, "0.00000000") for i in range(jump_levels))
            bids.update((best_bid + i * step, qty()) for i in range(1, jump_levels + 1))
            best_bid, best_ask = best_bid + jump_levels * step, best_ask + jump_levels * step
        else:
            bids.update((best_bid - i * step, "0.00000000") for i in range(jump_levels))
            asks.update((best_ask - i * step, qty()) for i in range(1, jump_levels + 1))
            best_bid, best_ask = best_bid - jump_levels * step, best_ask - jump_levels * step
        for _ in range(BACKGROUND_UPDATES):
            # Levels that rest in both of the book's alternating states.
            bids[best_bid - step * rng.randint(2 * jump_levels, BOOK_LEVELS - 2 * jump_levels)] = qty()
            asks[best_ask + step * rng.randint(2 * jump_levels, BOOK_LEVELS - 2 * jump_levels)] = qty()
        first_update_id = last_update_id + 1
        last_update_id = first_update_id + len(bids) + len(asks) - 1
        event_ms += 100
        events.append(msgspec.json.encode({
            "e": "depthUpdate", "E": event_ms, "s": "BTCUSDT", "U": first_update_id, "u": last_update_id,
            "b": [[price_text(p), q] for p, q in sorted(bids.items(), reverse=True)],
            "a": [[price_text(p), q] for p, q in sorted(asks.items())]}))
        level_updates += len(bids) + len(asks)
    return Stream(snapshot, events, level_updates / max(1, n_events), last_update_id)


# -- measuring ---------------------------------------------------------------------------------
class GcPauses:
    """The collector's pauses while armed: they land inside samples and explain the tail."""

    def __init__(self):
        self.armed = False
        self.pauses_ns: list[tuple[int, int]] = []  # (generation, duration)
        self._started = 0

    def __call__(self, phase: str, info: dict) -> None:
        if not self.armed:
            return
        if phase == "start":
            self._started = time.perf_counter_ns()
        else:
            self.pauses_ns.append((info["generation"], time.perf_counter_ns() - self._started))

    def longest_us(self) -> float:
        return max((ns for _, ns in self.pauses_ns), default=0) / 1e3

    def count(self, generation: int) -> int:
        return sum(1 for gen, _ in self.pauses_ns if gen == generation)


@dataclass
class Samples:
    decode_apply_ns: list[int]
    first_request_ns: list[int]
    first_new_order_ns: list[int]
    all_new_orders_ns: list[int]


async def measure(cfg: NodeConfig, stream: Stream, warmup: int, expected_quotes: int,
                  gc_pauses: GcPauses) -> tuple[Samples, list[str]]:
    tap = TransportTap()
    engine = build_engine(cfg, tap, stream.snapshot)
    tap.hold_replies(expected_quotes)
    quote_task = engine._spawn(engine._quote_loop, "quoter")
    engine._evaluate_quoting()  # as at the end of start(): quoting begins and the first quotes go out
    await asyncio.wait_for(engine.requote_finished.wait(), 5)
    if not engine.quoting or len(tap.handoffs) != expected_quotes:
        raise SystemExit(f"the engine did not start quoting: halt reasons {engine.halt_reasons}, "
                         f"{len(tap.handoffs)} requests, gate refusals {engine.gate.refusals}")
    expected_methods = ["DELETE"] * expected_quotes + ["POST"] * expected_quotes
    samples = Samples([], [], [], [])
    problems: list[str] = []
    handle = engine.marketdata.handle
    for n, raw in enumerate(stream.events):
        gc_pauses.armed = n >= warmup
        engine.clock.skip(SAMPLE_SPACING_S)
        refresh_venue_clock(engine)
        engine.requote_finished.clear()
        tap.handoffs.clear()
        tap.hold_replies(len(expected_methods))
        started = time.perf_counter_ns()
        handle(raw)
        handled = time.perf_counter_ns()
        await engine.requote_finished.wait()
        if quote_task.done() or engine.supervisor.failures:
            raise SystemExit(f"the quote loop failed: {dict(engine.supervisor.failures)}")
        methods = [method for _, method, _, _ in tap.handoffs]
        if methods != expected_methods:
            if len(problems) < 5:
                problems.append(f"sample {n}: requests {methods}, expected {expected_methods}")
            continue
        if n < warmup:
            continue
        posts = [stamp for stamp, method, _, _ in tap.handoffs if method == "POST"]
        samples.decode_apply_ns.append(handled - started)
        samples.first_request_ns.append(tap.handoffs[0][0] - started)
        samples.first_new_order_ns.append(posts[0] - started)
        samples.all_new_orders_ns.append(posts[-1] - started)

    gc_pauses.armed = False
    if tap.watchdog_releases:
        problems.append(f"{tap.watchdog_releases} samples sent fewer requests than expected")
    problems += check_final_state(engine, stream, tap, expected_quotes)
    await engine.stop()
    if engine.oms.live:
        problems.append(f"orders left live after engine.stop(): {list(engine.oms.live)}")
    return samples, problems


def check_final_state(engine: NodeEngine, stream: Stream, tap: TransportTap, expected_quotes: int) -> list[str]:
    problems = []
    book = engine.book
    if book.update_id != stream.last_update_id or book.resyncs or book.crossed_events:
        problems.append(f"book at update {book.update_id} (expected {stream.last_update_id}), "
                        f"{book.resyncs} resyncs, {book.crossed_events} crossed events")
    if engine.gate.refusals or engine.rest.errors_by_code or engine.cancel_errors:
        problems.append(f"gate refusals {engine.gate.refusals}, venue errors {engine.rest.errors_by_code}, "
                        f"cancel errors {engine.cancel_errors}")
    cancelled = engine.oms.outcomes.get("CANCELED", 0)
    if cancelled != expected_quotes * len(stream.events):
        problems.append(f"{cancelled} quotes cancelled, expected {expected_quotes * len(stream.events)}")
    # The last quotes sent must be where the strategy wants them for the final book.
    desired = strategy.desired_quotes(book.mid(), engine.account.position, engine.cfg.risk.max_position,
                                      engine.cfg.strategy, engine.instrument)
    wanted = sorted((q.side, engine.instrument.price_text(q.price_ticks), engine.instrument.qty_text(q.qty_steps))
                    for q in desired)
    sent = []
    for _, method, url, headers in tap.handoffs:
        if method != "POST":
            continue
        query = parse_qs(urlsplit(url).query)
        if "signature" not in query or headers.get("X-MBX-APIKEY") != engine.secrets.api_key:
            problems.append(f"an order went out unsigned: {url}")
        sent.append((query["side"][0], query["price"][0], query["quantity"][0]))
    if sorted(sent) != wanted:
        problems.append(f"last quotes sent {sorted(sent)} != desired for the final book {wanted}")
    return problems


# -- reporting ----------------------------------------------------------------------------------
def percentile(ordered: list[int], q: float) -> int:
    """Nearest-rank percentile of an already sorted list."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def summary_us(samples_ns: list[int]) -> dict[str, float | None]:
    """p50/p99/max/mean in microseconds; None for each when nothing was measured."""
    if not samples_ns:
        return dict.fromkeys(("p50", "p99", "max", "mean"))
    ordered = sorted(samples_ns)
    return {"p50": round(percentile(ordered, 0.50) / 1e3, 1), "p99": round(percentile(ordered, 0.99) / 1e3, 1),
            "max": round(ordered[-1] / 1e3, 1), "mean": round(statistics.fmean(ordered) / 1e3, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a ~5 s run: fewer samples")
    parser.add_argument("--samples", type=int, help="measured samples (default 20000, quick 2000)")
    parser.add_argument("--warmup", type=int, help="unmeasured samples first (default 1000, quick 200)")
    parser.add_argument("--config", default=str(REPO / "examples" / "solo.toml"))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cpu", type=int, default=0, help="the CPU to pin to (default 0)")
    args = parser.parse_args()
    n_samples = args.samples or (2_000 if args.quick else 20_000)
    warmup = args.warmup if args.warmup is not None else (200 if args.quick else 1_000)
    if n_samples < 1 or warmup < 0:
        parser.error("--samples must be positive and --warmup not negative")

    cfg = load(args.config)
    # The engine writes state (the PanicStop latch) only if something goes wrong; never into the repository.
    state_dir = tempfile.TemporaryDirectory(prefix="understudy-bench-")
    cfg = msgspec.structs.replace(cfg, node=msgspec.structs.replace(cfg.node, state_dir=state_dir.name))
    # Warnings and worse still reach stderr; the engine's info lines would bury the figures.
    logs.configure(cfg.node.id, "warning", sys.stderr)
    mid = (START_BEST_BID + START_BEST_ASK) / 2 * TICK_SIZE
    tolerance_ticks = int(mid * cfg.strategy.requote_tolerance_bps / 1e4 / TICK_SIZE)
    # Far enough past the tolerance that every quote must move, whatever the rounding.
    jump_levels = tolerance_ticks // LEVEL_SPACING_TICKS + 3
    expected_quotes = 2 * cfg.strategy.levels  # a side's quote can be skipped only near max_position; flat here
    stream = generate_stream(warmup + n_samples, jump_levels, args.seed)

    cpu = pin_to_one_core(args.cpu)
    gc_pauses = GcPauses()
    gc.callbacks.append(gc_pauses)
    try:
        import uvloop
    except ImportError:
        uvloop = None
    loop_name = "uvloop" if uvloop else "asyncio"
    run = uvloop.run if uvloop else asyncio.run
    with state_dir:
        samples, problems = run(measure(cfg, stream, warmup, expected_quotes, gc_pauses))

    if not samples.first_request_ns:
        problems.append("no sample was measured")
    stages = {
        "decode + apply (MarketData.handle)": summary_us(samples.decode_apply_ns),
        "first request (cancel) handed over": summary_us(samples.first_request_ns),
        "first new order handed over": summary_us(samples.first_new_order_ns),
        f"all {expected_quotes} new orders handed over": summary_us(samples.all_new_orders_ns),
    }
    first, new_order = stages["first request (cancel) handed over"], stages["first new order handed over"]
    result = {
        "bench": "tick_to_order",
        "samples": len(samples.first_request_ns),
        "p50_us": first["p50"], "p99_us": first["p99"], "max_us": first["max"], "mean_us": first["mean"],
        "new_order_p50_us": new_order["p50"], "new_order_p99_us": new_order["p99"],
        "new_order_max_us": new_order["max"],
        "decode_apply_p50_us": stages["decode + apply (MarketData.handle)"]["p50"],
        "cancels_per_sample": expected_quotes, "orders_per_sample": expected_quotes,
        "levels_per_event": round(stream.levels_per_event, 1),
        "gc_collections": len(gc_pauses.pauses_ns), "gc_full_collections": gc_pauses.count(2),
        "gc_max_pause_us": round(gc_pauses.longest_us(), 1),
        "loop": loop_name, "pinned_cpu": cpu,
        "target_p99_us": TARGET_P99_US, "target_met": first["p99"] is not None and first["p99"] <= TARGET_P99_US,
        "verified": not problems,
    }
    print(f"{result['samples']} samples after {warmup} warm-up; each: one depth event of "
          f"{result['levels_per_event']} levels moving mid {jump_levels * LEVEL_SPACING_TICKS * TICK_SIZE:.2f} "
          f"(tolerance {cfg.strategy.requote_tolerance_bps} bps), {expected_quotes} cancels then "
          f"{expected_quotes} new quotes; {loop_name}, "
          + (f"pinned to CPU {cpu}" if cpu is not None else "not pinned"))
    print(f"{'from raw bytes to ...':38}{'p50 us':>10}{'p99 us':>10}{'max us':>10}{'mean us':>10}")
    for name, figures in stages.items():
        print(f"{name:38}" + "".join("{:>10}".format("-" if v is None else f"{v:.1f}") for v in figures.values()))
    print(f"garbage collector during the samples: {result['gc_collections']} collections, "
          f"{result['gc_full_collections']} of them full; longest pause {result['gc_max_pause_us']:.0f} us")
    print(f"target p99 <= {TARGET_P99_US:.0f} us (first request): {'met' if result['target_met'] else 'NOT met'}")
    if problems:
        print("VERIFICATION FAILED:\n  " + "\n  ".join(problems), file=sys.stderr)
    else:
        print("verified: every sample cancelled and replaced all quotes, no refusals or venue errors, the last "
              "quotes match the strategy for the final book, nothing left live after engine.stop()")
    print(json.dumps(result))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
