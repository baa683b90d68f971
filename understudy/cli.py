"""The `understudy` command line."""
import argparse
import sys
from decimal import Decimal, InvalidOperation


def _account(text: str) -> tuple[str, str]:
    key, sep, secret = text.partition(":")
    if not sep or not key or not secret:
        raise argparse.ArgumentTypeError(f"expected KEY:SECRET, got {text!r}")
    return key, secret


def _fee(text: str) -> int:
    try:
        rate = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"expected a fee rate such as 0.001, got {text!r}") from None
    if not 0 <= rate < Decimal("0.1"):
        raise argparse.ArgumentTypeError(f"fee rate must be in [0, 0.1), got {text}")
    return int(rate * 1_000_000)


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
        return value
    return parse


def _add_sim(sub) -> None:
    p = sub.add_parser("sim", help="run the simulated Binance-compatible exchange",
                       description="Serve a Binance-Spot-compatible venue (REST, market streams, WebSocket API "
                                   "user data) with a synthetic market, until interrupted.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8700, help="0 picks a free port (printed on the READY line)")
    p.add_argument("--account", action="append", type=_account, default=[], metavar="KEY:SECRET",
                   help="a funded API account; repeatable. Without one, a demo account is created and printed.")
    p.add_argument("--symbol", action="append", default=[], metavar="SYM", help="repeatable; default BTCUSDT")
    p.add_argument("--audit-log", metavar="PATH", help="append-only JSON-lines audit of order requests")
    p.add_argument("--seed", type=int, help="seed of the synthetic market's random walk and flow")
    p.add_argument("--no-market", action="store_true", help="no synthetic participants: an empty, quiet book")
    p.add_argument("--weight-limit", type=_positive(int), default=6000, help="request weight per IP per minute")
    p.add_argument("--orders-per-10s", type=_positive(int), default=100, help="new orders per account per 10 s")
    p.add_argument("--ws-ping-interval", type=_positive(float), default=20.0, help="server ping interval, seconds")
    p.add_argument("--maker-fee", type=_fee, default=1000, help="maker fee rate (default 0.001)")
    p.add_argument("--taker-fee", type=_fee, default=1000, help="taker fee rate (default 0.001)")
    p.add_argument("--flow-rate", type=_positive(float), default=4.0, help="marketable orders per second")
    p.set_defaults(func=_run_sim)


def _run_sim(args) -> int:
    from simexchange.app import SimConfig, run
    from simexchange.market import MarketParams
    from simexchange.symbols import make_spec
    from simexchange.venue import VenueLimits

    symbols = [s.upper() for s in args.symbol] or ["BTCUSDT"]
    for symbol in symbols:
        try:
            make_spec(symbol)
        except ValueError as exc:
            print(f"understudy sim: --symbol: {exc}", file=sys.stderr)
            return 2
    config = SimConfig(
        host=args.host, port=args.port, accounts=list(args.account), symbols=symbols, audit_log=args.audit_log,
        seed=args.seed, market=not args.no_market,
        limits=VenueLimits(args.weight_limit, args.orders_per_10s, args.ws_ping_interval),
        market_params=MarketParams(flow_rate_per_s=args.flow_rate),
        maker_fee_ppm=args.maker_fee, taker_fee_ppm=args.taker_fee,
    )
    _install_uvloop()
    run(config)
    return 0


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # the pure-asyncio loop is slower, not wrong
        return
    import asyncio

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _add_node(sub) -> None:
    p = sub.add_parser("node", help="run a trading node")
    node_sub = p.add_subparsers(dest="node_command", required=True)
    run = node_sub.add_parser("run", help="run the engine and its admin server until SIGTERM")
    run.add_argument("--config", required=True, metavar="FILE")
    run.set_defaults(func=_run_node)


def _add_config(sub) -> None:
    p = sub.add_parser("config", help="work with node configuration files")
    config_sub = p.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate a config and its secrets without starting anything")
    check.add_argument("file")
    check.set_defaults(func=_check_config)


def _load_config(path: str):
    """(config, secrets), or prints every problem and returns None."""
    from .config import ConfigError, load, load_secrets

    try:
        config = load(path)
        return config, load_secrets(config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"{path}: {problem}", file=sys.stderr)
        return None


def _check_config(args) -> int:
    from .config import EXIT_CONFIG

    loaded = _load_config(args.file)
    if loaded is None:
        return EXIT_CONFIG
    config, _ = loaded
    print(f"{args.file}: ok (node {config.node.id}, {config.node.mode} mode, {config.market.symbol})")
    return 0


def _run_node(args) -> int:
    import asyncio

    from . import logs
    from .config import EXIT_CONFIG
    from .node.run import serve

    loaded = _load_config(args.config)
    if loaded is None:
        return EXIT_CONFIG
    config, secrets = loaded
    logs.configure(config.node.id, config.node.log_level)
    _install_uvloop()
    return asyncio.run(serve(config, secrets))


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="the local demo: simulated exchange, a lock backend, two nodes and a live failover")
    p.add_argument("--duration", type=_positive(float),
                   help="seconds of trading: before the kill (default 10), or in all with --solo (default 60)")
    p.add_argument("--solo", action="store_true",
                   help="one node in solo mode instead: quotes, fills and inventory for --duration, then a PanicStop")
    p.add_argument("--keep-running", action="store_true", help="leave the cluster up afterwards (Ctrl-C stops it)")
    p.add_argument("--run-dir", default="run/demo", help="where logs, the audit log and node state go")
    p.add_argument("--lock", choices=("redis", "consul"),
                   help="the trading lock's backend: a private redis-server (examples/cluster/, the default), or a "
                        "Consul 1.15.4 dev agent (examples/cluster-consul/)")
    p.set_defaults(func=_run_demo)


