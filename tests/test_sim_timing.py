"""recvWindow and timestamp exactly as Binance documents them ("Timing
security", rest-api.md and web-socket-api.md; simexchange/timing.py cites it):
both checks, microseconds, the documented errors, the matching-delay fault
that makes the second check bite, and what the audit log keeps of it."""
import asyncio
import json
import time

import aiohttp
import pytest
import websockets

from simexchange import errors, timing
from simexchange.engine import MatchingEngine
from simexchange.symbols import make_spec
from simexchange.units import SCALE, parse_amount
from tests.simproc import RestClient, sign

NOW_US = 1_750_000_000_123_456  # a microsecond instant in 2025


# -- the rules, as pure functions -------------------------------------------------
@pytest.mark.parametrize("sent, us", [
    ("1750000000123", 1_750_000_000_123_000),  # milliseconds
    ("1750000000123456", 1_750_000_000_123_456),  # microseconds
    (1750000000123, 1_750_000_000_123_000),  # a JSON number (WebSocket API)
    ("1483228800000", 1_483_228_800_000_000),  # 2017-01-01 in ms: still milliseconds
    ("1483228800000000", 1_483_228_800_000_000),  # ... and in microseconds
])
def test_timestamp_unit_is_told_apart_by_magnitude(sent, us):
    assert timing.timestamp_us(sent) == us


@pytest.mark.parametrize("junk", ["", "abc", "1750000000123.5", "-1750000000123", "+1", " 1", "1e12", True,
                                  "١٧٥٠"])
def test_a_timestamp_that_is_not_a_long_is_illegal(junk):
    with pytest.raises(errors.VenueError) as exc:
        timing.timestamp_us(junk)
    assert (exc.value.code, exc.value.msg) == (-1100, "Illegal characters found in parameter 'timestamp'.")


@pytest.mark.parametrize("sent, us", [
    (None, 5_000_000), ("5000", 5_000_000), ("6000.346", 6_000_346), ("0.5", 500), ("250.25", 250_250),
    ("60000", 60_000_000), ("60000.000", 60_000_000), (6000.346, 6_000_346), (1000, 1_000_000),
])
def test_recv_window_takes_up_to_three_decimals(sent, us):
    assert timing.recv_window_us(sent) == us


@pytest.mark.parametrize("sent, code, msg", [
    ("6000.3467", -1111, "Parameter 'recvWindow' has too much precision."),
    ("60000.001", -1131, "'recvWindow' must be less than 60000."),
    ("70000", -1131, "'recvWindow' must be less than 60000."),
    ("abc", -1100, "Illegal characters found in parameter 'recvWindow'."),
    ("-5", -1100, "Illegal characters found in parameter 'recvWindow'."),
    ("5000.", -1100, "Illegal characters found in parameter 'recvWindow'."),
    ("1e3", -1100, "Illegal characters found in parameter 'recvWindow'."),
])
def test_a_bad_recv_window_gets_the_documented_error(sent, code, msg):
    with pytest.raises(errors.VenueError) as exc:
        timing.recv_window_us(sent)
    assert (exc.value.code, exc.value.msg) == (code, msg)


def test_receipt_check_is_the_documented_condition_to_the_microsecond():
    # "timestamp < (serverTime + 1 second) && (serverTime - timestamp) <= recvWindow"
    timing.check_at_receipt(NOW_US - 5_000_000, 5_000_000, NOW_US)  # exactly recvWindow old: processed
    timing.check_at_receipt(NOW_US + 999_999, 5_000_000, NOW_US)  # just under a second ahead: processed
    with pytest.raises(errors.VenueError) as exc:
        timing.check_at_receipt(NOW_US - 5_000_001, 5_000_000, NOW_US)
    assert (exc.value.code, exc.value.msg) == (-1021, "Timestamp for this request is outside of the recvWindow.")
    with pytest.raises(errors.VenueError) as exc:
        timing.check_at_receipt(NOW_US + 1_000_000, 5_000_000, NOW_US)
    assert (exc.value.code, exc.value.msg) == (-1021, "Timestamp for this request was 1000ms ahead of the server's time.")


def test_second_check_is_timestamp_plus_recv_window():
    timing.check_before_matching(NOW_US, NOW_US)
    with pytest.raises(errors.VenueError) as exc:
        timing.check_before_matching(NOW_US, NOW_US + 1)
    assert exc.value.code == -1021


