"""A node's configuration: one TOML file decoded into frozen, typed structs.

Everything is validated before anything connects; a problem is reported as
`section.key: what is wrong` and the process exits with code 2. Secrets are
never inline: the config names a file or an environment variable.
"""
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import msgspec

Positive = Annotated[float, msgspec.Meta(gt=0)]
NonNegative = Annotated[float, msgspec.Meta(ge=0)]
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
NodeId = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9-]{0,7}$")]
Symbol = Annotated[str, msgspec.Meta(pattern=r"^[A-Z0-9]{2,20}$")]

EXIT_CONFIG = 2


class ConfigError(Exception):
    """Raised with every problem found, one per line."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class _Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class SecretRef(_Section, kw_only=True):
    """Where a secret lives: exactly one of a file (read at start-up) or an
    environment variable."""

    file: str | None = None
    env: str | None = None


class NodeSection(_Section, kw_only=True):
    id: NodeId
    mode: Literal["solo", "cluster"] = "solo"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    state_dir: str = "state"  # the day's PnL reference and the PanicStop latch survive restarts here


class VenueSection(_Section, kw_only=True):
    rest_url: str
    stream_url: str
    ws_api_url: str
    api_key: SecretRef
    api_secret: SecretRef
    recv_window_ms: Annotated[int, msgspec.Meta(ge=1, le=60000)] = 5000
    request_timeout_s: Positive = 2.0
    reconcile_interval_s: Positive = 5.0
    max_orders_per_10s: PositiveInt = 80  # kept under the venue's limit (Binance Spot: 100)
    # The recvWindow fence (order_gate.py) needs the venue's clock: probed by GET /api/v3/time.
    clock_probe_interval_s: Positive = 0.5
    max_clock_uncertainty_ms: Positive = 50.0  # above it the node does not trade
    unreachable_after_s: Positive = 1.5  # no good probe this long: the venue path is down, not ready


class MarketSection(_Section, kw_only=True):
    symbol: Symbol
    depth_stream: Literal["100ms", "1000ms"] = "100ms"
    snapshot_limit: Annotated[int, msgspec.Meta(ge=5, le=5000)] = 1000
    # How often the symbol's status and filters are read again from exchangeInfo (weight 20 on Binance:
    # every 30 s is 40 of the 6000 a minute). A venue refusal saying the market is closed reads it at once.
    exchange_info_interval_s: Annotated[float, msgspec.Meta(ge=1, le=3600)] = 30.0


class StrategySection(_Section, kw_only=True):
    half_spread_bps: Positive = 5.0
    levels: PositiveInt = 1
    level_gap_bps: Positive = 5.0
    order_qty: Positive
    inventory_skew_bps: NonNegative = 10.0  # at max_position, quotes shift this far against the inventory
    requote_tolerance_bps: NonNegative = 2.0


class RiskSection(_Section, kw_only=True):
    inventory_target: NonNegative = 0.0  # base held when flat; position is measured from it
    max_position: Positive
    max_order_notional: Positive
    max_open_orders: PositiveInt = 4
    price_band_bps: Positive = 100.0
    max_book_age_s: Positive = 2.0
    daily_loss_limit: Positive


class RedisLockSection(_Section, kw_only=True):
    host: str = "127.0.0.1"
    port: Port = 6379
    username: str | None = None  # a Redis ACL user
    password: SecretRef | None = None
    tls: bool = False
    ca_file: str | None = None
    key_prefix: str = "understudy"


class ConsulLockSection(_Section, kw_only=True):
    # The Consul *servers* (not a client agent: it adds its own gaps to every leader election),
    # tried in turn; one on the witness, or the three of a cluster.
    urls: list[str] = msgspec.field(default_factory=lambda: ["http://127.0.0.1:8500"])
    token: SecretRef | None = None  # an ACL token
    key_prefix: str = "understudy"


class LockSection(_Section, kw_only=True):
    backend: Literal["redis", "consul"] = "redis"
    ttl_s: Annotated[float, msgspec.Meta(ge=0.2, le=30)] = 1.5
    drift: Annotated[float, msgspec.Meta(ge=0, le=0.1)] = 0.01
    margin_s: NonNegative = 0.05
    renew_every_s: Positive | None = None  # default ttl_s / 4
    redis: RedisLockSection = msgspec.field(default_factory=RedisLockSection)
    consul: ConsulLockSection = msgspec.field(default_factory=ConsulLockSection)


class ClusterSection(_Section, kw_only=True):
    peer: NodeId
    bind_host: str = "0.0.0.0"
    bind_port: Port = 7400
    peer_host: str
    peer_port: Port = 7400
    heartbeat_key: SecretRef
    heartbeat_interval_s: Positive = 0.1
    silence_s: Positive = 1.0
    max_heartbeat_age_s: Positive = 2.0  # with chrony-synchronised clocks
    nofailover: bool = False
    # A lock holder that cannot trade (halted, venue down or banned) this long while its peer is
    # ready hands the lock over; a standby whose peer is fenced without a lease this long contends.
    handover_after_s: Positive = 2.0
    peer_admin_url: str | None = None  # for `understudy status` and switchover checks


class AdminSection(_Section, kw_only=True):
    host: str = "127.0.0.1"
    port: Port = 9100
    token: SecretRef


class NodeConfig(_Section, kw_only=True):
    node: NodeSection
    venue: VenueSection
    market: MarketSection
    strategy: StrategySection
    risk: RiskSection
    admin: AdminSection
    lock: LockSection | None = None
    cluster: ClusterSection | None = None


@dataclass(frozen=True)
class Secrets:
    api_key: str
    api_secret: str
    admin_token: str
    lock_password: str | None = None  # Redis password or Consul token
    heartbeat_key: bytes | None = None

    def __repr__(self) -> str:  # never let a secret reach a log line
        return "Secrets(<redacted>)"


def load(path: str | Path) -> NodeConfig:
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None
    try:
        config = msgspec.convert(raw, NodeConfig)
    except msgspec.ValidationError as exc:
        try:
            explained = _explain(str(exc), raw)
        except Exception:  # noqa: BLE001 - never let the explanation hide the problem
            explained = str(exc)
        raise ConfigError([explained]) from None
    problems = _cross_checks(config)
    if problems:
        raise ConfigError(problems)
    return config


def load_secrets(config: NodeConfig, environ: typing.Mapping[str, str] = os.environ) -> Secrets:
    problems: list[str] = []
    values = {}
    refs = [("venue.api_key", config.venue.api_key), ("venue.api_secret", config.venue.api_secret),
            ("admin.token", config.admin.token)]
    lock_key = None
    if config.lock is not None:
        lock_key = "lock.redis.password" if config.lock.backend == "redis" else "lock.consul.token"
        ref = config.lock.redis.password if config.lock.backend == "redis" else config.lock.consul.token
        if ref is not None:
            refs.append((lock_key, ref))
    if config.cluster is not None:
        refs.append(("cluster.heartbeat_key", config.cluster.heartbeat_key))
    for key, ref in refs:
        try:
            values[key] = _read_secret(ref, environ)
        except ValueError as exc:
            problems.append(f"{key}: {exc}")
    if problems:
        raise ConfigError(problems)
    heartbeat_key = values.get("cluster.heartbeat_key")
    if heartbeat_key is not None and len(heartbeat_key) < 32:
        raise ConfigError(["cluster.heartbeat_key: at least 32 characters, please (it signs every heartbeat)"])
    return Secrets(values["venue.api_key"], values["venue.api_secret"], values["admin.token"],
                   values.get(lock_key) if lock_key else None,
                   heartbeat_key.encode() if heartbeat_key else None)


def _read_secret(ref: SecretRef, environ) -> str:
    if (ref.file is None) == (ref.env is None):
        raise ValueError("give exactly one of `file` or `env`")
    if ref.env is not None:
        value = environ.get(ref.env, "")
        if not value:
            raise ValueError(f"environment variable {ref.env} is not set or empty")
        return value
    try:
        value = Path(ref.file).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"cannot read secret file {ref.file}: {exc.strerror}") from None
    if not value:
        raise ValueError(f"secret file {ref.file} is empty")
    return value


def _cross_checks(c: NodeConfig) -> list[str]:
    problems = []
    if c.risk.max_open_orders < 2 * c.strategy.levels:
        problems.append(f"risk.max_open_orders: {c.risk.max_open_orders} cannot hold {c.strategy.levels} "
                        f"level(s) a side (strategy.levels); need at least {2 * c.strategy.levels}")
    outermost = c.strategy.half_spread_bps + (c.strategy.levels - 1) * c.strategy.level_gap_bps
    if outermost + c.strategy.inventory_skew_bps >= c.risk.price_band_bps:
        problems.append(f"risk.price_band_bps: {c.risk.price_band_bps} leaves no room for quotes reaching "
                        f"{outermost + c.strategy.inventory_skew_bps} bps from mid (spread, levels and skew)")
    if c.strategy.order_qty > c.risk.max_position:
        problems.append(f"strategy.order_qty: {c.strategy.order_qty} exceeds risk.max_position "
                        f"{c.risk.max_position}")
    if c.node.mode == "cluster":
        for section in ("cluster", "lock"):
            if getattr(c, section) is None:
                problems.append(f"{section}: required when node.mode is 'cluster'")
        if c.cluster is not None:
            problems += _timing_problems(c)
            if c.cluster.peer == c.node.id:
                problems.append(f"cluster.peer: {c.cluster.peer!r} is this node's own id")
    if c.lock is not None:
        lease = c.lock.ttl_s * (1 - c.lock.drift) - c.lock.margin_s
        if lease <= 0:
            problems.append(f"lock.margin_s: {c.lock.margin_s} leaves no lease out of a {c.lock.ttl_s} s ttl")
        renew = c.lock.renew_every_s if c.lock.renew_every_s is not None else c.lock.ttl_s / 4
        if renew >= lease / 2:
            problems.append(f"lock.renew_every_s: {renew} s leaves no room for a retry within the {lease:.3f} s "
                            "lease; renew at most every ttl/3")
        if c.lock.backend == "consul":
            if not c.lock.consul.urls:
                problems.append("lock.consul.urls: name at least one Consul server")
            for url in c.lock.consul.urls:
                if not re.match(r"^https?://[^/\s]+/?$", url):
                    problems.append(f"lock.consul.urls: expected http(s)://host:port, got {url!r}")
        if c.lock.redis.ca_file and not c.lock.redis.tls:
            problems.append("lock.redis.ca_file: set, but lock.redis.tls is false")
    if c.venue.clock_probe_interval_s * 2 > c.venue.unreachable_after_s:
        problems.append(f"venue.unreachable_after_s: {c.venue.unreachable_after_s} s is under two clock probes "
                        f"(venue.clock_probe_interval_s {c.venue.clock_probe_interval_s} s): one slow probe would "
                        "halt trading")
    for key in ("rest_url", "stream_url", "ws_api_url"):
        url = getattr(c.venue, key)
        scheme = ("http", "https") if key == "rest_url" else ("ws", "wss")
        if not re.match(rf"^({'|'.join(scheme)})://[^/\s]+", url):
            problems.append(f"venue.{key}: expected a {'/'.join(scheme)} URL, got {url!r}")
    return problems


TAKEOVER_BUDGET_S = 3.0
# How many TTLs after a silent holder's last renewal each backend may take to free its key:
# Consul's session timers run at twice the TTL (consul_backend.py), Redis expires keys on time.
LOCK_FREES_AFTER_TTLS = {"redis": 1.0, "consul": 2.0}
TAKEOVER_STEPS_S = 0.3  # protective cancel, reconcile and the first quote, with room to spare


def takeover_estimate_s(c: NodeConfig) -> float:
    """Silence detection and the old lease's expiry run side by side."""
    return max(c.cluster.silence_s, lock_frees_within_s(c.lock) if c.lock else 0.0) + TAKEOVER_STEPS_S


