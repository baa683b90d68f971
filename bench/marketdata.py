"""Depth-diff decode + apply throughput on one core, through the node's own code.

    .venv/bin/python bench/marketdata.py [--quick] [--events N] [--runs N] [--levels-per-event N] [--seed N] [--cpu N]

Every event goes through `MarketData.handle(raw)`: msgspec decodes the raw
Binance `depthUpdate` bytes into `DepthUpdate` (the module's own decoder,
lax mode) and `LocalBook.on_event` applies it; the callback is an
`asyncio.Event.set`, as the engine's `_on_book_update` is. The stream is
generated and encoded before any timing: a book of about 1000 levels a side
around 60000 with a 0.01 tick, contiguous `U`/`u`, and events that update,
insert and delete levels, some at the best price (forcing the book's rescan
of a side). The book starts from a `DepthSnapshot` decoded by the REST
client's decoder.

Prints figures, then one JSON object as the last line. Exits 1 if the book
does not end exactly where the generator's ground truth says it must.
Target: >= 200,000 level updates/s.
"""
import argparse
import asyncio
import gc
import json
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pinning import pin_to_one_core  # noqa: E402 - bench/pinning.py

import msgspec  # noqa: E402

from understudy.node import marketdata  # noqa: E402
from understudy.node.book import Applied, BookState, LocalBook  # noqa: E402
from understudy.node.rest import _snapshot_decoder  # noqa: E402 - the decoder VenueRest.depth uses

SYMBOL = "BTCUSDT"
TARGET_LEVEL_UPDATES_PER_S = 200_000
TICKS_PER_UNIT = 100  # tick 0.01: prices are generated as integer ticks and printed exactly
START_MID_TICKS = 6_000_000  # 60000.00
BOOK_LEVELS = 1000  # per side
BOOK_SPAN_TICKS = 1500  # levels are placed within this many ticks of the best: a dense top, gaps further out
TOUCH_SHARE = 0.12  # of level changes: at the best price (requote it, pull it, or improve on it)
UPDATE_SHARE = 0.45  # of level changes: a new quantity for a resting level; the rest insert or delete
QTY_SCALE = 100_000  # quantities in units of 0.00001 (the LOT_SIZE step)
DELETED_QTY = "0.00000000"


def price_text(ticks: int) -> str:
    return f"{ticks // TICKS_PER_UNIT}.{ticks % TICKS_PER_UNIT:02d}000000"


def qty_text(units: int) -> str:
    return f"{units // QTY_SCALE}.{units % QTY_SCALE:05d}000"


class GeneratedSide:
    """One side of the generator's ground-truth book, in integer ticks.

    Keeps a list beside the dict so a random resting level can be picked in
    O(1), and tracks the best price incrementally (rescanning only when the
    best itself is deleted) so that generating a million changes stays fast.
    """

    def __init__(self, is_bid: bool):
        self.is_bid = is_bid
        self.levels: dict[int, str] = {}  # price ticks -> quantity text, as last sent
        self._prices: list[int] = []
        self._slot: dict[int, int] = {}
        self.best: int | None = None

    def __len__(self) -> int:
        return len(self.levels)

    def improves(self, price: int, than: int) -> bool:
        return price > than if self.is_bid else price < than

    def away_from_touch(self, offset_ticks: int) -> int:
        return self.best - offset_ticks if self.is_bid else self.best + offset_ticks

    def set(self, price: int, qty: str) -> None:
        if price not in self.levels:
            self._slot[price] = len(self._prices)
            self._prices.append(price)
        self.levels[price] = qty
        if self.best is None or self.improves(price, self.best):
            self.best = price

    def delete(self, price: int) -> None:
        slot = self._slot.pop(price)
        last = self._prices.pop()
        if last != price:
            self._prices[slot] = last
            self._slot[last] = slot
        del self.levels[price]
        if price == self.best:
            self.best = (max if self.is_bid else min)(self.levels) if self.levels else None

    def random_price(self, rng: random.Random) -> int:
        return self._prices[rng.randrange(len(self._prices))]


@dataclass
class Stream:
    snapshot: bytes
    events: list[bytes]
    level_updates: int  # price-level entries across all events
    # Sides whose best price an event deletes, so the book rescans that side; approximate, as the
    # book applies an event's levels in price order rather than in the order they were generated.
    rescans: int
    last_update_id: int
    expected_bids: dict[float, float]
    expected_asks: dict[float, float]


