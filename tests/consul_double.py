"""A Consul HTTP API test double — NOT Consul.

No Consul server can be installed from Debian's or PyPI's archives, so the
trading-lock contract suite runs against this double, and against a real
agent whenever CONSUL_HTTP_ADDR is set. It implements exactly the documented
semantics the Consul backend relies on, and nothing more:
- agent TTL checks: register, pass, deregister; a check whose TTL runs out
  turns critical;
- sessions bound to checks (`NodeChecks`/`Checks`, `serfHealth` always
  passing): a critical or deregistered check invalidates its sessions, whose
  locks are released (Behavior "release") or deleted ("delete");
- `LockDelay` (default 15 s): after an invalidation, the released key cannot
  be acquired again until the delay has passed;
- KV get/put/delete with `acquire`, `release` and `cas`, base64 values,
  Create/Modify/LockIndex, 404 for a missing key;
- blocking queries: `?index=N&wait=D` returns when the key's modify index
  passes N, or after D; every answer carries `X-Consul-Index`.
"""
import asyncio
import base64
import re
import time
import uuid

from aiohttp import web

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m)$")


def parse_duration(text: str) -> float:
    match = _DURATION.match(text or "")
    if not match:
        raise web.HTTPBadRequest(text=f"invalid duration {text!r}")
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "ms" else value * 60 if unit == "m" else value