def _run_demo(args) -> int:
    from pathlib import Path

    if args.solo:
        if args.lock is not None:
            print("understudy demo: --lock: a solo node holds no trading lock", file=sys.stderr)
            return 2
        from .demo_solo import run as run_solo

        return run_solo(args.duration or 60.0, Path(args.run_dir).resolve())
    from .demo import run

    return run(args.duration or 10.0, Path(args.run_dir).resolve(), args.keep_running, args.lock or "redis")


def _add_ops(sub) -> None:
    status = sub.add_parser("status", help="both nodes: role, epoch, lease left, heartbeat age, readiness")
    status.add_argument("--config", required=True, metavar="FILE", help="a node's config (admin URLs)")
    status.set_defaults(func=lambda a: _ops(a, "status"))
    switch = sub.add_parser("switchover", help="hand the lock to NODE: the primary cancels, then releases to it")
    switch.add_argument("--to", required=True, metavar="NODE")
    switch.add_argument("--at", metavar="TIME", help="ISO time (UTC if no offset) to do it at")
    switch.add_argument("--config", required=True, metavar="FILE")
    switch.set_defaults(func=lambda a: _ops(a, "switchover"))
    for name, text in (("pause", "stop automatic failover cluster-wide (maintenance)"),
                       ("resume", "allow automatic failover again")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--config", required=True, metavar="FILE")
        p.add_argument("--reason", default="")
        p.set_defaults(func=lambda a, n=name: _ops(a, n))
    for name, text in (("panic", "PanicStop: stop quoting and cancel every own order, latched until cleared"),
                       ("panic-clear", "clear a PanicStop (the node quotes again once healthy and primary)")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--config", required=True, metavar="FILE", help="a node's config (admin URLs and token)")
        p.add_argument("--node", action="append", metavar="NODE",
                       help="the node to act on; repeat for several (default: both nodes of the pair)")
        p.add_argument("--reason", default="operator")
        p.set_defaults(func=lambda a, n=name: _ops(a, n))
    hist = sub.add_parser("history", help="lock changes: epoch, from, to, reason and timings")
    hist.add_argument("--config", required=True, metavar="FILE")
    hist.add_argument("--limit", type=_positive(int), default=20)
    hist.set_defaults(func=lambda a: _ops(a, "history"))


def _ops(args, command: str) -> int:
    import asyncio
    import datetime

    from . import ops
    from .config import EXIT_CONFIG

    loaded = _load_config(args.config)
    if loaded is None:
        return EXIT_CONFIG
    config, secrets = loaded
    if command in ("panic", "panic-clear"):
        nodes = args.node or list(ops.admin_urls(config))
        code, text = asyncio.run(ops.panic(config, secrets, nodes, args.reason, clear=command == "panic-clear"))
        print(text, file=sys.stdout if code == 0 else sys.stderr)
        return code
    if command != "status" and (config.lock is None or config.cluster is None):
        print(f"understudy {command}: {args.config} is not a cluster node's config ([lock] and [cluster])",
              file=sys.stderr)
        return EXIT_CONFIG
    if command == "status":
        code, text = asyncio.run(ops.status(config))
    elif command == "switchover":
        at = None
        if args.at:
            try:
                at = datetime.datetime.fromisoformat(args.at)
            except ValueError:
                print(f"understudy switchover: --at: not an ISO time: {args.at!r}", file=sys.stderr)
                return EXIT_CONFIG
            at = at if at.tzinfo else at.replace(tzinfo=datetime.UTC)
        code, text = asyncio.run(ops.switchover(config, secrets, args.to, at))
    elif command in ("pause", "resume"):
        code, text = asyncio.run(ops.set_pause(config, secrets, command == "pause", args.reason))
    else:
        code, text = asyncio.run(ops.history(config, secrets, args.limit))
    print(text, file=sys.stdout if code == 0 else sys.stderr)
    return code


def _add_report(sub) -> None:
    from .report.command import add_parser

    add_parser(sub)


def _add_drill(sub) -> None:
    p = sub.add_parser("drill", help="chaos drill: inject a fault into a local pair and check the invariants",
                       description="Runs a chaos drill on a local pair (the sim, the lock backend, toxiproxy and "
                                   "two nodes, each in its own network namespace; needs root) and judges it from the "
                                   "venue's audit log. SCENARIO is a scenario name, several separated by commas, or "
                                   "'all' (every scenario the lock backend runs); 'list' prints them.")
    p.add_argument("scenario", metavar="SCENARIO")
    p.add_argument("--repeat", type=_positive(int), default=1, help="runs of each scenario")
    p.add_argument("--report", metavar="DIR", help="where reports go (default reports/drills/<time>)")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG timeline plots")
    p.add_argument("--lock", choices=("redis", "consul"), default="redis",
                   help="the lock backend: a redis-server, or Consul 1.15.4 (a dev agent, or the servers a "
                        "scenario needs); the nodes run examples/cluster/ or examples/cluster-consul/ (default redis)")
    p.set_defaults(func=_run_drill)


def _run_drill(args) -> int:
    from .chaos.cli import run

    return run(args.scenario, args.repeat, args.report, not args.no_plot, args.lock)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="understudy", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_sim(sub)
    _add_node(sub)
    _add_config(sub)
    _add_demo(sub)
    _add_ops(sub)
    _add_drill(sub)
    _add_report(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
