"""Extra listeners and the per-listener ban (HTTP 418 as Binance bans an IP,
403 as its WAF blocks), over real HTTP and WebSocket: the banned port is
refused, the main port and the other listeners are served."""
import asyncio
import os
import re
import subprocess
import sys
import time

import aiohttp
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from tests.simproc import RestClient

BAN_MSG = re.compile(r"^Way too much request weight used; IP banned until (\d+)\. "
                     r"Please use WebSocket Streams for live updates to avoid bans\.$")
BID = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.01",
       "price": "50000"}


async def _post(session, url: str, body) -> tuple[int, object]:
    async with session.post(url, json=body) as resp:
        return resp.status, (await resp.json() if resp.status == 200 else await resp.text())


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


def _on(sim, port: int) -> str:
    return re.sub(r":\d+$", f":{port}", sim.base_url)


async def _listener(session, sim, body=None) -> int:
    status, reply = await _post(session, f"{sim.base_url}/sim/v1/listeners", {} if body is None else body)
    assert status == 200, reply
    return reply["port"]


async def test_a_banned_listener_answers_418_and_nobody_else_is_touched(quiet_sim, session):
    banned_port, other_port = await _listener(session, quiet_sim), await _listener(session, quiet_sim)
    status, faults = await _post(session, f"{quiet_sim.base_url}/sim/v1/faults",
                                 {"ban_listener": {"port": banned_port, "status": 418, "seconds": 30}})
    assert status == 200 and [b["port"] for b in faults["banned_listeners"]] == [banned_port]
    key, secret = quiet_sim.accounts[0]
    banned = RestClient(session, _on(quiet_sim, banned_port), key, secret)
    for method, path, params, signed in (("GET", "/api/v3/ping", {}, False),
                                         ("GET", "/api/v3/time", {}, False),
                                         ("POST", "/api/v3/order", {**BID, "newClientOrderId": "on-banned"}, True)):
        status, body, headers = await banned.request(method, path, params, signed=signed)
        assert status == 418 and body["code"] == -1003, (path, body)
        until_ms = int(BAN_MSG.match(body["msg"]).group(1))
        assert 29_000 < until_ms - time.time() * 1000 <= 30_000
        assert 1 <= int(headers["Retry-After"]) <= 30, "the seconds until the ban is over"
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(f"{_on(quiet_sim, banned_port).replace('http', 'ws')}/ws/btcusdt@trade")
    assert refused.value.response.status_code == 418
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(f"{_on(quiet_sim, banned_port).replace('http', 'ws')}/ws-api/v3")
    assert refused.value.response.status_code == 418

    # The main port and the other listener are served as before: REST and WebSocket.
    for url in (quiet_sim.base_url, _on(quiet_sim, other_port)):
        client = RestClient(session, url, key, secret)
        assert await client.ok("GET", "/api/v3/ping") == {}
        assert (await client.ok("POST", "/api/v3/order", {**BID, "newClientOrderId": f"ok-{url[-5:]}"},
                                signed=True))["status"] == "NEW"
        async with websockets.connect(f"{url.replace('http', 'ws')}/ws-api/v3") as ws:
            await ws.send('{"id": 1, "method": "ping"}')
            assert '"status":200' in await asyncio.wait_for(ws.recv(), 5)

    # The refused order request is in the audit log, as the venue saw it.
    refused_order = next(r for r in quiet_sim.audit_records() if r["client_order_id"] == "on-banned")
    assert (refused_order["outcome"], refused_order["http_status"], refused_order["code"]) == ("rejected", 418, -1003)

    status, faults = await _post(session, f"{quiet_sim.base_url}/sim/v1/faults", {"unban_listener": banned_port})
    assert status == 200 and faults["banned_listeners"] == []
    assert await banned.ok("GET", "/api/v3/ping") == {}
    async with websockets.connect(f"{_on(quiet_sim, banned_port).replace('http', 'ws')}/ws/btcusdt@trade"):
        pass


