"""`understudy demo --solo`: the simulated exchange and one node in solo mode
(`examples/solo.toml`). It trades for `--duration` seconds (60 by default)
with a live view of quotes, fills and inventory, checks every second that
both sides are quoted and the position stays within `risk.max_position`,
then pulls the PanicStop through the admin API and proves from the venue
itself (its open orders and its audit log) that nothing is left resting.
"""
import asyncio
import hashlib
import hmac
import json
import re
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import aiohttp

from .config import load
from .demo import Child, DemoRun, _free_port

SOLO_EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "solo.toml"


def _solo_config(sim_url: str, admin_port: int, run_dir: Path) -> str:
    ws_url = sim_url.replace("http://", "ws://")
    text = SOLO_EXAMPLE.read_text()
    for pattern, replacement in {
        r'^rest_url = ".*"': f'rest_url = "{sim_url}"',
        r'^stream_url = ".*"': f'stream_url = "{ws_url}"',
        r'^ws_api_url = ".*"': f'ws_api_url = "{ws_url}/ws-api/v3"',
        r'^state_dir = ".*"': f'state_dir = "{run_dir / "state-sg-1"}"',
        r'^port = 9101': f"port = {admin_port}",
    }.items():
        text = re.sub(pattern, replacement, text, flags=re.M)
    return text


class SoloDemo(DemoRun):
    def start(self) -> None:
        self.start_sim(seed=7, flow_rate=4)
        config_path = self.run_dir / "sg-1.toml"
        admin_port = _free_port()
        config_path.write_text(_solo_config(self.sim_url, admin_port, self.run_dir))
        self.max_position = load(config_path).risk.max_position
        self.admin = f"http://127.0.0.1:{admin_port}"
        self.children.append(Child("sg-1", [sys.executable, "-m", "understudy.cli", "node", "run", "--config",
                                            str(config_path)], self.run_dir / "sg-1.log", self.env))
        self.say(f"node sg-1 (solo) starting from {SOLO_EXAMPLE.name}; admin API at {self.admin}")

    async def status(self, session) -> dict | None:
        try:
            async with session.get(f"{self.admin}/status", timeout=aiohttp.ClientTimeout(total=1)) as resp:
                return await resp.json()
        except (aiohttp.ClientError, asyncio.TimeoutError):
            return None

    async def venue_open_orders(self, session) -> list:
        """Asked of the venue itself, with the account's own signed request."""
        query = urlencode({"symbol": "BTCUSDT", "timestamp": int(time.time() * 1000)})
        signature = hmac.new(self.secret.encode(), query.encode(), hashlib.sha256).hexdigest()
        async with session.get(f"{self.sim_url}/api/v3/openOrders?{query}&signature={signature}",
                               headers={"X-MBX-APIKEY": self.key}) as resp:
            resp.raise_for_status()
            return await resp.json()

def _two_sided(status: dict | None) -> bool:
    return bool(status) and status["strategy"]["quoting"] and {o["side"] for o in status["orders"]} == {"BUY", "SELL"}


async def _scenario(demo: SoloDemo, duration: float) -> dict:
    problems: list[str] = []
    async with aiohttp.ClientSession() as session:
        deadline = time.monotonic() + 30
        while not _two_sided(await demo.status(session)):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the node did not quote both sides within 30 s; see {demo.run_dir}/sg-1.log")
            await asyncio.sleep(0.1)
        demo.say(f"quoting both sides; trading for {duration:.0f} s (max position ±{demo.max_position})")
        end = time.monotonic() + duration
        worst_position, one_sided_seconds = 0.0, 0
        while time.monotonic() < end:
            status = await demo.status(session)
            if status is None:
                problems.append("the node stopped answering")
                break
            position = status["account"]["position"]
            worst_position = max(worst_position, abs(position))
            if abs(position) > demo.max_position + 1e-9:
                problems.append(f"position {position} beyond the limit ±{demo.max_position}")
            one_sided_seconds += not _two_sided(status)
            bids = [o["price"] for o in status["orders"] if o["side"] == "BUY"]
            asks = [o["price"] for o in status["orders"] if o["side"] == "SELL"]
            fills = status["fills"]
            demo.say(f"quotes {max(bids) if bids else '-'} / {min(asks) if asks else '-'}  fills {fills['count']} "
                     f"(bought {fills['bought']:.4f}, sold {fills['sold']:.4f})  position {position:+.4f}  "
                     f"pnl {status['account'].get('daily_pnl', 0.0):+.2f}")
            await asyncio.sleep(1.0)
        status = await demo.status(session) or {}
        fills = status.get("fills", {"bought": 0.0, "sold": 0.0, "count": 0})
        if not (fills["bought"] > 0 and fills["sold"] > 0):
            problems.append(f"no fills on both sides: {fills}")

        demo.say("*** PanicStop: POST /panic ***")
        async with session.post(f"{demo.admin}/panic", json={"reason": "demo"},
                                headers={"Authorization": f"Bearer {demo.token}"}) as resp:
            panic = await resp.json()
        demo.say(f"panic: {panic}")
        await asyncio.sleep(1.0)  # book updates keep arriving: nothing may be re-quoted
        resting = await demo.venue_open_orders(session)
        records = demo.audit()
        accepted = {r["client_order_id"] for r in records if r["kind"] == "request" and r["action"] == "new"
                    and r["outcome"] == "accepted"}
        done = {r["client_order_id"] for r in records if r["kind"] == "order_done"}
        if resting or accepted - done:
            problems.append(f"orders still resting after the PanicStop: venue {len(resting)}, "
                            f"audit {len(accepted - done)}")
        status = await demo.status(session) or {}
        demo.say(f"venue open orders after the PanicStop: {len(resting)}; node strategy: {status.get('strategy')}")
    return {"fills": fills["count"], "bought": fills["bought"], "sold": fills["sold"],
            "worst_abs_position": round(worst_position, 8), "max_position": demo.max_position,
            "seconds_not_two_sided": one_sided_seconds, "orders_accepted": len(accepted),
            "open_orders_after_panic": len(resting), "problems": problems}


def run(duration: float, run_dir: Path) -> int:
    demo = SoloDemo(run_dir)
    print(f"run directory: {run_dir} (config, logs, the venue's audit log)")
    try:
        demo.start()
        summary = asyncio.run(_scenario(demo, duration))
        ok = not summary["problems"]
        print(json.dumps({"demo": "solo", "ok": ok, **summary}))
        return 0 if ok else 1
    finally:
        demo.stop()
