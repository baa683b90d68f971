"""Trading-lock round trips against a local redis-server: acquire and renew,
through the real Redis backend (Lua scripts, epoch bump, deadlines).

    .venv/bin/python bench/lock.py [--rounds N]

Starts its own redis-server (no persistence) on a free loopback port. Prints
figures, then one JSON object as the last line. Target: p99 <= 2 ms.
"""
import argparse
import asyncio
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from understudy.coordinator.redis_backend import RedisBackend, RedisSettings  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_redis(workdir: str) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", workdir], stdout=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.1).close()
            return proc, port
        except OSError:
            time.sleep(0.02)
    raise SystemExit("redis-server did not start")


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _measure(port: int, rounds: int) -> dict:
    backend = RedisBackend(RedisSettings(port=port, key_prefix="bench"))
    ttl = 5.0
    # A fresh Redis quarantines the lock for one TTL; seed the epoch as an existing deployment has it.
    await backend._client.set("bench:epoch", "1")
    acquire_us, renew_us = [], []
    for _ in range(50):  # warm-up: connection, script cache
        epoch = await backend.try_acquire("sg-1", ttl, 0, time.monotonic() + 1)
        await backend.renew("sg-1", epoch, ttl, time.monotonic() + 1)
        await backend.release("sg-1", epoch, time.monotonic() + 1)
    for _ in range(rounds):
        started = time.perf_counter()
        epoch = await backend.try_acquire("sg-1", ttl, 0, time.monotonic() + 1)
        acquire_us.append((time.perf_counter() - started) * 1e6)
        if epoch is None:
            raise SystemExit("acquire failed on an idle lock")
        started = time.perf_counter()
        ok = await backend.renew("sg-1", epoch, ttl, time.monotonic() + 1)
        renew_us.append((time.perf_counter() - started) * 1e6)
        if not ok:
            raise SystemExit("renew failed for the holder")
        await backend.release("sg-1", epoch, time.monotonic() + 1)
    await backend.close()
    result = {"bench": "lock", "backend": "redis", "rounds": rounds}
    for name, samples in (("acquire", acquire_us), ("renew", renew_us)):
        result[f"{name}_p50_us"] = round(statistics.median(samples), 1)
        result[f"{name}_p99_us"] = round(_percentile(samples, 0.99), 1)
        result[f"{name}_max_us"] = round(max(samples), 1)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5000)
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not installed (scripts/bootstrap.sh installs it)")
    with tempfile.TemporaryDirectory() as workdir:
        proc, port = _start_redis(workdir)
        try:
            try:
                import uvloop
                result = uvloop.run(_measure(port, args.rounds))
            except ImportError:
                result = asyncio.run(_measure(port, args.rounds))
        finally:
            proc.kill()
            proc.wait()
    for name in ("acquire", "renew"):
        print(f"{name:8} p50 {result[f'{name}_p50_us']:8.1f} us   p99 {result[f'{name}_p99_us']:8.1f} us   "
              f"max {result[f'{name}_max_us']:8.1f} us")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
