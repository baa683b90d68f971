"""Signed requests and every error code the node relies on, over real sockets."""
import asyncio
import time

import aiohttp
import pytest

from simexchange.signing import sign, verify
from tests.simproc import RestClient

# Binance's documented example (Spot API docs, "SIGNED Endpoint Examples").
DOC_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
DOC_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
DOC_QUERY = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
DOC_SIGNATURE = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
DOC_MIXED_QUERY = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC"
DOC_MIXED_BODY = "quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
DOC_MIXED_SIGNATURE = "0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77"


def test_documented_signature_vectors():
    assert sign(DOC_SECRET, DOC_QUERY) == DOC_SIGNATURE
    assert sign(DOC_SECRET, DOC_MIXED_QUERY + DOC_MIXED_BODY) == DOC_MIXED_SIGNATURE
    assert verify(DOC_SECRET, f"{DOC_QUERY}&signature={DOC_SIGNATURE}", "")
    assert verify(DOC_SECRET, DOC_MIXED_QUERY, f"{DOC_MIXED_BODY}&signature={DOC_MIXED_SIGNATURE}")
    assert not verify(DOC_SECRET, DOC_QUERY, "")
    assert not verify(DOC_SECRET, f"{DOC_QUERY}&signature={DOC_SIGNATURE[::-1]}", "")


@pytest.fixture
def doc_sim(start_sim):
    return start_sim("--no-market", "--symbol", "LTCBTC", accounts=[(DOC_KEY, DOC_SECRET)])


async def _raw(sim, method, query, body="", key=DOC_KEY):
    headers = {"X-MBX-APIKEY": key}
    if body:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    async with aiohttp.ClientSession() as s:
        async with s.request(method, f"{sim.base_url}/api/v3/order?{query}", data=body or None,
                             headers=headers) as resp:
            return resp.status, await resp.json()


async def test_documented_vector_is_accepted_over_the_wire(doc_sim):
    # The signature verifies, so the venue gets as far as the 2017 timestamp.
    assert await _raw(doc_sim, "POST", f"{DOC_QUERY}&signature={DOC_SIGNATURE}") == (
        400, {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."})
    status, body = await _raw(doc_sim, "POST", DOC_MIXED_QUERY, f"{DOC_MIXED_BODY}&signature={DOC_MIXED_SIGNATURE}")
    assert (status, body["code"]) == (400, -1021)
    status, body = await _raw(doc_sim, "POST", f"{DOC_QUERY}&signature={DOC_SIGNATURE[:-1]}0")
    assert (status, body["code"]) == (400, -1022)


@pytest.fixture
async def rest(quiet_sim):
    async with aiohttp.ClientSession() as session:
        key, secret = quiet_sim.accounts[0]
        yield RestClient(session, quiet_sim.base_url, key, secret)


LIMIT_BUY = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.01",
             "price": "50000"}


async def _error(rest, method, path, params, **kw):
    status, body, headers = await rest.request(method, path, params, signed=True, **kw)
    return status, body["code"], body["msg"]


async def test_timestamp_outside_recv_window(rest):
    stale = int(time.time() * 1000) - 10_000
    assert (await _error(rest, "POST", "/api/v3/order", LIMIT_BUY, timestamp=stale))[:2] == (400, -1021)
    ahead = int(time.time() * 1000) + 5_000
    assert (await _error(rest, "POST", "/api/v3/order", LIMIT_BUY, timestamp=ahead))[:2] == (400, -1021)


async def test_bad_signature_and_unknown_key(rest):
    assert (await _error(rest, "POST", "/api/v3/order", LIMIT_BUY, tamper=True))[:2] == (400, -1022)
    rest.key = "no-such-key"
    assert (await _error(rest, "GET", "/api/v3/account", {}))[:2] == (401, -2015)


@pytest.mark.parametrize("change, failing_filter", [
    ({"price": "50000.005"}, "PRICE_FILTER"),
    ({"price": "0.001"}, "PRICE_FILTER"),
    ({"quantity": "0.000015"}, "LOT_SIZE"),
    ({"quantity": "0.000001"}, "LOT_SIZE"),
    ({"quantity": "0.00001", "price": "50000"}, "NOTIONAL"),
])
async def test_filter_failures(rest, change, failing_filter):
    assert await _error(rest, "POST", "/api/v3/order", {**LIMIT_BUY, **change}) == (
        400, -1013, f"Filter failure: {failing_filter}")


async def test_rejections(rest, quiet_sim):
    # A resting ask from the other account, so a LIMIT_MAKER bid at its price would take.
    other = RestClient(rest.session, quiet_sim.base_url, *quiet_sim.accounts[1])
    await other.ok("POST", "/api/v3/order", {**LIMIT_BUY, "side": "SELL", "price": "60000"}, signed=True)
    maker = {**LIMIT_BUY, "type": "LIMIT_MAKER", "price": "60000"}
    maker.pop("timeInForce")
    assert await _error(rest, "POST", "/api/v3/order", maker) == (400, -2010, "Order would immediately match and take.")

    broke = {**LIMIT_BUY, "quantity": "100", "price": "50000"}  # 5,000,000 USDT against a 1,000,000 balance
    assert await _error(rest, "POST", "/api/v3/order", broke) == (
        400, -2010, "Account has insufficient balance for requested action.")

    await rest.ok("POST", "/api/v3/order", {**LIMIT_BUY, "newClientOrderId": "dup-1"}, signed=True)
    assert await _error(rest, "POST", "/api/v3/order", {**LIMIT_BUY, "newClientOrderId": "dup-1"}) == (
        400, -2010, "Duplicate order sent.")


async def test_unknown_order(rest):
    assert await _error(rest, "DELETE", "/api/v3/order", {"symbol": "BTCUSDT", "orderId": 999}) == (
        400, -2011, "Unknown order sent.")
    assert (await _error(rest, "DELETE", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "nope"}))[1] == -2011
    assert (await _error(rest, "DELETE", "/api/v3/openOrders", {"symbol": "BTCUSDT"}))[1] == -2011
    assert (await _error(rest, "GET", "/api/v3/order", {"symbol": "BTCUSDT", "orderId": 999}))[1] == -2013


