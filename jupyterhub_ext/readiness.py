"""Notice a new server is up within a fraction of a second.

JupyterHub waits for a spawned server with exponential back-off (0.2 s, then
doubling up to 5 s between tries), so a server that comes up just after a
try is noticed up to seconds late; spawn times jump between ~3 s and ~6 s on
a server that takes 2-3 s to start. Polling at a short fixed interval before
handing the server to the hub removes that wait; the hub's own first check
then succeeds at once. A container that dies meanwhile fails the spawn now,
with its exit code and last log lines, instead of after ``http_timeout``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest


class ServerDied(RuntimeError):
    """The container stopped before its server answered."""


async def wait_until_up(
    url: str,
    *,
    interval: float,
    still_running: Callable[[], Awaitable[str | None]],
    check_every: float = 1.0,
) -> float:
    """Poll ``url`` until any non-5xx answer; return the seconds waited.

    ``still_running()`` is awaited about every ``check_every`` seconds and
    returns None while the container runs, or a message saying why it stopped.
    The caller bounds the total wait (JupyterHub's ``start_timeout``).
    """
    client = AsyncHTTPClient()
    t0 = time.monotonic()
    next_check = t0 + check_every
    while True:
        req = HTTPRequest(
            url, request_timeout=min(5.0, max(1.0, interval * 10)), follow_redirects=False
        )
        try:
            resp = await client.fetch(req, raise_error=False)
        except (OSError, HTTPClientError):
            pass  # not listening yet (refused, reset, timed out)
        else:
            if resp.code != 599 and resp.code < 500:
                return time.monotonic() - t0
        if time.monotonic() >= next_check:
            why = await still_running()
            if why is not None:
                raise ServerDied(why)
            next_check = time.monotonic() + check_every
        await asyncio.sleep(interval)
