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


def build_admin_app(engine: NodeEngine, token: str) -> web.Application:
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
        return _json(engine.status())

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
    ])
    return app
