"""Assembles the venue into one aiohttp application and runs it."""
import asyncio
import contextlib
import random
import secrets
import sys
import traceback
from dataclasses import dataclass, field

from aiohttp import web

from .audit import AuditLog
from .engine import MatchingEngine
from .market import MarketParams, SyntheticMarket, install_participants
from .rest import RestApi
from .streams import MarketStreams
from .symbols import make_spec
from .units import SCALE, format_amount
from .venue import DEPTH_CADENCES_MS, Venue, VenueLimits, wall_ms
from .wsapi import WebSocketApi

DEFAULT_BALANCES = {"USDT": 1_000_000, "USDC": 1_000_000, "BTC": 10, "ETH": 100, "BNB": 1_000, "SOL": 5_000}
MARKET_STEP_S = 0.1


@dataclass
class SimConfig:
    host: str = "127.0.0.1"
    port: int = 8700
    accounts: list[tuple[str, str]] = field(default_factory=list)
    symbols: list[str] = field(default_factory=lambda: ["BTCUSDT"])
    audit_log: str | None = None
    seed: int | None = None
    market: bool = True
    limits: VenueLimits = field(default_factory=VenueLimits)
    market_params: MarketParams = field(default_factory=MarketParams)
    maker_fee_ppm: int = 1000
    taker_fee_ppm: int = 1000


def build_venue(config: SimConfig) -> Venue:
    specs = [make_spec(s) for s in config.symbols]
    engine = MatchingEngine(specs, wall_ms, config.maker_fee_ppm, config.taker_fee_ppm)
    assets = {a for s in specs for a in (s.base, s.quote)}
    balances = {a: DEFAULT_BALANCES.get(a, 10_000) * SCALE for a in sorted(assets)}
    for key, secret in config.accounts:
        engine.add_account(key, secret, balances)
    install_participants(engine)
    return Venue(engine, AuditLog(config.audit_log), config.limits)


def build_app(config: SimConfig) -> web.Application:
    venue = build_venue(config)
    rng = random.Random(config.seed)
    markets = [SyntheticMarket(venue.engine, spec, rng, config.market_params) for spec in venue.specs]
    app = web.Application()
    app["venue"] = venue
    app["markets"] = markets
    app.add_routes(RestApi(venue).routes())
    app.add_routes(MarketStreams(venue).routes())
    app.add_routes(WebSocketApi(venue).routes())
    app.add_routes(_control_routes(venue))

    if config.market:
        for market in markets:  # a book to trade against from the first request on
            market.step(0.0)
        venue.publish()

    async def background(app: web.Application):
        tasks = [asyncio.create_task(_depth_loop(venue, suffix, ms / 1000)) for suffix, ms in DEPTH_CADENCES_MS.items()]
        if config.market:
            tasks.append(asyncio.create_task(_market_loop(venue, markets)))
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        venue.audit.close()

    app.cleanup_ctx.append(background)
    return app


async def _depth_loop(venue: Venue, suffix: str, interval_s: float) -> None:
    loop = asyncio.get_running_loop()
    next_at = loop.time()
    while True:
        next_at += interval_s
        await asyncio.sleep(max(0.0, next_at - loop.time()))
        venue.flush_depth(suffix)


async def _market_loop(venue: Venue, markets: list[SyntheticMarket]) -> None:
    loop = asyncio.get_running_loop()
    last = loop.time()
    while True:
        await asyncio.sleep(MARKET_STEP_S)
        now = loop.time()
        if not venue.market_paused:
            try:
                for market in markets:
                    market.step(now - last)
            except Exception:  # noqa: BLE001 - the venue must keep serving; the failure is reported
                traceback.print_exc()
            venue.publish()
        last = now


def _control_routes(venue: Venue) -> list[web.RouteDef]:
    """The sim's own endpoints, outside Binance's namespace: tests and drills
    use them to freeze the synthetic market and to read the whole book."""

    async def set_market(request: web.Request) -> web.Response:
        body = await request.json()
        venue.market_paused = bool(body.get("paused"))
        return web.json_response({"paused": venue.market_paused})

    async def book(request: web.Request) -> web.Response:
        symbol = request.query.get("symbol", "").upper()
        if symbol not in venue.engine.books:
            raise web.HTTPNotFound(text="unknown symbol")
        update_id, bids, asks = venue.engine.books[symbol].snapshot(None)
        return web.json_response({
            "updateId": update_id,
            "bids": [[format_amount(p), format_amount(q)] for p, q in bids],
            "asks": [[format_amount(p), format_amount(q)] for p, q in asks],
        })

    async def faults(request: web.Request) -> web.Response:
        body = await request.json()
        drop = body.get("drop_depth_events", 0)
        if not isinstance(drop, int) or drop < 0:
            raise web.HTTPBadRequest(text="drop_depth_events: expected a non-negative integer")
        venue.depth_events_to_drop = drop
        return web.json_response({"drop_depth_events": venue.depth_events_to_drop})

    async def audit_sync(request: web.Request) -> web.Response:
        venue.audit.sync()
        return web.json_response({"path": venue.audit.path})

    return [
        web.post("/sim/v1/market", set_market),
        web.get("/sim/v1/book", book),
        web.post("/sim/v1/faults", faults),
        web.post("/sim/v1/audit/sync", audit_sync),
    ]


def run(config: SimConfig) -> None:
    if not config.accounts:
        key, secret = secrets.token_hex(32), secrets.token_hex(32)
        config.accounts.append((key, secret))
        print(f"demo account: api key {key}", flush=True)
        print(f"demo account: secret  {secret}", flush=True)

    async def main() -> None:
        runner = web.AppRunner(build_app(config), access_log=None, handle_signals=True)
        await runner.setup()
        site = web.TCPSite(runner, config.host, config.port)
        await site.start()
        port = runner.addresses[0][1]
        print(f"SIM READY http://{config.host}:{port} symbols={','.join(config.symbols)}"
              f" audit_log={config.audit_log or '-'}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    print("sim stopped", file=sys.stderr)
