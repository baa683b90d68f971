"""What a drill is judged on, read into plain records: the venue's audit log
(the ground truth of what reached the venue and when), the nodes' JSON logs
(when each node held which epoch) and the drill's own record of what it did.

Every time is wall-clock seconds since the epoch: the venue, the nodes and
the drill run on one host (on real hosts, chrony keeps them within
milliseconds, far inside the windows the checker allows).
"""
import datetime
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..node import client_ids


@dataclass(frozen=True)
class OrderRequest:
    """One order-creating request that reached the venue, whatever its outcome."""

    client_id: str
    node: str | None  # from the client id; None if it does not parse
    epoch: int | None
    recv: float  # the venue received it
    done: float  # the venue answered
    accepted: bool
    code: int | None = None
    client_ts: float | None = None  # the signed `timestamp` (the instant the gate let it through), if audited
    recv_window: float | None = None  # the signed `recvWindow`, in seconds, if audited


@dataclass(frozen=True)
class OrderLife:
    """An accepted order from when the venue received it until it left the book."""

    client_id: str
    node: str | None
    epoch: int | None
    start: float
    end: float | None  # None: still resting when the evidence was taken


@dataclass(frozen=True)
class CancelAll:
    at: float
    accepted: bool
    cancelled: int
    code: int | None = None  # -2011: nothing was open
    client_ids: tuple[str, ...] = ()  # what it cancelled (an order list's legs included)


@dataclass(frozen=True)
class NodeEvent:
    """From a node's log. kind: role, acquired, lost, released, renew-failed,
    takeover, peer-lease, stopped."""

    at: float
    node: str
    kind: str
    epoch: int | None = None
    role: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class DrillEvent:
    """What the drill did. kind: start, stop, kill, freeze, thaw, fault, heal,
    lock-down, lock-up, lock-garbage, lock-sane (the lock link rerouted to
    something that is not the backend, and back), hb-cut, hb-heal (node =
    sender, detail = receiver), rest-slow, rest-fast, streams-down,
    streams-up, venue-down, venue-up (REST and streams), venue-banned,
    venue-unbanned, backend-restart (every lock server killed and started
    again; detail says whether it keeps its data), backend-up (serving again
    after it), lock-server-kill, lock-server-start (one server of a Consul
    cluster), lock-leader (the servers agree on a new leader), switchover
    (node = target), load-start, load-stop, order-list (placed on the pair's
    account by another client), teardown, exited (after a stop: detail says
    whether SIGTERM sufficed), note."""

    at: float
    kind: str
    node: str | None = None
    detail: str = ""


@dataclass
class Evidence:
    orders: list[OrderRequest] = field(default_factory=list)
    lives: list[OrderLife] = field(default_factory=list)
    cancel_alls: list[CancelAll] = field(default_factory=list)
    node_events: list[NodeEvent] = field(default_factory=list)
    drill_events: list[DrillEvent] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0
    # Orders the drill itself placed on the pair's account through another client (an order list, say):
    # no node's orders, so no epoch's either.
    foreign_client_ids: frozenset[str] = frozenset()


def _author(client_id: str | None) -> tuple[str | None, int | None]:
    parsed = client_ids.parse(client_id or "")
    return (parsed.node, parsed.epoch) if parsed else (None, None)


def _cancelled_ids(entries: list) -> list[str]:
    """A cancel-all's client ids: plain ids, or Binance's reply entries — an order's
    (`origClientOrderId`) or an order list's (its legs' `clientOrderId`s)."""
    ids: list[str] = []
    for entry in entries:
        if isinstance(entry, str):
            ids.append(entry)
        elif isinstance(entry, dict) and "orders" in entry:
            ids += [leg.get("clientOrderId") for leg in entry["orders"] if leg.get("clientOrderId")]
        elif isinstance(entry, dict) and entry.get("origClientOrderId"):
            ids.append(entry["origClientOrderId"])
    return ids


