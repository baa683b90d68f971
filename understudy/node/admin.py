"""The node's admin server: health, status and metrics for anyone on the
admin network; PanicStop only with the bearer token."""
import hmac
import json

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .. import logs
from .engine import NodeEngine
from .metrics import EngineCollector

log = logs.get("admin")


def _json(data, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda o: json.dumps(o, default=str))


def build_admin_app(engine: NodeEngine, token: str, controller=None) -> web.Application:
    """`controller` is the failover controller of a cluster node (None when solo)."""
    registry = CollectorRegistry()
    registry.register(EngineCollector(engine))

    def authorised(request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), token.encode())

    async def health(request: web.Request) -> web.Response:
        report = engine.health()
        return _json(report, 200 if report["status"] == "ok" else 503)

    async def status(request: web.Request) -> web.Response:
        report = engine.status()
        if controller is not None:
            report["ha"] = controller.status()
        return _json(report)

    def _role() -> str:
        return controller.state.role.value if controller is not None else engine.role

    async def primary(request: web.Request) -> web.Response:
        """200 only on the lock holder: what a load balancer or an alert asks."""
        holds = _role() == "primary" and engine.lease is not None and engine.lease.may_trade(engine.clock())
        return _json({"role": _role(), "primary": holds}, 200 if holds else 503)

    async def standby(request: web.Request) -> web.Response:
        ready = _role() == "standby" and all(engine.readiness().values())
        return _json({"role": _role(), "ready_standby": ready}, 200 if ready else 503)

    async def switchover(request: web.Request) -> web.Response:
        if not authorised(request):
            return _json({"error": "unauthorised"}, 401)
        if controller is None:
            return _json({"error": "a solo node has nothing to switch over to"}, 409)
        try:
            target = (await request.json())["to"]
        except (ValueError, KeyError, TypeError):
            return _json({"error": 'body must be JSON {"to": NODE}'}, 400)
        result = await controller.switchover(str(target))
        return _json(result, 200 if result["ok"] else 409)

    async def set_pause(request: web.Request, paused: bool) -> web.Response:
        if not authorised(request):
            return _json({"error": "unauthorised"}, 401)
        if controller is None:
            return _json({"error": "pause is a cluster flag; this node is solo"}, 409)
        body = await request.json() if request.can_read_body else {}
        await controller.set_pause(paused, str(body.get("by") or "admin"), str(body.get("reason") or ""))
        return _json({"paused": paused})

    async def pause(request: web.Request) -> web.Response:
        return await set_pause(request, True)

    async def resume(request: web.Request) -> web.Response:
        return await set_pause(request, False)

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def panic(request: web.Request) -> web.Response:
        if not authorised(request):
            log.warning("unauthorised admin request", path=request.path, peer=request.remote)
            return _json({"error": "unauthorised"}, 401)
        try:
            body = await request.json() if request.can_read_body else {}
        except ValueError:
            return _json({"error": "body must be JSON"}, 400)
        reason = str(body.get("reason") or "operator")
        remaining = await engine.panic(f"admin: {reason}")
        return _json({"panic": engine.panic_reason, "orders_remaining": remaining}, 200 if remaining == 0 else 500)

    async def clear_panic(request: web.Request) -> web.Response:
        if not authorised(request):
            log.warning("unauthorised admin request", path=request.path, peer=request.remote)
            return _json({"error": "unauthorised"}, 401)
        engine.clear_panic()
        return _json({"panic": None})

    app = web.Application()
    app.add_routes([
        web.get("/health", health),
        web.get("/status", status),
        web.get("/metrics", metrics),
        web.post("/panic", panic),
        web.post("/panic/clear", clear_panic),
        web.get("/primary", primary),
        web.get("/standby", standby),
        web.post("/switchover", switchover),
        web.post("/pause", pause),
        web.post("/resume", resume),
    ])
    return app
