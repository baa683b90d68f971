"""Runs the simulated exchange as a real subprocess and talks to it over real
sockets, the way a node does: signed REST with aiohttp, streams over
websockets. Written against Binance's documentation, not against our own
adapter, so a bug shared by both cannot hide."""
import hashlib
import hmac
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import aiohttp

READY = re.compile(r"SIM READY (http://\S+)")


class SimProcess:
    def __init__(self, tmp_path: Path, accounts, extra_args, audit_log: bool):
        self.accounts = list(accounts)
        self.audit_path = tmp_path / f"audit-{os.getpid()}-{id(self)}.jsonl" if audit_log else None
        self.args = [sys.executable, "-m", "understudy.cli", "sim", "--port", "0", *extra_args]
        for key, secret in self.accounts:
            self.args += ["--account", f"{key}:{secret}"]
        if self.audit_path:
            self.args += ["--audit-log", str(self.audit_path)]
        self.proc: subprocess.Popen | None = None
        self.base_url = ""

    def start(self, timeout: float = 20.0) -> None:
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + timeout
        lines = []
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            match = READY.search(line)
            if match:
                self.base_url = match.group(1)
                return
        self.stop()
        raise RuntimeError("sim did not become ready:\n" + "".join(lines))

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http://", "ws://")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def audit_records(self, kind: str | None = "request") -> list[dict]:
        if not self.audit_path or not self.audit_path.exists():
            return []
        records = [json.loads(line) for line in self.audit_path.read_text().splitlines() if line.strip()]
        return [r for r in records if kind is None or r["kind"] == kind]


def sign(secret: str, payload: str) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


class RestClient:
    """A minimal signed Binance REST client: parameters in the query string."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, key: str = "", secret: str = ""):
        self.session, self.base_url, self.key, self.secret = session, base_url, key, secret

    async def request(self, method: str, path: str, params: dict | None = None, signed: bool = False,
                      timestamp: int | None = None, tamper: bool = False):
        """Returns (HTTP status, JSON body, headers)."""
        params = dict(params or {})
        headers = {}
        if signed:
            params["timestamp"] = timestamp if timestamp is not None else int(time.time() * 1000)
            query = urlencode(params)
            signature = sign(self.secret, query)
            if tamper:
                signature = signature[:-1] + ("0" if signature[-1] != "0" else "1")
            query += "&signature=" + signature
            headers["X-MBX-APIKEY"] = self.key
        else:
            query = urlencode(params)
        url = f"{self.base_url}{path}" + (f"?{query}" if query else "")
        async with self.session.request(method, url, headers=headers) as resp:
            return resp.status, await resp.json(), resp.headers

    async def ok(self, method: str, path: str, params: dict | None = None, signed: bool = False):
        status, body, _ = await self.request(method, path, params, signed)
        assert status == 200, (status, body)
        return body
