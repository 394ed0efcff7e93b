"""Fan-out against real HTTP endpoints on 127.0.0.1 that speak the ingest API.

The endpoints are small tornado servers in this process, one socket each
(the hub-level tests use the real extension in real containers).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import AsyncIterator

import pytest
from tornado import web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from jupyterhub_ext.notifications import fanout
from jupyterhub_ext.notifications.fanout import NOT_INSTALLED, Target, deliver

TOKEN = "s3cret-token-value-0123456789abcdef"


def same_token(target: Target) -> str:
    """The tests below that are not about credentials give every target TOKEN."""
    return TOKEN


PAYLOAD = {"message": "Maintenance at 18:00", "type": "warning", "autoClose": False}


class Endpoint:
    """One fake single-user server with the extension's ingest route."""

    def __init__(self, mode: str = "ok", delay: float = 0.0) -> None:
        self.mode, self.delay = mode, delay
        self.received: list[dict] = []
        self.auth: list[str] = []
        self.in_flight = 0
        self.server: HTTPServer | None = None
        self.hang: asyncio.Server | None = None
        self.port = 0

    async def start(self, stats: dict) -> Endpoint:
        if self.mode == "hang":
            # accepts the connection, reads the request, never answers
            async def never(reader, writer):
                await asyncio.sleep(3600)

            self.hang = await asyncio.start_server(never, "127.0.0.1", 0)
            self.port = self.hang.sockets[0].getsockname()[1]
            return self
        if self.mode == "refused":
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.port = s.getsockname()[1]
            return self
        endpoint = self

        class Ingest(web.RequestHandler):
            async def post(self, user):
                stats["now"] += 1
                stats["max"] = max(stats["max"], stats["now"])
                try:
                    if endpoint.delay:
                        await asyncio.sleep(endpoint.delay)
                    endpoint.auth.append(self.request.headers.get("Authorization", ""))
                    if endpoint.mode in ("forbidden", "bad", "weird"):
                        code = {"forbidden": 403, "bad": 400, "weird": 200}[endpoint.mode]
                        self.set_status(code)
                        self.finish({"error": "'message' must be a non-empty string"})
                        return
                    endpoint.received.append(json.loads(self.request.body))
                    self.finish({"success": True, "notification_id": "n1"})
                finally:
                    stats["now"] -= 1

        route = (r"/user/([^/]+)/" + fanout.INGEST_PATH, Ingest)
        routes = [] if self.mode == "missing" else [route]
        sockets = bind_sockets(0, "127.0.0.1")
        self.port = sockets[0].getsockname()[1]
        self.server = HTTPServer(web.Application(routes))
        self.server.add_sockets(sockets)
        return self

    def target(self, name: str) -> Target:
        # the base URL as a spawner reports it: scheme, host, port, base path
        return Target(name, "", f"http://127.0.0.1:{self.port}/user/{name}/")

    async def stop(self) -> None:
        if self.server:
            self.server.stop()
        if self.hang:
            self.hang.close()


@pytest.fixture
async def endpoints() -> AsyncIterator:
    made: list[Endpoint] = []
    stats = {"now": 0, "max": 0}

    async def make(mode: str = "ok", delay: float = 0.0) -> Endpoint:
        ep = await Endpoint(mode, delay).start(stats)
        made.append(ep)
        return ep

    make.stats = stats
    yield make
    for ep in made:
        await ep.stop()


async def test_each_target_gets_only_its_own_token(endpoints):
    eps = [await endpoints() for _ in range(3)]
    targets = [ep.target(f"u{i}") for i, ep in enumerate(eps)]
    tokens = {t: f"token-of-{t.username}-0123456789" for t in targets}
    results = await deliver(targets, PAYLOAD, tokens=tokens)
    assert [r.as_dict() for r in results] == [
        {"username": f"u{i}", "server": "", "status": "delivered"} for i in range(3)
    ]
    for t, ep in zip(targets, eps, strict=True):
        assert ep.received == [PAYLOAD]
        assert ep.auth == [f"token {tokens[t]}"]  # its own, and no other