def _signed_at(record: dict) -> float | None:
    """The signed `timestamp`, in seconds: exact when the venue audits microseconds."""
    if record.get("client_ts_us"):
        return int(record["client_ts_us"]) / 1e6
    return int(record["client_ts_ms"]) / 1000 if record.get("client_ts_ms") else None


def read_audit(lines, api_key: str, since: float = 0.0) -> tuple[list[OrderRequest], list[OrderLife], list[CancelAll]]:
    """The venue's audit records of one account (from `since` on). An order list counts as one order
    request (by the list's client id) and each of its legs as an order on the book."""
    orders: list[OrderRequest] = []
    created: dict[str, tuple[float, str | None, int | None]] = {}
    ended: dict[str, float] = {}
    cancel_alls: list[CancelAll] = []
    for line in lines:
        if not line.strip():
            continue
        record = json.loads(line)
        if record.get("api_key") != api_key:
            continue
        if record["kind"] == "order_done":
            ended[record["client_order_id"]] = record["ts_us"] / 1e6
            continue
        recv, done = record["recv_us"] / 1e6, record["done_us"] / 1e6
        if recv < since:
            continue
        accepted = record.get("outcome") == "accepted"
        if record["action"] in ("new", "new_order_list"):
            cid = record.get("client_order_id") or ""
            node, epoch = _author(cid)
            window = record.get("recv_window_ms")
            orders.append(OrderRequest(cid, node, epoch, recv, done, accepted, record.get("code"),
                                       _signed_at(record), float(window) / 1000 if window is not None else None))
            if accepted:
                for placed in record.get("leg_client_order_ids") or [cid]:
                    created[placed] = (recv, *_author(placed))
        elif record["action"] == "cancel_all":
            cancelled = _cancelled_ids(record.get("cancelled") or [])
            cancel_alls.append(CancelAll(recv, accepted, len(cancelled), record.get("code"), tuple(cancelled)))
    lives = [OrderLife(cid, node, epoch, start, ended.get(cid)) for cid, (start, node, epoch) in created.items()]
    lives.sort(key=lambda life: life.start)
    return orders, lives, cancel_alls


def _when(text: str) -> float:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# The log lines that say when a node started or stopped holding an epoch, and its role changes.
_LOG_EVENTS = {
    "trading lock acquired": "acquired",
    "trading lock lost": "lost",
    "trading lock released": "released",
    "lease renewal failed": "renew-failed",
    "takeover complete": "takeover",
    "role changed": "role",
    "stopped": "stopped",
}


def read_node_log(lines, node: str) -> list[NodeEvent]:
    events: list[NodeEvent] = []
    holding: int | None = None
    for line in lines:
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        kind = _LOG_EVENTS.get(record.get("event"))
        if kind is None and "peer lease" in str(record.get("event", "")):
            kind = "peer-lease"
        if kind is None or "timestamp" not in record:
            continue
        at = _when(record["timestamp"])
        epoch = record.get("epoch")
        if kind == "acquired":
            holding = epoch
        elif kind in ("lost", "released", "stopped"):
            epoch = epoch if epoch is not None else holding
            holding = None
        if kind == "role":
            events.append(NodeEvent(at, node, kind, epoch, record.get("new"), record.get("reason", "")))
        elif kind == "peer-lease":
            events.append(NodeEvent(at, node, kind, epoch, None, record["event"]))
        else:
            detail = record.get("reason") or record.get("error") or ""
            # For an acquisition, the role the node was in when it logged it (a standby should not acquire).
            role = record.get("role") if kind == "acquired" else None
            events.append(NodeEvent(at, node, kind, epoch, role, str(detail)))
    return events


def read_node_log_file(path: Path, node: str) -> list[NodeEvent]:
    if not path.exists():
        return []
    with open(path, errors="replace") as fh:
        return read_node_log(fh, node)