def lock_frees_within_s(lock: LockSection) -> float:
    return lock.ttl_s * LOCK_FREES_AFTER_TTLS[lock.backend]


def _timing_problems(c: NodeConfig) -> list[str]:
    problems = []
    k = c.cluster
    if k.silence_s < 3 * k.heartbeat_interval_s:
        problems.append(f"cluster.silence_s: {k.silence_s} s is under three heartbeat intervals "
                        f"({3 * k.heartbeat_interval_s:.3f} s): one late datagram would cause a failover")
    if k.max_heartbeat_age_s < k.silence_s:
        problems.append(f"cluster.max_heartbeat_age_s: {k.max_heartbeat_age_s} s is under the silence threshold")
    if c.lock is not None:
        estimate = takeover_estimate_s(c)
        if estimate > TAKEOVER_BUDGET_S:
            why = (f" (Consul frees a silent holder's key up to 2 x ttl_s = {lock_frees_within_s(c.lock):.2f} s "
                   "after its last renewal; a Consul lock wants ttl_s 0.5)") if c.lock.backend == "consul" else ""
            problems.append(f"cluster.silence_s / lock.ttl_s: takeover would take about {estimate:.2f} s, "
                            f"over the {TAKEOVER_BUDGET_S:.0f} s budget{why}")
    return problems


