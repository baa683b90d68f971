"""The trading lock on Consul, over its HTTP API (aiohttp).

Why it is built this way: Consul-session locks as Vault and Swarm use them
fail over in 15-40 s, because of the 15 s default lock-delay and the 10 s
minimum session TTL (which Consul may double). Here:
- the session has no TTL of its own: it is bound to a health check whose TTL
  is the lock's TTL and that the holder keeps passing
  (`/v1/agent/check/pass`), so when the holder goes silent the check turns
  critical and Consul invalidates the session and releases the key;
- `LockDelay` is 0, so the key can be taken again at once;
- waiters use blocking queries on `X-Consul-Index` and wake when the key changes;
- the epoch lives in its own key, bumped with check-and-set before each acquire.

Servers must run with `session_ttl_min` no larger than what the deployment
uses and accept check TTLs of about one second (see the README).
"""
import base64
import json
import time
import uuid
from dataclasses import asdict, dataclass

import aiohttp

from .backend import BackendUnavailable, HistoryEntry, LockBackend, LockState, Pause, bounded, next_epoch

_CAS_ATTEMPTS = 10


@dataclass(frozen=True)
class ConsulSettings:
    url: str = "http://127.0.0.1:8500"
    token: str | None = None
    key_prefix: str = "understudy"