async def test_tokens_may_be_a_function_of_the_target(endpoints):
    ep = await endpoints()
    results = await deliver([ep.target("a")], PAYLOAD, tokens=lambda t: f"fn-{t.username}-xyz")
    assert results[0].ok and ep.auth == ["token fn-a-xyz"]


async def test_a_target_without_a_token_gets_no_request(endpoints):
    with_token, without = await endpoints(), await endpoints()
    a, b = with_token.target("a"), without.target("b")
    results = await deliver([a, b], PAYLOAD, tokens={a: "token-of-a-0123456789"})
    assert results[0].ok
    assert not results[1].ok and results[1].error == fanout.NO_CREDENTIAL
    assert without.auth == [] and without.received == []


async def test_one_token_for_everyone_is_refused(endpoints):
    ep = await endpoints()
    with pytest.raises(TypeError, match="its own token"):
        await deliver([ep.target("a")], PAYLOAD, tokens=TOKEN)
    assert ep.received == []


async def test_failures_are_explained(endpoints):
    cases = {
        "missing": NOT_INSTALLED,
        "forbidden": "refused the hub's broadcast credential (HTTP 403)",
        "bad": "rejected the notification: 'message' must be a non-empty string",
        "refused": "cannot connect to the server",
        "weird": "unexpected answer",
    }
    eps = {mode: await endpoints(mode) for mode in cases}
    ok = await endpoints()
    targets = [ok.target("fine")] + [ep.target(mode) for mode, ep in eps.items()]
    results = await deliver(targets, PAYLOAD, tokens=same_token, per_server_timeout=5)
    by_name = {r.target.username: r for r in results}
    assert by_name["fine"].ok and ok.received == [PAYLOAD]
    for mode, expected in cases.items():
        r = by_name[mode]
        assert not r.ok and r.status == "failed"
        assert expected in r.error, (mode, r.error)
        assert r.as_dict()["error"] == r.error


async def test_hung_server_costs_only_its_timeout(endpoints):
    timeout = 1.0
    hung = await endpoints("hang")
    fast = [await endpoints() for _ in range(5)]
    targets = [hung.target("hung")] + [ep.target(f"f{i}") for i, ep in enumerate(fast)]
    start = time.monotonic()
    results = await deliver(targets, PAYLOAD, tokens=same_token, per_server_timeout=timeout)
    elapsed = time.monotonic() - start
    assert results[0].error == "no answer within 1 s"
    assert timeout * 0.9 <= results[0].seconds <= timeout + 0.5
    # the others were not held up by the hung one
    assert all(r.ok for r in results[1:])
    assert max(r.seconds for r in results[1:]) < timeout / 2
    assert elapsed < timeout + 0.8


async def test_concurrency_limit_is_respected(endpoints):
    delay, limit, n = 0.2, 3, 12
    eps = [await endpoints(delay=delay) for _ in range(n)]
    start = time.monotonic()
    results = await deliver(
        [ep.target(f"u{i}") for i, ep in enumerate(eps)],
        PAYLOAD,
        tokens=same_token,
        concurrency=limit,
    )
    elapsed = time.monotonic() - start
    assert all(r.ok for r in results)
    assert endpoints.stats["max"] == limit
    # 12 / 3 = 4 rounds of 0.2 s: neither serial (2.4 s) nor all at once (0.2 s)
    assert 4 * delay * 0.9 <= elapsed < 4 * delay + 1.0


async def test_no_targets_no_requests():
    assert await deliver([], PAYLOAD, tokens=same_token) == []


async def test_token_never_logged_or_returned(endpoints, caplog):
    caplog.set_level(logging.DEBUG)
    ok, missing, hung = await endpoints(), await endpoints("missing"), await endpoints("hang")
    results = await deliver(
        [ok.target("a"), missing.target("b"), hung.target("c")],
        PAYLOAD,
        tokens=same_token,
        per_server_timeout=0.5,
    )
    assert [r.ok for r in results] == [True, False, False]
    assert "Notification to a/: delivered" in caplog.text  # logging did happen
    assert TOKEN not in caplog.text
    assert TOKEN not in json.dumps([r.as_dict() for r in results])
