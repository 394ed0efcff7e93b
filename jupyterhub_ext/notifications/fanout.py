"""Deliver one notification to many single-user servers at once.

Knows nothing of Tornado handlers or the hub: it gets targets (a name and the
base URL the spawner reports), a payload and each target's own token, and
returns one result per target. Requests run concurrently up to ``concurrency``; each target gets
at most ``per_server_timeout`` seconds, so a hung server costs its own timeout and never
delays the others.

Each target's token goes only into the ``Authorization`` header of the request
to that target; it is never logged, never appears in a result, and never goes
to another target (a server's owner can read what her server receives).
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.simple_httpclient import HTTPTimeoutError, SimpleAsyncHTTPClient

log = logging.getLogger("jupyterhub_ext.notifications.fanout")

INGEST_PATH = "jupyterlab-notifications-extension/ingest"
NOT_INSTALLED = (
    "jupyterlab-notifications-extension is not installed on this server "
    "(its ingest URL answered 404)"
)
NO_CREDENTIAL = "no delivery credential for this server (nothing was sent)"
DELIVERED = "delivered"
FAILED = "failed"

# Answers are a few dozen bytes; do not buffer megabytes from a confused server.
MAX_RESPONSE_BYTES = 64 * 1024


@dataclass(frozen=True)
class Target:
    """One single-user server: its owner, its name ("" = default) and base URL."""

    username: str
    server: str
    url: str

    @property
    def ingest_url(self) -> str:
        return self.url.rstrip("/") + "/" + INGEST_PATH


@dataclass(frozen=True)
class Delivery:
    """The outcome for one target; ``error`` says why when it failed."""

    target: Target
    ok: bool
    error: str | None = None
    seconds: float = 0.0

    @property
    def status(self) -> str:
        return DELIVERED if self.ok else FAILED

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "username": self.target.username,
            "server": self.target.server,
            "status": self.status,
        }
        if self.error:
            out["error"] = self.error
        return out


def _explain_http(code: int, body: bytes | None) -> str:
    if code == 404:
        return NOT_INSTALLED
    if code in (401, 403):
        return f"the server refused the hub's broadcast credential (HTTP {code})"
    detail = ""
    try:
        detail = str(json.loads(body or b"{}").get("error") or "")
    except (ValueError, AttributeError):
        pass
    if code == 400:
        return f"the server rejected the notification: {detail or 'HTTP 400'}"
    if 300 <= code < 400:
        return f"unexpected redirect (HTTP {code}) from the server"
    return f"HTTP {code} from the server" + (f": {detail}" if detail else "")


def _ok_body(body: bytes | None) -> bool:
    try:
        return json.loads(body or b"").get("success") is True
    except (ValueError, AttributeError):
        return False


async def _send_one(
    client: SimpleAsyncHTTPClient,
    target: Target,
    body: bytes,
    token: str,
    per_server_timeout: float,
    ssl_context: ssl.SSLContext | None,
) -> Delivery:
    timeout = per_server_timeout
    start = time.monotonic()
    request = HTTPRequest(
        target.ingest_url,
        method="POST",
        body=body,
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
        connect_timeout=timeout,
        request_timeout=timeout,
        follow_redirects=False,
        ssl_options=ssl_context,
    )
    try:
        # tornado enforces ``timeout``; wait_for is a guard against a stuck
        # client, never the normal path.
        response = await asyncio.wait_for(client.fetch(request), timeout + 5)
    except HTTPTimeoutError:
        error = f"no answer within {timeout:g} s"
    except HTTPClientError as e:
        if e.code == 599:
            error = "the server closed the connection without an answer"
        else:
            error = _explain_http(e.code, e.response.body if e.response else None)
    except TimeoutError:
        error = f"no answer within {timeout:g} s"
    except ConnectionRefusedError:
        error = "cannot connect to the server (connection refused)"
    except OSError as e:
        error = f"cannot connect to the server ({e.strerror or type(e).__name__})"
    except Exception as e:  # one broken target must not fail the others
        log.warning("Delivery to %s/%s failed unexpectedly", target.username, target.server)
        error = f"delivery error: {type(e).__name__}"
    else:
        if _ok_body(response.body):
            return Delivery(target, True, None, time.monotonic() - start)
        error = "unexpected answer from the server (not the notifications extension?)"
    return Delivery(target, False, error, time.monotonic() - start)


def _token_lookup(
    tokens: Mapping[Target, str] | Callable[[Target], str | None],
) -> Callable[[Target], str | None]:
    if isinstance(tokens, str):
        # one credential for every target is exactly what must not happen
        raise TypeError("tokens must map each target to its own token, not be one token")
    if isinstance(tokens, Mapping):
        return tokens.get
    return tokens


def _own_client(concurrency: int) -> SimpleAsyncHTTPClient:
    # Our own client: as many connections as the limit, so no request waits
    # in tornado's queue (where its timeout would already be running).
    return SimpleAsyncHTTPClient(
        force_instance=True,
        max_clients=concurrency,
        max_buffer_size=MAX_RESPONSE_BYTES,
        max_body_size=MAX_RESPONSE_BYTES,
    )


def _log_result(result: Delivery) -> None:
    target = result.target
    log.debug(
        "Notification to %s/%s: %s%s (%.2fs)",
        target.username,
        target.server,
        result.status,
        f" ({result.error})" if result.error else "",
        result.seconds,
    )


async def deliver(
    targets: Iterable[Target],
    payload: Mapping[str, Any],
    *,
    tokens: Mapping[Target, str] | Callable[[Target], str | None],
    concurrency: int = 20,
    per_server_timeout: float = 10.0,
    ssl_context: ssl.SSLContext | None = None,
    on_result: Callable[[Delivery], None] | None = None,
) -> list[Delivery]:
    """POST ``payload`` to every target's ingest URL; one result per target, in order.

    At most ``concurrency`` requests are in flight; each gets ``per_server_timeout``
    seconds (connect and answer). The whole call takes about
    ``ceil(len(targets) / concurrency)`` rounds of the slowest answers, and a
    target that never answers costs exactly its own timeout.

    ``tokens`` gives each target its own credential (a mapping, or a function
    of the target); a target without one fails without a request.
    ``on_result`` (optional) is called with each result as soon as it is known.
    """
    token_for = _token_lookup(tokens)
    targets = list(targets)
    if not targets:
        return []
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    body = json.dumps(payload).encode()
    limit = asyncio.Semaphore(concurrency)
    client = _own_client(concurrency)

    async def one(target: Target) -> Delivery:
        token = token_for(target)
        if not token:
            result = Delivery(target, False, NO_CREDENTIAL)
        else:
            async with limit:
                result = await _send_one(
                    client, target, body, token, per_server_timeout, ssl_context
                )
        _log_result(result)
        if on_result is not None:
            on_result(result)
        return result

    try:
        return list(await asyncio.gather(*(one(t) for t in targets)))
    finally:
        client.close()


__all__ = [
    "DELIVERED",
    "FAILED",
    "INGEST_PATH",
    "NOT_INSTALLED",
    "NO_CREDENTIAL",
    "Delivery",
    "Target",
    "deliver",
]