def test_the_matching_engine_refuses_an_order_past_its_deadline_and_changes_nothing():
    now_us = [NOW_US]
    engine = MatchingEngine([make_spec("BTCUSDT")], lambda: now_us[0] // 1000, clock_us=lambda: now_us[0])
    engine.add_account("a", "s", {"BTC": 10 * SCALE, "USDT": 1_000_000 * SCALE})
    args = ("a", "BTCUSDT", "BUY", "LIMIT", "GTC", parse_amount("50000"), parse_amount("0.01"), 0)
    with pytest.raises(errors.VenueError) as exc:
        engine.place(*args, "late", not_after_us=NOW_US - 1)
    assert exc.value.code == -1021
    assert engine.open_orders == {} and engine.accounts["a"].locked["USDT"] == 0
    assert engine.place(*args, "on-time", not_after_us=NOW_US).status == "NEW"
    with pytest.raises(errors.VenueError):
        engine.cancel("a", "BTCUSDT", None, "on-time", "cx", not_after_us=NOW_US - 1)
    with pytest.raises(errors.VenueError):
        engine.cancel_all("a", "BTCUSDT", lambda: "cx", not_after_us=NOW_US - 1)
    assert len(engine.open_orders) == 1


def test_audit_fields_keep_what_the_client_sent():
    assert timing.audit_fields({"timestamp": "1750000000123456", "recvWindow": "250.125"}) == {
        "client_ts_ms": 1_750_000_000_123, "client_ts_us": 1_750_000_000_123_456, "recv_window_ms": 250.125}
    assert timing.audit_fields({"timestamp": "1750000000123"}) == {
        "client_ts_ms": 1_750_000_000_123, "client_ts_us": 1_750_000_000_123_000, "recv_window_ms": 5000.0}
    assert timing.audit_fields({"timestamp": "x", "recvWindow": "nan"}) == {}


# -- over the wire --------------------------------------------------------------------
BID = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.01",
       "price": "50000"}


@pytest.fixture
async def rest(quiet_sim):
    async with aiohttp.ClientSession() as session:
        yield RestClient(session, quiet_sim.base_url, *quiet_sim.accounts[0])


async def _send(rest, params, timestamp):
    status, body, headers = await rest.request("POST", "/api/v3/order", params, signed=True, timestamp=timestamp)
    return status, body, headers


async def test_microsecond_timestamp_and_fractional_recv_window_are_accepted(rest):
    now_us = time.time_ns() // 1000
    status, body, _ = await _send(rest, {**BID, "newClientOrderId": "us-1", "recvWindow": "4000.125"}, now_us)
    assert (status, body["status"]) == (200, "NEW")