_TYPE_WORDS = {"float": "a number", "int": "an integer", "str": "a string", "bool": "true or false",
               "object": "a table", "array": "a list"}


def _explain(message: str, raw: dict) -> str:
    """msgspec's message in the operator's words: `risk.max_position: expected a
    positive number, got -1`."""
    text, _, where = message.partition(" - at `$")
    path = where.rstrip("`").lstrip(".")
    unknown = re.match(r"Object contains unknown field `(.+)`", text)
    if unknown:
        return f"{_join(path, unknown.group(1))}: unknown key"
    missing = re.match(r"Object missing required field `(.+)`", text)
    if missing:
        return f"{_join(path, missing.group(1))}: required key is missing"
    got = _lookup(raw, path)
    shown = repr(got) if isinstance(got, str) else str(got).lower() if isinstance(got, bool) else got
    bound = re.match(r"Expected `(\w+)` (>=|>|<=|<) (\S+)", text)
    if bound:
        kind, op, limit = bound.groups()
        if op == ">" and float(limit) == 0:
            return f"{path}: expected a positive number, got {shown}"
        limit = limit[:-2] if limit.endswith(".0") else limit
        return f"{path}: expected {_TYPE_WORDS.get(kind, kind)} {op} {limit}, got {shown}"
    wrong_type = re.match(r"Expected `([\w |]+)`, got `(\w+)`", text)
    if wrong_type:
        return f"{path}: expected {_TYPE_WORDS.get(wrong_type.group(1), wrong_type.group(1))}, got {shown}"
    if text.startswith("Invalid enum value"):
        allowed = _allowed_values(path)
        return f"{path}: expected one of {', '.join(map(repr, allowed))}, got {shown}"
    if text.startswith("Expected `str` matching regex"):
        return f"{path}: {shown} does not match the required pattern {text.split('regex ')[1]}"
    return f"{path or 'config'}: {text[0].lower()}{text[1:]}"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _lookup(raw, path: str):
    for part in path.split(".") if path else []:
        if not isinstance(raw, dict):
            return None
        raw = raw.get(part)
    return raw


def _allowed_values(path: str) -> tuple:
    hint: typing.Any = NodeConfig
    for part in path.split("."):
        hint = typing.get_type_hints(_unwrap(hint), include_extras=True).get(part)
    return typing.get_args(_unwrap(hint))


def _unwrap(hint):
    """`X | None` and `Annotated[X, ...]` down to X."""
    while True:
        if typing.get_origin(hint) is Annotated:
            hint = typing.get_args(hint)[0]
            continue
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1:
            hint = args[0]
            continue
        return hint