class ConsulDouble:
    def __init__(self):
        self.index = 1
        self.checks: dict[str, dict] = {"serfHealth": {"ttl": None, "status": "passing", "expires": None}}
        self.sessions: dict[str, dict] = {}
        self.kv: dict[str, dict] = {}
        self.key_index: dict[str, int] = {}
        self.lock_delay_until: dict[str, float] = {}
        self.changed = asyncio.Condition()
        self.stalled = False  # tests: the server stops answering, as a partitioned agent would
        self.runner: web.AppRunner | None = None
        self.url = ""

    # -- time-driven state ---------------------------------------------------------
    def _tick(self) -> None:
        now = time.monotonic()
        for check_id, check in self.checks.items():
            if check["expires"] is not None and check["status"] == "passing" and now > check["expires"]:
                check["status"] = "critical"
                self._invalidate_sessions_of(check_id)

    def _invalidate_sessions_of(self, check_id: str) -> None:
        for session_id in [s for s, sess in self.sessions.items() if check_id in sess["checks"]]:
            self._destroy_session(session_id, invalidated=True)

    def _destroy_session(self, session_id: str, invalidated: bool) -> None:
        session = self.sessions.pop(session_id, None)
        if session is None:
            return
        for key, entry in list(self.kv.items()):
            if entry.get("Session") == session_id:
                if session["behavior"] == "delete":
                    del self.kv[key]
                else:
                    entry.pop("Session")
                    entry["ModifyIndex"] = self._bump(key)
                if invalidated and session["lock_delay"] > 0:
                    self.lock_delay_until[key] = time.monotonic() + session["lock_delay"]
                self._bump(key)
        self._notify()

    def _bump(self, key: str) -> int:
        self.index += 1
        self.key_index[key] = self.index
        return self.index

    def _notify(self) -> None:
        async def wake():
            async with self.changed:
                self.changed.notify_all()
        asyncio.get_running_loop().create_task(wake())

    async def _ticker(self) -> None:
        while True:
            self._tick()
            await asyncio.sleep(0.005)

    # -- HTTP ---------------------------------------------------------------------
    @web.middleware
    async def _before(self, request, handler):
        while self.stalled:
            await asyncio.sleep(0.005)
        self._tick()
        return await handler(request)

    async def check_register(self, request):
        body = await request.json()
        check_id = body.get("CheckID") or body.get("ID") or body["Name"]
        ttl = parse_duration(body["TTL"]) if body.get("TTL") else None
        self.checks[check_id] = {"ttl": ttl, "status": body.get("Status", "critical"),
                                 "expires": time.monotonic() + ttl if ttl else None}
        return web.Response()

    async def check_pass(self, request):
        check = self.checks.get(request.match_info["id"])
        if check is None:
            raise web.HTTPNotFound(text="unknown check")
        check["status"] = "passing"
        if check["ttl"]:
            check["expires"] = time.monotonic() + check["ttl"]
        return web.Response()

    async def check_deregister(self, request):
        check_id = request.match_info["id"]
        self.checks.pop(check_id, None)
        self._invalidate_sessions_of(check_id)
        return web.Response()

    async def session_create(self, request):
        body = await request.json() if request.can_read_body else {}
        checks = list(body.get("NodeChecks") or body.get("Checks") or ["serfHealth"])
        for check_id in checks:
            if self.checks.get(check_id, {}).get("status") != "passing":
                return web.Response(status=500, text=f"Check '{check_id}' is in critical state")
        session_id = str(uuid.uuid4())
        self.sessions[session_id] = {"checks": checks, "behavior": body.get("Behavior", "release"),
                                     "lock_delay": parse_duration(body.get("LockDelay", "15s")),
                                     "name": body.get("Name", "")}
        return web.json_response({"ID": session_id})

    async def session_destroy(self, request):
        self._destroy_session(request.match_info["id"], invalidated=False)
        return web.json_response(True)

    async def session_info(self, request):
        session = self.sessions.get(request.match_info["id"])
        if session is None:
            return web.json_response([])
        return web.json_response([{"ID": request.match_info["id"], "Name": session["name"],
                                   "Behavior": session["behavior"], "NodeChecks": session["checks"]}])

    async def kv_get(self, request):
        key = request.match_info["key"]
        if "index" in request.query:
            wanted = int(request.query["index"])
            wait = min(parse_duration(request.query.get("wait", "300s")), 600)
            deadline = time.monotonic() + wait
            async with self.changed:
                while self.key_index.get(key, 0) <= wanted and time.monotonic() < deadline:
                    try:
                        await asyncio.wait_for(self.changed.wait(), deadline - time.monotonic())
                    except asyncio.TimeoutError:
                        break
        headers = {"X-Consul-Index": str(max(self.key_index.get(key, 0), 1))}
        entry = self.kv.get(key)
        if entry is None:
            return web.Response(status=404, headers=headers)
        return web.json_response([entry], headers=headers)

    async def kv_put(self, request):
        key, q = request.match_info["key"], request.query
        value = await request.read()
        entry = self.kv.get(key)
        if "cas" in q:
            cas = int(q["cas"])
            if (cas == 0 and entry is not None) or (cas != 0 and (entry is None or entry["ModifyIndex"] != cas)):
                return web.json_response(False)
        if "acquire" in q:
            session_id = q["acquire"]
            if session_id not in self.sessions:
                return web.Response(status=500, text=f"invalid session {session_id!r}")
            if entry is not None and entry.get("Session") not in (None, session_id):
                return web.json_response(False)
            if time.monotonic() < self.lock_delay_until.get(key, 0.0):
                return web.json_response(False)
        if "release" in q:
            if entry is None or entry.get("Session") != q["release"]:
                return web.json_response(False)
        index = self._bump(key)
        if entry is None:
            entry = self.kv[key] = {"Key": key, "Flags": 0, "CreateIndex": index, "LockIndex": 0}
        entry["ModifyIndex"] = index
        if "release" in q:
            entry.pop("Session", None)
        else:
            entry["Value"] = base64.b64encode(value).decode() if value else None
        if "acquire" in q:
            if entry.get("Session") != q["acquire"]:
                entry["LockIndex"] += 1
            entry["Session"] = q["acquire"]
        self._notify()
        return web.json_response(True)

    async def kv_delete(self, request):
        key = request.match_info["key"]
        if self.kv.pop(key, None) is not None:
            self._bump(key)
            self._notify()
        return web.json_response(True)

    async def start(self) -> str:
        app = web.Application(middlewares=[self._before])
        app.add_routes([
            web.put("/v1/agent/check/register", self.check_register),
            web.put("/v1/agent/check/pass/{id}", self.check_pass),
            web.put("/v1/agent/check/deregister/{id}", self.check_deregister),
            web.put("/v1/session/create", self.session_create),
            web.put("/v1/session/destroy/{id}", self.session_destroy),
            web.get("/v1/session/info/{id}", self.session_info),
            web.get("/v1/kv/{key:.+}", self.kv_get),
            web.put("/v1/kv/{key:.+}", self.kv_put),
            web.delete("/v1/kv/{key:.+}", self.kv_delete),
        ])
        # Blocking queries still waiting at shutdown must not hold it up.
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self._ticker_task = asyncio.get_running_loop().create_task(self._ticker())
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        self.stalled = False
        self._ticker_task.cancel()
        await asyncio.gather(self._ticker_task, return_exceptions=True)
        await self.runner.cleanup()