async def test_receipt_check_over_http(rest):
    # 2 s old against a window of 1999.5 ms: refused; against 2500.25 ms: taken.
    stale_us = time.time_ns() // 1000 - 2_000_000
    status, body, headers = await _send(rest, {**BID, "recvWindow": "1999.5"}, stale_us)
    assert (status, body) == (400, {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."})
    assert "X-MBX-ORDER-COUNT-10S" not in headers, "a receipt-check rejection is no unfilled order"
    status, _, _ = await _send(rest, {**BID, "recvWindow": "2500.25", "newClientOrderId": "ok"}, stale_us)
    assert status == 200
    status, body, _ = await _send(rest, BID, int(time.time() * 1000) + 1_500)
    assert (status, body) == (400, {"code": -1021, "msg": "Timestamp for this request was 1000ms ahead of the server's time."})


async def test_bad_recv_window_over_http(rest):
    now = int(time.time() * 1000)
    for window, code in (("60000.001", -1131), ("5000.1234", -1111), ("five", -1100)):
        status, body, _ = await _send(rest, {**BID, "recvWindow": window}, now)
        assert (status, body["code"]) == (400, code), window
    status, _, _ = await _send(rest, {**BID, "recvWindow": "60000", "newClientOrderId": "max"}, now)
    assert status == 200


async def test_server_time_is_the_clock_the_checks_use(rest):
    status, body, headers = await rest.request("GET", "/api/v3/time")
    assert status == 200 and set(body) == {"serverTime"} and isinstance(body["serverTime"], int)
    first = int(headers["X-MBX-USED-WEIGHT-1M"])
    _, again, headers = await rest.request("GET", "/api/v3/time")
    assert int(headers["X-MBX-USED-WEIGHT-1M"]) == first + 1, "weight 1"
    server_ms = again["serverTime"]
    assert abs(server_ms - time.time() * 1000) < 1000
    # Judged by that clock: 1.5 s ahead of it is refused, 4 s behind it fits the default 5 s window.
    assert (await _send(rest, BID, server_ms + 1_500))[1]["code"] == -1021
    assert (await _send(rest, {**BID, "newClientOrderId": "behind"}, server_ms - 4_000))[0] == 200


async def _faults(sim, body) -> tuple[int, object]:
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{sim.base_url}/sim/v1/faults", json=body) as resp:
            return resp.status, (await resp.json() if resp.status == 200 else await resp.text())


async def test_matching_delay_makes_the_second_check_bite_and_is_audited(quiet_sim, rest):
    assert (await _faults(quiet_sim, {"matching_delay_ms": 400}))[1]["matching_delay_ms"] == 400
    now_us = time.time_ns() // 1000
    # Through the receipt check (a 250 ms window, sent now) but 400 ms late at the matching engine.
    status, body, headers = await _send(rest, {**BID, "newClientOrderId": "late-1", "recvWindow": "250.5"}, now_us)
    assert (status, body) == (400, {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."})
    assert headers["X-MBX-ORDER-COUNT-10S"] == "1", "the second check counts as an unfilled order (CHANGELOG 2025-05-22)"
    status, _, _ = await _send(rest, {**BID, "newClientOrderId": "roomy", "recvWindow": "2000"}, now_us)
    assert status == 200, "a window wider than the delay still fits"
    status, body, _ = await rest.request("DELETE", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "roomy",
                                                                      "recvWindow": "100"}, signed=True)
    assert (status, body["code"]) == (400, -1021), "cancels go to the matching engine too"
    stale_ms = int(time.time() * 1000) - 3_000
    status, body, _ = await _send(rest, {**BID, "newClientOrderId": "stale", "recvWindow": "1000"}, stale_ms)
    assert (status, body["code"]) == (400, -1021)

    assert (await _faults(quiet_sim, {"matching_delay_ms": 0}))[1]["matching_delay_ms"] == 0
    status, _, _ = await _send(rest, {**BID, "newClientOrderId": "late-2", "recvWindow": "250.5"},
                               time.time_ns() // 1000)
    assert status == 200, "off again"

    records = {r["client_order_id"]: r for r in quiet_sim.audit_records() if r["action"] == "new"}
    late = records["late-1"]
    assert (late["outcome"], late["code"], late["http_status"]) == ("rejected", -1021, 400)
    assert late["recv_window_ms"] == 250.5 and late["client_ts_us"] == now_us and late["client_ts_ms"] == now_us // 1000
    assert late["forwarded_us"] - late["recv_us"] >= 400_000, "rejected at the matching engine, after the delay"
    assert late["forwarded_us"] > late["client_ts_us"] + 250_500
    stale = records["stale"]
    assert (stale["code"], stale["recv_window_ms"], stale["client_ts_ms"]) == (-1021, 1000.0, stale_ms)
    assert "forwarded_us" not in stale, "rejected at receipt, never forwarded"
    assert records["late-2"]["outcome"] == "accepted" and records["late-2"]["recv_window_ms"] == 250.5


@pytest.mark.parametrize("bad", [{"matching_delay_ms": -1}, {"matching_delay_ms": "5"}, {"matching_delay_ms": True},
                                 {"matching_delay_ms": 1.5}, {"no_such_fault": 1}, [1, 2]])
async def test_matching_delay_is_validated(quiet_sim, bad):
    status, text = await _faults(quiet_sim, bad)
    assert status == 400, text


async def test_ws_api_applies_the_same_timing_rules(quiet_sim):
    key, secret = quiet_sim.accounts[0]

    async def subscribe(ws, **params):
        params = {"apiKey": key, **params}
        payload = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
        params["signature"] = sign(secret, payload)
        await ws.send(json.dumps({"id": 7, "method": "userDataStream.subscribe.signature", "params": params}))
        return json.loads(await asyncio.wait_for(ws.recv(), 5))

    async with websockets.connect(f"{quiet_sim.ws_url}/ws-api/v3") as ws:
        reply = await subscribe(ws, timestamp=time.time_ns() // 1000, recvWindow="1500.5")
        assert reply["status"] == 200, reply
        reply = await subscribe(ws, timestamp=time.time_ns() // 1000, recvWindow="1500.5555")
        assert (reply["status"], reply["error"]["code"]) == (400, -1111)
        reply = await subscribe(ws, timestamp=int(time.time() * 1000) - 3_000, recvWindow=2000)
        assert reply["error"] == {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."}
        reply = await subscribe(ws, timestamp=int(time.time() * 1000) + 2_000)
        assert reply["error"] == {"code": -1021, "msg": "Timestamp for this request was 1000ms ahead of the server's time."}
        reply = await subscribe(ws, timestamp=int(time.time() * 1000), recvWindow=61000)
        assert reply["error"] == {"code": -1131, "msg": "'recvWindow' must be less than 60000."}