def generate_stream(n_events: int, levels_per_event: int, seed: int) -> Stream:
    rng = random.Random(seed)
    bids, asks = GeneratedSide(is_bid=True), GeneratedSide(is_bid=False)

    def random_qty() -> str:
        return qty_text(rng.randint(1, 2 * QTY_SCALE))

    best_bid, best_ask = START_MID_TICKS - 1, START_MID_TICKS + 1
    for side, touch, direction in ((bids, best_bid, -1), (asks, best_ask, +1)):
        for offset in [0] + rng.sample(range(1, BOOK_SPAN_TICKS), BOOK_LEVELS - 1):
            side.set(touch + direction * offset, random_qty())

    last_update_id = 10_000_000
    snapshot = msgspec.json.encode({
        "lastUpdateId": last_update_id,
        "bids": [[price_text(p), q] for p, q in sorted(bids.levels.items(), reverse=True)],
        "asks": [[price_text(p), q] for p, q in sorted(asks.levels.items())],
    })

    events: list[bytes] = []
    level_updates = rescans = 0
    event_ms = 1_700_000_000_000
    # Inserts and deletes away from the touch keep each side at about BOOK_LEVELS; a side this thin
    # takes no more deletes at the touch either.
    low = int(BOOK_LEVELS * 0.95)
    for _ in range(n_events):
        changes = {True: {}, False: {}}  # is_bid -> {price ticks: qty text}; a level appears once per event
        deleted_best = {True: False, False: False}
        for _ in range(rng.randint(1, 2 * levels_per_event - 1)):
            side = bids if rng.random() < 0.5 else asks
            roll = rng.random()
            if roll < TOUCH_SHARE:
                # At the touch: requote the best, pull it (a rescan), or improve it inside the spread.
                action = rng.randrange(3)
                spread = asks.best - bids.best
                if action == 1 and len(side) > low:
                    price, qty = side.best, DELETED_QTY
                    deleted_best[side.is_bid] = True
                elif action == 2 and spread > 1:
                    step = rng.randint(1, spread - 1)
                    price, qty = (side.best + step if side.is_bid else side.best - step), random_qty()
                else:
                    price, qty = side.best, random_qty()
            elif roll < TOUCH_SHARE + UPDATE_SHARE:
                price, qty = side.random_price(rng), random_qty()
            elif len(side) < BOOK_LEVELS:
                # A new level behind the touch; a few tries for a free price, else it lands as an update.
                for _ in range(4):
                    price = side.away_from_touch(rng.randint(1, BOOK_SPAN_TICKS))
                    if price not in side.levels:
                        break
                qty = random_qty()
            else:
                price, qty = side.random_price(rng), DELETED_QTY
                deleted_best[side.is_bid] |= price == side.best
            if qty == DELETED_QTY:
                side.delete(price)
            else:
                side.set(price, qty)
            changes[side.is_bid][price] = qty
        first_update_id = last_update_id + 1
        last_update_id = first_update_id + len(changes[True]) + len(changes[False]) + rng.randint(0, 3)
        event_ms += rng.randint(1, 100)
        events.append(msgspec.json.encode({
            "e": "depthUpdate", "E": event_ms, "s": SYMBOL, "U": first_update_id, "u": last_update_id,
            "b": [[price_text(p), q] for p, q in sorted(changes[True].items(), reverse=True)],
            "a": [[price_text(p), q] for p, q in sorted(changes[False].items())],
        }))
        level_updates += len(changes[True]) + len(changes[False])
        rescans += deleted_best[True] + deleted_best[False]
        if bids.best >= asks.best:
            raise AssertionError("generator bug: the generated book crossed")

    def as_floats(side: GeneratedSide) -> dict[float, float]:
        return {float(price_text(p)): float(q) for p, q in side.levels.items()}

    return Stream(snapshot, events, level_updates, rescans, last_update_id,
                  as_floats(bids), as_floats(asks))


