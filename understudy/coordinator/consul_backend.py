"""The trading lock on Consul (1.15), over its HTTP API.

What Consul itself does, measured on the real servers, decides the shape:
- **A TTL session, sub-second.** Consul frees a silent session's keys between
  one and two TTLs after its last renewal (its timers run at 2×TTL), so the
  lease's safe deadline is derived from the TTL (Consul's documented lower
  bound) and the takeover budget from 2×TTL (`frees_within_s`). The servers'
  `session_ttl_min` (10 s by default) must be lowered for that; `check()`
  reads it at start-up and refuses a TTL below it.
- **No health checks on the session** (`NodeChecks: []`): a check on the
  holder's own agent never turns critical when the whole host dies with that
  agent, and one on a node that leaves the cluster invalidates the session at
  the worst time. The session lives on a catalog node of our own
  (`<prefix>-<node>`), which no agent owns and so never leaves; only the
  holder's silence or its release ends it.
- **`LockDelay: 0`**: the default 15 s lock-delay (with the 10 s TTL floor) is
  why Consul-lock failovers commonly take 15–40 s.
- **One transaction per decision**: the hand-over marker unchanged, the epoch
  bumped with check-and-set and the key locked, all or nothing, so a lost race
  burns no epoch; `restore`, `release` and `release_to` are transactions too.
- **Renewals go to the servers directly**, one short try each, rotating: a
  leader election interrupts writes for ~3 s, and a client agent in between
  adds its own gaps; the peer lease carries the holder through the rest.
- **Every non-2xx is an answer**: 5xx and refused tokens are
  `BackendUnavailable` (it may pass), anything else unexpected is
  `BackendNonsense` (it will not), and so is a reply that does not decode.

We keep this small aiohttp client rather than py-consul: py-consul 1.8's
`consul.aio` refuses session TTLs under 10 s and cannot send `NodeChecks`,
the two things this lock needs (README, "The Consul lock").
"""
import base64
import json
import re
import time
import uuid
from dataclasses import asdict, dataclass

import aiohttp
import msgspec

from .backend import (BackendMisconfigured, BackendNonsense, BackendUnavailable, HistoryEntry, LockBackend,
                      LockState, Pause, bounded, next_epoch)

_CAS_ATTEMPTS = 10
PER_TRY_S = 0.3  # one server's share of a call when there are others to try


@dataclass(frozen=True)
class ConsulSettings:
    urls: tuple[str, ...] = ("http://127.0.0.1:8500",)
    token: str | None = None
    key_prefix: str = "understudy"
    per_try_s: float = PER_TRY_S


# -- Consul's replies, typed: anything else is nonsense ------------------------------
class KVEntry(msgspec.Struct):
    Key: str
    ModifyIndex: int
    Value: str | None = None  # base64
    Session: str | None = None  # the session holding the key's lock, if any
    LockIndex: int = 0


class TxnResult(msgspec.Struct):
    KV: KVEntry | None = None


class TxnError(msgspec.Struct):
    OpIndex: int
    What: str


class TxnReply(msgspec.Struct):
    Results: list[TxnResult] | None = None
    Errors: list[TxnError] | None = None


class SessionCreated(msgspec.Struct):
    ID: str


class SessionEntry(msgspec.Struct):
    ID: str


class AgentDebugConfig(msgspec.Struct):
    SessionTTLMin: str = "10s"


class AgentConfig(msgspec.Struct):
    Version: str = ""
    NodeName: str = ""


class AgentSelf(msgspec.Struct):
    Config: AgentConfig
    DebugConfig: AgentDebugConfig = msgspec.field(default_factory=AgentDebugConfig)


