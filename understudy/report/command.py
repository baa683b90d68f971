"""`understudy report daily`: argument parsing and the run."""
import sys

EXIT_NO_DATA = 1


def add_parser(sub) -> None:
    report = sub.add_parser("report", help="operations reports built from the nodes' logs and the lock history")
    kinds = report.add_subparsers(dest="report_command", required=True)
    daily = kinds.add_parser(
        "daily", help="one UTC day: failovers, WS reconnects, depth lag, quoting, orders, risk events, balances",
        description="Reads the nodes' JSON log lines (files, or - for stdin: `journalctl -u understudy-node -o cat`)"
                    " and, with --config, the lock history from the lock backend.")
    daily.add_argument("logs", nargs="+", metavar="LOG", help="a node's JSON-lines log; - reads stdin")
    daily.add_argument("--date", default="yesterday", help="YYYY-MM-DD, 'today' (so far) or 'yesterday' (default)")
    daily.add_argument("--config", metavar="FILE", help="a node's config: adds the lock history (recommended)")
    daily.add_argument("--json", action="store_true", help="print JSON instead of text")
    daily.set_defaults(func=run_daily)


def run_daily(args) -> int:
    import asyncio
    import datetime
    import json

    from ..config import EXIT_CONFIG
    from ..coordinator.backend import BackendUnavailable
    from . import daily, render, sources

    now = datetime.datetime.now(datetime.UTC)
    try:
        window = sources.Window(sources.parse_day(args.date, now.date()))
        records, _ = sources.read_logs(args.logs, window)
    except sources.ReportInputError as exc:
        print(f"understudy report daily: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    history = None
    if args.config:
        from ..cli import _load_config

        loaded = _load_config(args.config)
        if loaded is None:
            return EXIT_CONFIG
        config, secrets = loaded
        if config.lock is None:
            print(f"understudy report daily: {args.config} has no [lock] section: no lock history to read",
                  file=sys.stderr)
            return EXIT_CONFIG
        try:
            history = asyncio.run(sources.read_history(config, secrets, window))
        except BackendUnavailable as exc:
            print(f"understudy report daily: lock backend unreachable ({exc}); reporting from the logs only",
                  file=sys.stderr)
    report = daily.build(window, records, history, now)
    print(json.dumps(report, indent=2) if args.json else render.text(report))
    if not report["sources"]["stats_lines"]:
        print(f"understudy report daily: no 'ops stats' lines for {window.day} in {', '.join(args.logs)}",
              file=sys.stderr)
        return EXIT_NO_DATA
    return 0
