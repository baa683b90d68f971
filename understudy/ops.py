"""Operator commands against a running cluster: status, switchover, pause,
resume, history, panic and panic-clear. Each reads a node's config file for the admin URLs, the
admin token and the lock backend; like patronictl, pause/resume/history talk
to the lock backend directly, so they work with both nodes down."""
import asyncio
import datetime
import time

import aiohttp

from .config import NodeConfig, Secrets
from .coordinator.backend import BackendUnavailable, Pause
from .coordinator.factory import make_backend


def admin_urls(config: NodeConfig) -> dict[str, str]:
    urls = {config.node.id: f"http://{config.admin.host}:{config.admin.port}"}
    if config.cluster is not None and config.cluster.peer_admin_url:
        urls[config.cluster.peer] = config.cluster.peer_admin_url.rstrip("/")
    return urls


async def _get_status(session, url: str) -> dict | None:
    try:
        async with session.get(f"{url}/status", timeout=aiohttp.ClientTimeout(total=2)) as resp:
            return await resp.json()
    except (aiohttp.ClientError, asyncio.TimeoutError):
        return None


async def status(config: NodeConfig) -> tuple[int, str]:
    lines = [f"{'node':8} {'role':13} {'epoch':>14} {'lease left':>10} {'peer hb age':>11} {'ready':6} {'quoting':7}"]
    ok = True
    async with aiohttp.ClientSession() as session:
        for node, url in admin_urls(config).items():
            s = await _get_status(session, url)
            if s is None:
                lines.append(f"{node:8} {'UNREACHABLE':13} ({url})")
                ok = False
                continue
            ha = s.get("ha") or {}
            ready = all(v for v in (s["ws"]["market"], s["ws"]["user"])) and s["ws"]["book"] == "live"
            age = (ha.get("peer") or {}).get("heartbeat_age_s")
            lines.append(f"{node:8} {ha.get('role', s['system']['role']):13} {str(ha.get('epoch', '-')):>14} "
                         f"{ha.get('lease_left_s', 0):>9.3f}s {('-' if age is None else f'{age:.3f}s'):>11} "
                         f"{'yes' if ready else 'no':6} {'yes' if s['strategy']['quoting'] else 'no':7}")
            if ha.get("paused"):
                lines.append(f"{'':8} cluster PAUSED: no automatic failover")
    return (0 if ok else 1), "\n".join(lines)


async def switchover(config: NodeConfig, secrets: Secrets, target: str, at: datetime.datetime | None) -> tuple[int, str]:
    if at is not None:
        wait = (at - datetime.datetime.now(datetime.UTC)).total_seconds()
        if wait > 0:
            print(f"waiting {wait:.0f} s until {at.isoformat()}", flush=True)
            await asyncio.sleep(wait)
    async with aiohttp.ClientSession() as session:
        primary = None
        for node, url in admin_urls(config).items():
            s = await _get_status(session, url)
            if s and (s.get("ha") or {}).get("role") == "primary":
                primary = (node, url)
        if primary is None:
            return 1, "no primary found among " + ", ".join(admin_urls(config))
        if primary[0] == target:
            return 1, f"{target} is already the primary"
        async with session.post(f"{primary[1]}/switchover", json={"to": target},
                                headers={"Authorization": f"Bearer {secrets.admin_token}"}) as resp:
            body = await resp.json()
    if body.get("ok"):
        return 0, f"switched over from {primary[0]} to {target} in {body['took_s']} s"
    return 1, f"switchover refused by {primary[0]}: {body.get('reason') or body.get('error')}"


async def set_pause(config: NodeConfig, secrets: Secrets, paused: bool, reason: str) -> tuple[int, str]:
    backend = make_backend(config.lock, secrets)
    try:
        await backend.set_pause(Pause(paused, f"operator@{config.node.id}", reason, time.time()),
                                time.monotonic() + 3)
        return 0, "cluster paused: no automatic failover until resumed" if paused else "cluster resumed"
    except BackendUnavailable as exc:
        return 1, f"lock backend unreachable: {exc}"
    finally:
        await backend.close()


async def history(config: NodeConfig, secrets: Secrets, limit: int) -> tuple[int, str]:
    backend = make_backend(config.lock, secrets)
    try:
        entries = await backend.read_history(limit, time.monotonic() + 3)
    except BackendUnavailable as exc:
        return 1, f"lock backend unreachable: {exc}"
    finally:
        await backend.close()
    lines = [f"{'when (UTC)':19} {'epoch':>14} {'from':6} {'to':6} {'detect→acquire→cancel→quote (s)':32} reason"]
    for e in entries:
        when = datetime.datetime.fromtimestamp(e.at, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")
        t = e.timings
        steps = "→".join(f"{t[k]:.3f}" if k in t else "-"
                         for k in ("acquired", "protective_cancel_done", "first_quote"))
        lines.append(f"{when:19} {e.epoch!s:>14} {e.from_node or '-':6} {e.to_node or '-':6} {steps:32} {e.reason}")
    return 0, "\n".join(lines)


async def panic(config: NodeConfig, secrets: Secrets, nodes: list[str], reason: str,
                clear: bool = False) -> tuple[int, str]:
    """PanicStop (or its clearing) on the named nodes, in the order given:
    each stops quoting and cancels its own orders, latched until cleared.
    The admin token is read from the config's secret, never typed."""
    urls = admin_urls(config)
    unknown = [n for n in nodes if n not in urls]
    if unknown:
        return 2, f"unknown node(s) {', '.join(unknown)}; this config knows {', '.join(urls)}"
    lines, ok = [], True
    path = "/panic/clear" if clear else "/panic"
    async with aiohttp.ClientSession() as session:
        for node in nodes:
            try:
                async with session.post(f"{urls[node]}{path}", json={"reason": reason},
                                        headers={"Authorization": f"Bearer {secrets.admin_token}"},
                                        timeout=aiohttp.ClientTimeout(total=15)) as resp:
                    body = await resp.json(content_type=None)
                    if resp.status != 200:
                        ok = False
                        lines.append(f"{node}: refused ({resp.status}): {body}")
                    elif clear:
                        lines.append(f"{node}: PanicStop cleared; quoting resumes once healthy (and primary)")
                    else:
                        remaining = body.get("orders_remaining")
                        ok = ok and remaining == 0
                        lines.append(f"{node}: PanicStop latched ({body.get('panic')}); "
                                     f"orders still resting: {remaining}")
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                ok = False
                lines.append(f"{node}: unreachable at {urls[node]}: {type(exc).__name__} {exc}")
    return (0 if ok else 1), "\n".join(lines)
