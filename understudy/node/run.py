"""`understudy node run`: the engine and its admin server in one process."""
import asyncio
import signal
import sys
import time

from aiohttp import web

from .. import logs
from ..config import EXIT_CONFIG, NodeConfig, Secrets
from ..coordinator.backend import BackendMisconfigured, BackendNonsense, BackendUnavailable, bounded
from .admin import build_admin_app
from .engine import NodeEngine
from .sdnotify import SystemdNotifier

log = logs.get("node")
STARTUP_CHECK_S = 2.0


async def _lock_backend_fits(lock, config: NodeConfig) -> bool:
    """Asks the lock backend, before anything starts, whether it can hold this lock as promised
    (a Consul server whose session_ttl_min is above lock.ttl_s cannot). A backend that does not
    answer now is no reason not to start: a standby waits for it anyway."""
    try:
        await bounded(lock.backend.check(config.lock.ttl_s, time.monotonic() + STARTUP_CHECK_S),
                      time.monotonic() + STARTUP_CHECK_S, "start-up check")
    except BackendMisconfigured as exc:
        print(f"{config.lock.backend}: {exc}", file=sys.stderr)
        log.critical("the lock backend cannot hold this lock", error=str(exc))
        return False
    except (BackendUnavailable, BackendNonsense) as exc:
        log.warning("could not check the lock backend at start-up; going on", error=str(exc))
    return True


async def serve(config: NodeConfig, secrets: Secrets) -> int:
    engine = NodeEngine(config, secrets)
    controller = None
    if config.node.mode == "cluster":
        from ..coordinator.factory import make_trading_lock
        from ..failover.controller import FailoverController

        controller = FailoverController(config, secrets, engine, make_trading_lock(config.lock, secrets, config.node.id))
        if not await _lock_backend_fits(controller.lock, config):
            await controller.lock.backend.close()
            return EXIT_CONFIG
    stop = asyncio.Event()
    fatal: list[str] = []
    ended_epoch: list[int] = []

    def on_fatal(reason: str) -> None:
        """Supervision gave up on a loop: the lease ends now (no order may leave from here on,
        whatever else is still running), then the process stops and exits non-zero for systemd."""
        fatal.append(reason)
        engine.stop_sending(f"fatal: {reason}")
        if controller is not None and controller.lock.lease is not None:
            ended_epoch.append(controller.lock.lease.epoch)
            controller.lock.lease = None
        stop.set()

    engine.on_fatal = on_fatal
    if controller is not None:
        controller.on_fatal = on_fatal
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    notifier = SystemdNotifier()  # a no-op unless systemd started us with Type=notify
    watchdog = notifier.start_watchdog()

    runner = web.AppRunner(build_admin_app(engine, secrets.admin_token, controller), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.admin.host, config.admin.port)
    await site.start()
    host, port = runner.addresses[0][:2]
    log.info("admin listening", host=host, port=port)

    exit_code = 0
    try:
        starting = asyncio.create_task(engine.start())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if starting.done():
            starting.result()
            log.info("node ready", quoting=engine.quoting, halt_reasons=engine.halt_reasons)
            notifier.ready()
            if controller is not None:
                await controller.run(stop)
            else:
                await stop.wait()
        else:
            starting.cancel()
        log.info("stopping")
    except Exception as exc:  # noqa: BLE001 - reported, orders cancelled, then a non-zero exit
        log.critical("node failed", error=repr(exc))
        exit_code = 1
    finally:
        notifier.stopping()
        stopping.cancel()
        # No order may leave from here on, whatever the HA tasks are doing while they wind down.
        engine.quoting = False
        if engine.gate is not None:
            engine.gate.close("stopping")
        if controller is not None:
            try:
                await asyncio.wait_for(controller.close(), 5)
            except asyncio.TimeoutError:
                log.error("failover tasks did not stop within 5 s; going on with the shutdown")
        try:
            await asyncio.wait_for(engine.stop(), 10)
            if controller is not None and controller.lock.lease is not None:
                # Orders are cancelled: hand the lock back now rather than make the peer wait out the TTL.
                await controller.lock.release()
            elif controller is not None and ended_epoch:
                await controller.lock.release_epoch(ended_epoch[0])
        except Exception as exc:  # noqa: BLE001
            log.critical("shutdown incomplete: orders may be resting", error=repr(exc))
            exit_code = 1
        if controller is not None:
            await controller.lock.close()
            await controller.lock.backend.close()
        await runner.cleanup()
    if watchdog is not None:
        watchdog.cancel()
    notifier.close()
    if fatal:
        exit_code = 1
        log.critical("exiting after a fatal failure", reason=fatal[0])
    log.info("stopped", exit_code=exit_code)
    return exit_code
