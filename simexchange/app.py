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
from .control import Control
from .engine import MatchingEngine
from .listeners import Listeners
from .market import MarketParams, SyntheticMarket, install_participants
from .rest import RestApi
from .streams import MarketStreams
from .symbols import make_spec
from .units import SCALE
from .venue import DEPTH_CADENCES_MS, Venue, VenueLimits, wall_ms, wall_us
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
    # More ports serving the whole venue from the start (0: a free one), as POST /sim/v1/listeners
    # opens them later; each can be banned on its own (listeners.py). Their ports go on the READY line.
    extra_listeners: list[int] = field(default_factory=list)


def build_venue(config: SimConfig) -> Venue:
    specs = [make_spec(s) for s in config.symbols]
    engine = MatchingEngine(specs, wall_ms, config.maker_fee_ppm, config.taker_fee_ppm, clock_us=wall_us)
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
    listeners = Listeners(config.host)
    app = web.Application()
    app["venue"] = venue
    app["markets"] = markets
    app["listeners"] = listeners
    rest = RestApi(venue)
    app.add_routes(rest.routes())
    app.add_routes(MarketStreams(venue).routes())
    app.add_routes(WebSocketApi(venue, rest).routes())
    app.add_routes(Control(venue, listeners).routes())

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


def run(config: SimConfig) -> None:
    if not config.accounts:
        key, secret = secrets.token_hex(32), secrets.token_hex(32)
        config.accounts.append((key, secret))
        print(f"demo account: api key {key}", flush=True)
        print(f"demo account: secret  {secret}", flush=True)

    async def main() -> None:
        app = build_app(config)
        runner = web.AppRunner(app, access_log=None, handle_signals=True)
        await runner.setup()
        site = web.TCPSite(runner, config.host, config.port)
        await site.start()
        port = runner.addresses[0][1]
        listeners: Listeners = app["listeners"]
        listeners.runner = runner
        extra = [await listeners.open(p) for p in config.extra_listeners]
        print(f"SIM READY http://{config.host}:{port} symbols={','.join(config.symbols)}"
              f" audit_log={config.audit_log or '-'} listeners={','.join(map(str, extra)) or '-'}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    print("sim stopped", file=sys.stderr)