def fresh_feed(stream: Stream) -> tuple[marketdata.MarketData, LocalBook]:
    """A synced book behind a MarketData, wired as the engine wires it."""
    book = LocalBook(SYMBOL)
    if not book.on_snapshot(_snapshot_decoder.decode(stream.snapshot), time.monotonic()):
        raise AssertionError("the snapshot was refused")
    requote_wanted = asyncio.Event()  # NodeEngine._on_book_update sets its own Event like this
    feed = marketdata.MarketData(book, rest=None, stream_url="ws://bench.invalid", cadence="100ms",
                                 snapshot_limit=1000, on_update=requote_wanted.set)
    return feed, book


def time_handle(stream: Stream) -> tuple[int, marketdata.MarketData, LocalBook]:
    """Nanoseconds to pass every event through MarketData.handle."""
    feed, book = fresh_feed(stream)
    handle = feed.handle
    events = stream.events
    gc.collect()  # start each run from the same heap, not from the previous run's garbage
    started = time.perf_counter_ns()
    for raw in events:
        handle(raw)
    return time.perf_counter_ns() - started, feed, book


def time_decode_only(stream: Stream) -> int:
    decode = marketdata._decoder.decode
    events = stream.events
    gc.collect()
    started = time.perf_counter_ns()
    for raw in events:
        decode(raw)
    return time.perf_counter_ns() - started


def time_apply_only(stream: Stream) -> int:
    """LocalBook.on_event alone, on events decoded beforehand."""
    decoded = [marketdata._decoder.decode(raw) for raw in stream.events]
    _, book = fresh_feed(stream)
    on_event, clock = book.on_event, time.monotonic
    gc.collect()
    started = time.perf_counter_ns()
    for event in decoded:
        on_event(event, clock())
    return time.perf_counter_ns() - started


def time_rescan(book: LocalBook) -> float:
    """Microseconds for one best-bid rescan as `LocalBook._apply` does it: max() over the side's dict
    (the best of a few batches, like the throughput figures)."""
    batches, repeats = 5, 100
    best_ns = None
    for _ in range(batches):
        started = time.perf_counter_ns()
        for _ in range(repeats):
            max(book.bids)
        elapsed = time.perf_counter_ns() - started
        best_ns = elapsed if best_ns is None else min(best_ns, elapsed)
    return best_ns / repeats / 1e3