async def test_malformed_parameters(rest):
    assert (await _error(rest, "POST", "/api/v3/order", {"symbol": "BTCUSDT", "side": "BUY"}))[:2] == (400, -1102)
    assert (await _error(rest, "POST", "/api/v3/order", {**LIMIT_BUY, "symbol": "NOPEUSDT"}))[1] == -1121
    assert (await _error(rest, "POST", "/api/v3/order", {**LIMIT_BUY, "side": "HOLD"}))[1] == -1117
    assert (await _error(rest, "POST", "/api/v3/order", {**LIMIT_BUY, "newClientOrderId": "has space"}))[1] == -1100
    assert (await _error(rest, "POST", "/api/v3/order", {**LIMIT_BUY, "recvWindow": "70000"}))[1] == -1131


async def _clear_of_window_edge(window_s: float, margin_s: float = 1.0) -> None:
    """The venue's limits use fixed windows: start a counting test well inside one."""
    into = time.time() % window_s
    if into > window_s - margin_s:
        await asyncio.sleep(window_s - into + 0.05)


async def test_request_weight_limit(start_sim):
    sim = start_sim("--no-market", "--weight-limit", "30")
    async with aiohttp.ClientSession() as session:
        client = RestClient(session, sim.base_url)
        await _clear_of_window_edge(60)
        used = []
        for _ in range(6):  # depth costs 5: six calls reach the limit exactly
            status, _, headers = await client.request("GET", "/api/v3/depth", {"symbol": "BTCUSDT"})
            assert status == 200
            used.append(int(headers["X-MBX-USED-WEIGHT-1M"]))
        assert used == [5, 10, 15, 20, 25, 30]
        status, body, headers = await client.request("GET", "/api/v3/depth", {"symbol": "BTCUSDT"})
        assert (status, body["code"]) == (429, -1003)
        assert 1 <= int(headers["Retry-After"]) <= 60


async def test_order_rate_limit(start_sim):
    sim = start_sim("--no-market", "--orders-per-10s", "3")
    async with aiohttp.ClientSession() as session:
        client = RestClient(session, sim.base_url, *sim.accounts[0])
        await _clear_of_window_edge(10)
        for i in range(3):
            await client.ok("POST", "/api/v3/order", {**LIMIT_BUY, "newClientOrderId": f"r{i}"}, signed=True)
        status, body, headers = await client.request("POST", "/api/v3/order", LIMIT_BUY, signed=True)
        assert (status, body["code"]) == (429, -1015)
        assert "Retry-After" in headers