class ConsulBackend(LockBackend):
    def __init__(self, settings: ConsulSettings, session: aiohttp.ClientSession | None = None):
        self.settings = settings
        self._http = session
        self._own_http = session is None
        p = settings.key_prefix.strip("/")
        self._lock, self._epoch, self._handover = f"{p}/lock", f"{p}/epoch", f"{p}/handover"
        self._pause, self._history = f"{p}/pause", f"{p}/history"
        self._session_id: str | None = None
        self._check_id: str | None = None
        self._session_node: str | None = None

    # -- HTTP ------------------------------------------------------------------
    async def _request(self, method: str, path: str, deadline: float, what: str, params: dict | None = None,
                       body: bytes | str | None = None, json_body=None):
        """(status, headers, parsed JSON or None)."""
        if self._http is None:
            self._http = aiohttp.ClientSession()
        headers = {"X-Consul-Token": self.settings.token} if self.settings.token else {}

        async def call():
            async with self._http.request(method, f"{self.settings.url.rstrip('/')}{path}", params=params,
                                          data=body, json=json_body, headers=headers) as resp:
                text = await resp.text()
                if resp.status >= 500:
                    raise BackendUnavailable(f"{what}: HTTP {resp.status}: {text[:200]}")
                if resp.status in (401, 403):
                    raise BackendUnavailable(f"{what}: Consul refused the token (HTTP {resp.status})")
                data = json.loads(text) if text and resp.status == 200 else None
                return resp.status, resp.headers, data

        try:
            return await bounded(call(), deadline, what)
        except aiohttp.ClientError as exc:
            raise BackendUnavailable(f"{what}: {type(exc).__name__}: {exc}") from exc

    async def _get_key(self, key: str, deadline: float, index: int | None = None, wait_s: float | None = None):
        """(entry or None, X-Consul-Index)."""
        params = {}
        if index is not None:
            params = {"index": str(index), "wait": f"{max(1, int(wait_s or 1))}s"}
        status, headers, data = await self._request("GET", f"/v1/kv/{key}", deadline, "kv-get", params)
        return (data[0] if status == 200 and data else None), int(headers.get("X-Consul-Index", "0"))

    @staticmethod
    def _value(entry) -> str | None:
        if not entry or entry.get("Value") is None:
            return None
        return base64.b64decode(entry["Value"]).decode()

    # -- the session, bound to our health check ---------------------------------
    async def _ensure_session(self, node: str, ttl_s: float, deadline: float) -> str:
        if self._session_id is not None:
            status, _, data = await self._request("GET", f"/v1/session/info/{self._session_id}", deadline, "session")
            if status == 200 and data:
                return self._session_id
            self._session_id = None
        self._check_id = f"understudy-{node}-lock"
        self._session_node = node
        await self._request("PUT", "/v1/agent/check/register", deadline, "check-register", json_body={
            "CheckID": self._check_id, "Name": f"understudy trading lock ({node})",
            "TTL": _duration(ttl_s), "Status": "passing"})
        status, _, data = await self._request("PUT", "/v1/session/create", deadline, "session-create", json_body={
            "Name": f"understudy-{node}-{uuid.uuid4().hex[:8]}", "LockDelay": "0s", "Behavior": "release",
            "NodeChecks": ["serfHealth", self._check_id]})
        if status != 200 or not data or "ID" not in data:
            raise BackendUnavailable(f"session-create: unexpected answer {status} {data}")
        self._session_id = data["ID"]
        return self._session_id

    async def _pass_check(self, deadline: float) -> None:
        status, _, _ = await self._request("PUT", f"/v1/agent/check/pass/{self._check_id}", deadline, "check-pass")
        if status != 200:
            raise BackendUnavailable(f"check-pass: HTTP {status}")

    # -- the API -----------------------------------------------------------------
    async def _bump_epoch(self, epoch_floor: int, deadline: float) -> int:
        for _ in range(_CAS_ATTEMPTS):
            entry, _ = await self._get_key(self._epoch, deadline)
            stored = int(self._value(entry) or 0)
            epoch = next_epoch(stored, int(time.time() * 1000), epoch_floor)
            index = entry["ModifyIndex"] if entry else 0
            _, _, ok = await self._request("PUT", f"/v1/kv/{self._epoch}", deadline, "epoch-cas",
                                           {"cas": str(index)}, body=str(epoch))
            if ok is True:
                return epoch
        raise BackendUnavailable("epoch-cas: too much contention")

    async def try_acquire(self, node: str, ttl_s: float, epoch_floor: int, deadline: float) -> int | None:
        marker, _ = await self._get_key(self._handover, deadline)
        marker_value = self._value(marker)
        if marker_value:
            target, _, until = marker_value.partition("|")
            if target != node and time.time() < float(until or 0):
                return None
        entry, _ = await self._get_key(self._lock, deadline)
        if entry and entry.get("Session"):
            return None
        session = await self._ensure_session(node, ttl_s, deadline)
        await self._pass_check(deadline)
        epoch = await self._bump_epoch(epoch_floor, deadline)
        _, _, ok = await self._request("PUT", f"/v1/kv/{self._lock}", deadline, "acquire", {"acquire": session},
                                       body=f"{node}|{epoch}")
        if ok is not True:
            return None
        if marker_value:
            await self._request("DELETE", f"/v1/kv/{self._handover}", deadline, "handover-clear")
        return epoch

    async def _still_ours(self, node: str, epoch: int, deadline: float) -> bool:
        entry, _ = await self._get_key(self._lock, deadline)
        return bool(entry) and entry.get("Session") == self._session_id and self._value(entry) == f"{node}|{epoch}"

    async def renew(self, node: str, epoch: int, ttl_s: float, deadline: float) -> bool:
        if self._session_id is None:
            return False
        # Pass first: the check's TTL restarts when the agent receives it.
        await self._pass_check(deadline)
        return await self._still_ours(node, epoch, deadline)

    async def restore(self, node: str, epoch: int, ttl_s: float, deadline: float) -> bool:
        epoch_entry, _ = await self._get_key(self._epoch, deadline)
        if self._value(epoch_entry) != str(epoch):
            return False  # acquired by someone since, or the data is gone
        marker, _ = await self._get_key(self._handover, deadline)
        if self._value(marker):
            return False
        entry, _ = await self._get_key(self._lock, deadline)
        if entry and entry.get("Session"):
            return False
        session = await self._ensure_session(node, ttl_s, deadline)
        await self._pass_check(deadline)
        # An acquire racing this one bumps the epoch first and then finds the key held: it gets
        # nothing, and the next acquisition still gets an epoch above ours.
        _, _, ok = await self._request("PUT", f"/v1/kv/{self._lock}", deadline, "restore",
                                       {"acquire": session, "cas": str(entry["ModifyIndex"] if entry else 0)},
                                       body=f"{node}|{epoch}")
        return ok is True

    async def _release(self, node: str, epoch: int, deadline: float) -> bool:
        if self._session_id is None or not await self._still_ours(node, epoch, deadline):
            return False
        _, _, ok = await self._request("PUT", f"/v1/kv/{self._lock}", deadline, "release",
                                       {"release": self._session_id})
        await self._request("PUT", f"/v1/session/destroy/{self._session_id}", deadline, "session-destroy")
        self._session_id = None
        return ok is True

    async def release(self, node: str, epoch: int, deadline: float) -> bool:
        return await self._release(node, epoch, deadline)

    async def release_to(self, node: str, epoch: int, target: str, marker_ttl_s: float, deadline: float) -> bool:
        if not await self._still_ours(node, epoch, deadline):
            return False
        # The marker goes first, so nobody but the target can slip in between.
        await self._request("PUT", f"/v1/kv/{self._handover}", deadline, "handover",
                            body=f"{target}|{time.time() + marker_ttl_s}")
        return await self._release(node, epoch, deadline)

    async def inspect(self, deadline: float) -> LockState:
        entry, _ = await self._get_key(self._lock, deadline)
        marker, _ = await self._get_key(self._handover, deadline)
        epoch_entry, _ = await self._get_key(self._epoch, deadline)
        holder = epoch = None
        if entry and entry.get("Session"):
            holder, _, epoch_text = (self._value(entry) or "").rpartition("|")
            epoch = int(epoch_text) if epoch_text.isdigit() else None
        handover = None
        marker_value = self._value(marker)
        if marker_value:
            target, _, until = marker_value.partition("|")
            handover = target if time.time() < float(until or 0) else None
        # Consul does not expose a key's remaining life: it ends with the holder's check.
        return LockState(holder or None, epoch, None, handover, int(self._value(epoch_entry) or 0))

    async def wait_until_free(self, timeout_s: float, deadline: float) -> None:
        until = time.monotonic() + timeout_s
        entry, index = await self._get_key(self._lock, deadline)
        while entry and entry.get("Session") and time.monotonic() < until:
            wait = until - time.monotonic()
            try:
                entry, index = await self._get_key(self._lock, min(deadline, until + 0.5), index, wait)
            except BackendUnavailable:
                if time.monotonic() >= until:
                    return
                raise

    async def get_pause(self, deadline: float) -> Pause:
        entry, _ = await self._get_key(self._pause, deadline)
        value = self._value(entry)
        return Pause(**json.loads(value)) if value else Pause(False)

    async def set_pause(self, pause: Pause, deadline: float) -> None:
        await self._request("PUT", f"/v1/kv/{self._pause}", deadline, "set-pause", body=json.dumps(asdict(pause)))

    async def append_history(self, entry: HistoryEntry, keep: int, deadline: float) -> None:
        for _ in range(_CAS_ATTEMPTS):
            current, _ = await self._get_key(self._history, deadline)
            rows = json.loads(self._value(current) or "[]")
            rows = [asdict(entry), *rows][:keep]
            index = current["ModifyIndex"] if current else 0
            _, _, ok = await self._request("PUT", f"/v1/kv/{self._history}", deadline, "history",
                                           {"cas": str(index)}, body=json.dumps(rows))
            if ok is True:
                return
        raise BackendUnavailable("history: too much contention")

    async def read_history(self, limit: int, deadline: float) -> list[HistoryEntry]:
        entry, _ = await self._get_key(self._history, deadline)
        return [HistoryEntry(**row) for row in json.loads(self._value(entry) or "[]")[:limit]]

    async def close(self) -> None:
        if self._own_http and self._http is not None:
            await self._http.close()
        self._http = None


def _duration(seconds: float) -> str:
    return f"{int(round(seconds * 1000))}ms"