def verify(stream: Stream, feed: marketdata.MarketData, book: LocalBook) -> list[str]:
    problems = []
    if feed.malformed or feed.messages != len(stream.events):
        problems.append(f"decoded {feed.messages} of {len(stream.events)} events, {feed.malformed} malformed")
    if book.state is not BookState.LIVE or book.resyncs:
        problems.append(f"book is {book.state.value} after {book.resyncs} resyncs: an event was taken for a gap")
    if book.update_id != stream.last_update_id:
        problems.append(f"book update_id {book.update_id} != last u {stream.last_update_id}")
    if book.crossed_events:
        problems.append(f"{book.crossed_events} events left the book crossed; the generated book never crosses")
    if book.best_bid != max(book.bids) or book.best_ask != min(book.asks):
        problems.append(f"best prices {book.best_bid}/{book.best_ask} != brute force "
                        f"{max(book.bids)}/{min(book.asks)}")
    if book.bids != stream.expected_bids or book.asks != stream.expected_asks:
        wrong = sum(book.bids.get(p) != q for p, q in stream.expected_bids.items()) + \
            sum(book.asks.get(p) != q for p, q in stream.expected_asks.items())
        problems.append(f"book differs from the generated ground truth: {wrong} levels wrong or missing, "
                        f"{len(book.bids)}/{len(book.asks)} levels held vs "
                        f"{len(stream.expected_bids)}/{len(stream.expected_asks)} expected")
    # The last event once more, now behind the book: it must be recognised as already applied.
    if feed.handle(stream.events[-1]) is not Applied.IGNORED:
        problems.append("a replayed event was not ignored")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a ~5 s run: fewer events and runs")
    parser.add_argument("--events", type=int, help="events per run (default 200000, quick 40000)")
    parser.add_argument("--runs", type=int, help="timed runs after the warm-up (default 7, quick 3)")
    parser.add_argument("--levels-per-event", type=int, default=5,
                        help="mean level changes per event (uniform 1..2N-1, default 5)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cpu", type=int, default=0, help="the CPU to pin to (default 0)")
    args = parser.parse_args()
    n_events = args.events or (40_000 if args.quick else 200_000)
    runs = args.runs or (3 if args.quick else 7)
    if n_events < 1 or runs < 1 or args.levels_per_event < 1:
        parser.error("--events, --runs and --levels-per-event must be positive")

    cpu = pin_to_one_core(args.cpu)
    generating = time.perf_counter()
    stream = generate_stream(n_events, args.levels_per_event, args.seed)
    generate_s = time.perf_counter() - generating
    stream_bytes = sum(map(len, stream.events))
    levels_per_event = stream.level_updates / n_events
    print(f"stream: {n_events} events, {stream.level_updates} level updates ({levels_per_event:.2f}/event), "
          f"{stream_bytes / n_events:.0f} bytes/event, ~{stream.rescans / n_events:.2f} best-price deletes "
          f"(book rescans)/event; generated in {generate_s:.1f} s")
    print(f"pinned to CPU {cpu}" if cpu is not None else "not pinned (sched_setaffinity unavailable)")

    time_handle(stream)  # warm-up: caches, allocator, branch predictors
    handle_ns: list[int] = []
    feed = book = None
    for _ in range(runs):
        elapsed, feed, book = time_handle(stream)
        handle_ns.append(elapsed)
    problems = verify(stream, feed, book)

    rescan_us = time_rescan(book)
    decode_ns = min(time_decode_only(stream) for _ in range(min(runs, 3)))
    apply_ns = min(time_apply_only(stream) for _ in range(min(runs, 3)))

    best, median = min(handle_ns), statistics.median(handle_ns)
    result = {
        "bench": "marketdata",
        "events_per_s": round(n_events / best * 1e9),
        "level_updates_per_s": round(stream.level_updates / best * 1e9),
        "ns_per_event": round(best / n_events, 1),
        "ns_per_level_update": round(best / stream.level_updates, 1),
        "median_events_per_s": round(n_events / median * 1e9),
        "median_level_updates_per_s": round(stream.level_updates / median * 1e9),
        "decode_ns_per_event": round(decode_ns / n_events, 1),
        "apply_ns_per_event": round(apply_ns / n_events, 1),
        "rescan_us": round(rescan_us, 2),
        "levels_per_event": round(levels_per_event, 2),
        "book_levels_per_side": BOOK_LEVELS,
        "rescans_per_event": round(stream.rescans / n_events, 3),
        "events": n_events,
        "runs": runs,
        "pinned_cpu": cpu,
        "target_level_updates_per_s": TARGET_LEVEL_UPDATES_PER_S,
        "target_met": stream.level_updates / best * 1e9 >= TARGET_LEVEL_UPDATES_PER_S,
        "verified": not problems,
    }
    print(f"MarketData.handle  best   {result['events_per_s']:>10,} events/s  "
          f"{result['level_updates_per_s']:>11,} level updates/s  {result['ns_per_event']:>7.1f} ns/event")
    print(f"                   median {result['median_events_per_s']:>10,} events/s  "
          f"{result['median_level_updates_per_s']:>11,} level updates/s  {median / n_events:>7.1f} ns/event")
    print(f"  of which decode only     {result['decode_ns_per_event']:>7.1f} ns/event (msgspec, best of runs)")
    print(f"  of which on_event only   {result['apply_ns_per_event']:>7.1f} ns/event (LocalBook, best of runs)")
    rescans_per_event = stream.rescans / n_events
    print(f"  best-price rescan        {rescan_us:>7.1f} us each (max() over {len(book.bids)} levels), "
          f"~{rescans_per_event:.2f}/event: ~{rescan_us * 1e3 * rescans_per_event:.0f} ns/event of on_event")
    print(f"target >= {TARGET_LEVEL_UPDATES_PER_S:,} level updates/s: "
          f"{'met' if result['target_met'] else 'NOT met'}")
    if problems:
        print("VERIFICATION FAILED:\n  " + "\n  ".join(problems), file=sys.stderr)
    else:
        print(f"verified: update_id {book.update_id} == last u, best bid/ask == brute-force max/min, "
              f"all {len(book.bids)}+{len(book.asks)} levels equal the generated book")
    print(json.dumps(result))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