async def test_a_ban_lifts_by_itself_and_a_waf_block_is_403(quiet_sim, session):
    port = await _listener(session, quiet_sim)
    url = _on(quiet_sim, port)
    await _post(session, f"{quiet_sim.base_url}/sim/v1/faults",
                {"ban_listener": {"port": port, "status": 403, "seconds": 0.5}})
    async with session.get(f"{url}/api/v3/ping") as resp:
        assert resp.status == 403 and "Retry-After" not in resp.headers  # the docs send it with 418 and 429 only
        assert resp.content_type == "text/html" and "Request blocked." in await resp.text()
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(f"{url.replace('http', 'ws')}/ws/btcusdt@trade")
    assert refused.value.response.status_code == 403
    await asyncio.sleep(0.6)
    async with session.get(f"{url}/api/v3/ping") as resp:
        assert resp.status == 200
    async with session.get(f"{quiet_sim.base_url}/sim/v1/faults") as resp:
        assert (await resp.json())["banned_listeners"] == []


async def test_faults_are_validated_and_set_independently(quiet_sim, session):
    port = await _listener(session, quiet_sim)
    faults = f"{quiet_sim.base_url}/sim/v1/faults"
    assert (await _post(session, faults, {"drop_depth_events": 3}))[1]["drop_depth_events"] == 3
    status, state = await _post(session, faults, {"ban_listener": {"port": port, "status": 418, "seconds": 5}})
    assert status == 200 and state["drop_depth_events"] == 3, "a ban leaves the other faults alone"
    for bad in ({"ban_listener": {"port": quiet_sim.base_url.rsplit(":", 1)[1], "status": 418, "seconds": 5}},
                {"ban_listener": {"port": int(quiet_sim.base_url.rsplit(":", 1)[1]), "status": 418, "seconds": 5}},
                {"ban_listener": {"port": 1, "status": 418, "seconds": 5}},
                {"ban_listener": {"port": port, "status": 500, "seconds": 5}},
                {"ban_listener": {"port": port, "status": 418, "seconds": -1}},
                {"ban_listener": {"port": port, "status": 418}},
                {"ban_listener": {"port": port, "status": 418, "seconds": 5, "extra": 1}},
                {"ban_listener": port},
                {"unban_listener": "x"},
                {"matching_delay_ms": 5, "drop_depth_events": -1}):
        status, text = await _post(session, faults, bad)
        assert status == 400, (bad, text)
    async with session.post(faults, data=b"{not json", headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 400
    async with session.get(faults) as resp:
        state = await resp.json()
    assert (state["drop_depth_events"], state["matching_delay_ms"]) == (3, 0), "a rejected request changes nothing"
    assert [b["port"] for b in state["banned_listeners"]] == [port]


async def test_listeners_open_on_a_given_port_and_refuse_a_busy_one(quiet_sim, session):
    port = await _listener(session, quiet_sim)
    status, text = await _post(session, f"{quiet_sim.base_url}/sim/v1/listeners", {"port": port})
    assert status == 409, text
    main_port = int(quiet_sim.base_url.rsplit(":", 1)[1])
    assert (await _post(session, f"{quiet_sim.base_url}/sim/v1/listeners", {"port": main_port}))[0] == 409
    assert (await _post(session, f"{quiet_sim.base_url}/sim/v1/listeners", {"port": "80"}))[0] == 400
    async with session.get(f"{quiet_sim.base_url}/sim/v1/listeners") as resp:
        assert (await resp.json())["ports"] == [port]


def test_sim_config_opens_extra_listeners_at_start(tmp_path):
    """SimConfig.extra_listeners: the ports are on the READY line (`listeners=`)."""
    code = ("from simexchange.app import SimConfig, run; "
            "run(SimConfig(port=0, market=False, accounts=[('k', 's')], extra_listeners=[0, 0]))")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        line = ""
        deadline = time.monotonic() + 20
        while "SIM READY" not in line and time.monotonic() < deadline:
            line = proc.stdout.readline()
        match = re.search(r"SIM READY (http://\S+) .* listeners=(\d+),(\d+)", line)
        assert match, line

        async def ping_all():
            async with aiohttp.ClientSession() as s:
                for port in match.group(2, 3):
                    url = re.sub(r":\d+$", ":" + port, match.group(1))
                    async with s.get(f"{url}/api/v3/ping") as resp:
                        assert resp.status == 200
        asyncio.run(ping_all())
    finally:
        proc.terminate()
        proc.wait(10)