def _decode(raw: bytes, kind, what: str):
    try:
        return msgspec.json.decode(raw, type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BackendNonsense(f"{what}: the reply does not decode ({exc}): {raw[:120]!r}") from None


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _value(entry: KVEntry | None) -> str | None:
    if entry is None or entry.Value is None:
        return None
    try:
        return base64.b64decode(entry.Value, validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        raise BackendNonsense(f"key {entry.Key}: its value is not base64 UTF-8") from None


_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_go_duration(text: str) -> float:
    """Seconds in a Go duration string as Consul prints one ('100ms', '1m30s')."""
    parts = _GO_DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Go duration: {text!r}")
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


def _duration(seconds: float) -> str:
    return f"{int(round(seconds * 1000))}ms"


class ConsulBackend(LockBackend):
    def __init__(self, settings: ConsulSettings, session: aiohttp.ClientSession | None = None):
        if not settings.urls:
            raise ValueError("ConsulSettings.urls: at least one Consul server")
        self.settings = settings
        self._urls = [u.rstrip("/") for u in settings.urls]
        self._current = 0  # the server calls go to first; moves on whenever one fails
        self._http = session
        self._own_http = session is None
        p = settings.key_prefix.strip("/")
        self._prefix = p
        self._lock, self._epoch, self._handover = f"{p}/lock", f"{p}/epoch", f"{p}/handover"
        self._pause, self._history = f"{p}/pause", f"{p}/history"
        self._quarantine = f"{p}/quarantine"
        self._session_id: str | None = None
        self._registered: str | None = None  # the catalog node our sessions live on, once registered
        self.server_failovers = 0  # calls that moved on to another server

    def frees_within_s(self, ttl_s: float) -> float:
        return 2 * ttl_s  # Consul's session timers run at twice the TTL

    # -- HTTP ------------------------------------------------------------------------
    async def _once(self, method: str, url: str, what: str, params: dict | None, body: bytes | None,
                    ok: tuple[int, ...]) -> tuple[int, int | None, bytes]:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        headers = {"X-Consul-Token": self.settings.token} if self.settings.token else {}
        try:
            async with self._http.request(method, url, params=params, data=body, headers=headers) as resp:
                raw = await resp.read()
                status = resp.status
                index = resp.headers.get("X-Consul-Index", "")
        except aiohttp.ClientError as exc:
            raise BackendUnavailable(f"{what}: {type(exc).__name__}: {exc}") from exc
        if status >= 500 or status == 429:
            raise BackendUnavailable(f"{what}: HTTP {status}: {raw[:200].decode(errors='replace')}")
        if status in (401, 403):
            raise BackendUnavailable(f"{what}: Consul refused the token (HTTP {status}: "
                                     f"{raw[:120].decode(errors='replace')})")
        if status not in ok:
            raise BackendNonsense(f"{what}: HTTP {status}: {raw[:200].decode(errors='replace')}")
        return status, int(index) if index.isdigit() else None, raw

    async def _call(self, method: str, path: str, deadline: float, what: str, *, params: dict | None = None,
                    body: bytes | str | None = None, ok: tuple[int, ...] = (200,),
                    long_poll: bool = False) -> tuple[int, int | None, bytes]:
        """(status, X-Consul-Index, body) from the first server that answers.

        With several servers each gets one short try (`per_try_s`), in turn,
        until one answers or the deadline passes; a long poll (a blocking
        query) gets the whole deadline. A write retried on the next server may
        have been applied by the first: every write here is a transaction or
        a check-and-set that then fails, or is idempotent."""
        if isinstance(body, str):
            body = body.encode()
        failures: list[str] = []
        for _ in range(len(self._urls)):
            now = time.monotonic()
            if now >= deadline:
                break
            several = len(self._urls) > 1 and not long_poll
            try_deadline = min(deadline, now + self.settings.per_try_s) if several else deadline
            url = self._urls[self._current]
            try:
                return await bounded(self._once(method, url + path, what, params, body, ok), try_deadline, what)
            except BackendUnavailable as exc:
                failures.append(f"{url}: {exc}")
                if len(self._urls) > 1:
                    self._current = (self._current + 1) % len(self._urls)
                    self.server_failovers += 1
        raise BackendUnavailable("; ".join(failures) or f"{what}: deadline already passed")

    async def _txn(self, ops: list[dict], deadline: float, what: str) -> bool:
        """True if every operation applied; False if Consul rolled the transaction back."""
        status, _, raw = await self._call("PUT", "/v1/txn", deadline, what, body=json.dumps(ops), ok=(200, 409))
        reply = _decode(raw, TxnReply, what)
        if status == 409 and not reply.Errors:
            raise BackendNonsense(f"{what}: a rolled-back transaction without errors")
        return status == 200

    async def _read(self, key: str, deadline: float, consistent: bool = False) -> KVEntry | None:
        params = {"consistent": ""} if consistent else None
        status, _, raw = await self._call("GET", f"/v1/kv/{key}", deadline, f"read {key}", ok=(200, 404),
                                          params=params)
        if status == 404:
            return None
        entries = _decode(raw, list[KVEntry], f"read {key}")
        return entries[0] if entries else None

    async def _snapshot(self, deadline: float) -> dict[str, KVEntry]:
        """The lock's keys (lock, epoch, hand-over marker, quarantine) read at one index."""
        ops = [{"KV": {"Verb": "get-tree", "Key": f"{self._prefix}/"}}]
        status, _, raw = await self._call("PUT", "/v1/txn", deadline, "read the lock", body=json.dumps(ops),
                                          ok=(200,))
        reply = _decode(raw, TxnReply, "read the lock")
        keys = {r.KV.Key: r.KV for r in reply.Results or [] if r.KV is not None}
        return {k: v for k, v in keys.items() if k in (self._lock, self._epoch, self._handover, self._quarantine)}

    # -- the session ----------------------------------------------------------------
    def _catalog_node(self, node: str) -> str:
        return f"{self._prefix.replace('/', '-')}-{node}"

    async def _register_node(self, node: str, deadline: float) -> str:
        name = self._catalog_node(node)
        if self._registered != name:
            await self._call("PUT", "/v1/catalog/register", deadline, "register the lock's catalog node",
                             body=json.dumps({"Node": name, "Address": node, "SkipNodeUpdate": True,
                                              "NodeMeta": {"understudy": "trading-lock"}}))
            self._registered = name
        return name

    async def _renew_session(self, deadline: float) -> bool:
        """False once Consul has invalidated the session (renewals come too late, or it was destroyed)."""
        if self._session_id is None:
            return False
        status, _, _ = await self._call("PUT", f"/v1/session/renew/{self._session_id}", deadline, "renew",
                                        ok=(200, 404))
        if status == 404:
            # A server that has just become leader answers from its state before it has applied its log's
            # tail (Session.Renew reads without a barrier): "not found" for a session that exists, measured
            # after a server restart. Only a consistent read is believed: Consul holds one until the new
            # leader has caught up (its barrier), past our deadline it is a failed renewal like any other.
            if await self._session_exists(deadline):
                raise BackendUnavailable("renew: a leader not yet caught up did not know the session")
            self._session_id = None
            return False
        return True

    async def _session_exists(self, deadline: float) -> bool:
        _, _, raw = await self._call("GET", f"/v1/session/info/{self._session_id}", deadline, "session-info",
                                     params={"consistent": ""})
        return bool(_decode(raw, list[SessionEntry] | None, "session-info"))

    async def _fresh_session(self, node: str, ttl_s: float, deadline: float) -> str:
        """Our live session, renewed now, or a new one."""
        if not await self._renew_session(deadline):
            self._session_id = await self._create_session(node, "trading lock", ttl_s, deadline)
        return self._session_id

    async def _create_session(self, node: str, purpose: str, ttl_s: float, deadline: float) -> str:
        catalog_node = await self._register_node(node, deadline)
        body = json.dumps({"Name": f"understudy {purpose} ({node}) {uuid.uuid4().hex[:8]}",
                           "Node": catalog_node, "NodeChecks": [], "LockDelay": "0s", "Behavior": "release",
                           "TTL": _duration(ttl_s)})
        try:
            _, _, raw = await self._call("PUT", "/v1/session/create", deadline, "session-create", body=body)
        except (BackendUnavailable, BackendNonsense) as exc:
            if "Missing node registration" in str(exc):
                self._registered = None  # someone deregistered it: register again next time
            if "Invalid Session TTL" in str(exc):
                raise BackendMisconfigured(f"lock.ttl_s: Consul refused a {_duration(ttl_s)} session TTL ({exc}); "
                                           "the servers' session_ttl_min must be at most that") from None
            raise
        return _decode(raw, SessionCreated, "session-create").ID

    # -- the API -------------------------------------------------------------------------
    async def check(self, ttl_s: float, deadline: float) -> None:
        _, _, raw = await self._call("GET", "/v1/agent/self", deadline, "agent-self")
        agent = _decode(raw, AgentSelf, "agent-self")
        try:
            minimum = parse_go_duration(agent.DebugConfig.SessionTTLMin)
        except ValueError as exc:
            raise BackendNonsense(f"agent-self: SessionTTLMin: {exc}") from None
        if ttl_s < minimum:
            raise BackendMisconfigured(
                f"lock.ttl_s: {ttl_s} s is under the Consul servers' session_ttl_min "
                f"({agent.DebugConfig.SessionTTLMin}, on {agent.Config.NodeName}): set session_ttl_min "
                f"to at most {_duration(ttl_s)} on every server (README, 'The Consul lock')")

    def _marker_admits(self, marker: KVEntry | None, node: str) -> bool:
        value = _value(marker)
        if not value:
            return True
        target, _, until = value.partition("|")
        try:
            return target == node or time.time() >= float(until)
        except ValueError:
            raise BackendNonsense(f"hand-over marker: {value!r} is not 'node|until'") from None

    def _marker_guard(self, marker: KVEntry | None) -> dict:
        """The transaction's condition on the hand-over marker: still absent, or the one we read
        (which the acquisition then consumes)."""
        if marker is None:
            return {"KV": {"Verb": "check-not-exists", "Key": self._handover}}
        return {"KV": {"Verb": "delete-cas", "Key": self._handover, "Index": marker.ModifyIndex}}

    async def try_acquire(self, node: str, ttl_s: float, epoch_floor: int, deadline: float) -> int | None:
        keys = await self._snapshot(deadline)
        marker, lock, epoch_entry = keys.get(self._handover), keys.get(self._lock), keys.get(self._epoch)
        if not self._marker_admits(marker, node):
            return None
        if lock is not None and lock.Session:
            # Held is held, by our own session too (as Redis's SET NX): a node whose release of it is still
            # in flight must not take it again at a new epoch, and its old lease must lapse first.
            return None
        quarantine = keys.get(self._quarantine)
        if epoch_entry is None and (quarantine is None or quarantine.Session):
            # New, or its data lost while a lease granted before may still run: wait that out.
            if quarantine is None:
                await self._start_quarantine(node, ttl_s, deadline)
            return None
        session = await self._fresh_session(node, ttl_s, deadline)
        epoch = next_epoch(self._epoch_value(epoch_entry), int(time.time() * 1000), epoch_floor)
        ops = [self._marker_guard(marker),
               {"KV": {"Verb": "cas", "Key": self._epoch, "Value": _b64(str(epoch)),
                       "Index": epoch_entry.ModifyIndex if epoch_entry else 0}},
               {"KV": {"Verb": "lock", "Key": self._lock, "Value": _b64(f"{node}|{epoch}"), "Session": session}}]
        if quarantine is not None:
            ops.append({"KV": {"Verb": "delete-cas", "Key": self._quarantine, "Index": quarantine.ModifyIndex}})
        return epoch if await self._txn(ops, deadline, "acquire") else None

    async def _start_quarantine(self, node: str, ttl_s: float, deadline: float) -> None:
        """Locks the quarantine key with a session nobody renews: Consul ends it one to two TTLs
        from now, and every lease granted before the data went has ended by then. Consul's own
        timer, not a wall clock, so no node's clock has a say."""
        session = await self._create_session(node, "lock quarantine", ttl_s, deadline)
        ops = [{"KV": {"Verb": "check-not-exists", "Key": self._epoch}},
               {"KV": {"Verb": "check-not-exists", "Key": self._quarantine}},
               {"KV": {"Verb": "lock", "Key": self._quarantine, "Value": _b64(node), "Session": session}}]
        await self._txn(ops, deadline, "quarantine")

    def _epoch_value(self, entry: KVEntry | None) -> int:
        text = _value(entry)
        if text is None:
            return 0
        if not text.isdigit():
            raise BackendNonsense(f"epoch key: {text!r} is not a number")
        return int(text)

    def _ours(self, entry: KVEntry | None, node: str, epoch: int) -> bool:
        return (entry is not None and self._session_id is not None and entry.Session == self._session_id
                and _value(entry) == f"{node}|{epoch}")

    async def renew(self, node: str, epoch: int, ttl_s: float, deadline: float) -> bool:
        # The session's TTL restarts when the leader takes the renewal: after this call was sent.
        if not await self._renew_session(deadline):
            return False
        if self._ours(await self._read(self._lock, deadline), node, epoch):
            return True
        # "Not ours" from a default read may be a leader's stale state (above): believed only consistently.
        return self._ours(await self._read(self._lock, deadline, consistent=True), node, epoch)

    async def restore(self, node: str, epoch: int, ttl_s: float, deadline: float) -> bool:
        keys = await self._snapshot(deadline)
        epoch_entry, lock = keys.get(self._epoch), keys.get(self._lock)
        if epoch_entry is None or self._epoch_value(epoch_entry) != epoch:
            return False  # acquired by someone since, or the data is gone
        if self._handover in keys or (lock is not None and lock.Session):
            return False
        session = await self._fresh_session(node, ttl_s, deadline)
        # Every acquisition bumps the epoch in its own transaction: an unchanged epoch key
        # means nobody acquired since.
        ops = [{"KV": {"Verb": "check-index", "Key": self._epoch, "Index": epoch_entry.ModifyIndex}},
               {"KV": {"Verb": "check-not-exists", "Key": self._handover}},
               {"KV": {"Verb": "lock", "Key": self._lock, "Value": _b64(f"{node}|{epoch}"), "Session": session}}]
        return await self._txn(ops, deadline, "restore")

    async def _release(self, node: str, epoch: int, deadline: float, marker: str | None) -> bool:
        lock = await self._read(self._lock, deadline)
        if not self._ours(lock, node, epoch):
            return False
        ops = [{"KV": {"Verb": "check-index", "Key": self._lock, "Index": lock.ModifyIndex}}]
        if marker is not None:  # in the same transaction: nobody but the target can slip in between
            ops.append({"KV": {"Verb": "set", "Key": self._handover, "Value": _b64(marker)}})
        ops.append({"KV": {"Verb": "unlock", "Key": self._lock, "Value": lock.Value, "Session": self._session_id}})
        # The session is not destroyed: an acquisition by this node running alongside (a candidate
        # right after a release) may have locked the key again with it, and destroying it would free
        # that newer epoch's key under its lease. Unrenewed, it ends by itself within two TTLs.
        return await self._txn(ops, deadline, "release")

    async def release(self, node: str, epoch: int, deadline: float) -> bool:
        return await self._release(node, epoch, deadline, None)

    async def release_to(self, node: str, epoch: int, target: str, marker_ttl_s: float, deadline: float) -> bool:
        return await self._release(node, epoch, deadline, f"{target}|{time.time() + marker_ttl_s}")

    async def inspect(self, deadline: float) -> LockState:
        keys = await self._snapshot(deadline)
        lock, marker = keys.get(self._lock), keys.get(self._handover)
        holder = epoch = None
        if lock is not None and lock.Session:
            holder, _, epoch_text = (_value(lock) or "").rpartition("|")
            epoch = int(epoch_text) if epoch_text.isdigit() else None
        handover = None
        if _value(marker) and not self._marker_admits(marker, ""):
            handover = _value(marker).partition("|")[0]
        # Consul does not expose a key's remaining life: it ends with the holder's session.
        return LockState(holder or None, epoch, None, handover, self._epoch_value(keys.get(self._epoch)))

    async def wait_until_free(self, timeout_s: float, deadline: float) -> None:
        """A blocking query on the lock key: returns as soon as Consul changes it, or at `timeout_s`."""
        until = min(deadline, time.monotonic() + timeout_s)
        status, index, raw = await self._call("GET", f"/v1/kv/{self._lock}", deadline, "wait", ok=(200, 404))
        while status == 200 and any(e.Session for e in _decode(raw, list[KVEntry], "wait")):
            wait = until - time.monotonic()
            if wait <= 0.01 or index is None:
                return
            status, index, raw = await self._call(
                "GET", f"/v1/kv/{self._lock}", min(deadline, until + 0.5), "wait", ok=(200, 404),
                params={"index": str(index), "wait": _duration(wait)}, long_poll=True)

    async def get_pause(self, deadline: float) -> Pause:
        value = _value(await self._read(self._pause, deadline))
        return _decode(value.encode(), Pause, "pause flag") if value else Pause(False)

    async def set_pause(self, pause: Pause, deadline: float) -> None:
        _, _, raw = await self._call("PUT", f"/v1/kv/{self._pause}", deadline, "set-pause",
                                     body=json.dumps(asdict(pause)))
        if _decode(raw, bool, "set-pause") is not True:
            raise BackendNonsense("set-pause: Consul did not store the pause flag")

    async def append_history(self, entry: HistoryEntry, keep: int, deadline: float) -> None:
        for _ in range(_CAS_ATTEMPTS):
            current = await self._read(self._history, deadline)
            rows = _decode((_value(current) or "[]").encode(), list[HistoryEntry], "history")
            rows = [entry, *rows][:keep]
            _, _, raw = await self._call("PUT", f"/v1/kv/{self._history}", deadline, "history",
                                         params={"cas": str(current.ModifyIndex if current else 0)},
                                         body=json.dumps([asdict(r) for r in rows]))
            if _decode(raw, bool, "history") is True:
                return
        raise BackendUnavailable("history: too much contention")

    async def read_history(self, limit: int, deadline: float) -> list[HistoryEntry]:
        value = _value(await self._read(self._history, deadline))
        return _decode((value or "[]").encode(), list[HistoryEntry], "history")[:limit]

    async def close(self) -> None:
        if self._own_http and self._http is not None:
            await self._http.close()
        self._http = None
