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
    budget: float,
    check_every: float = 1.0,
) -> float | None:
    """Poll ``url`` until any non-5xx answer; return the seconds waited.

    ``still_running()`` is awaited about every ``check_every`` seconds and
    returns None while the container runs, or a message saying why it stopped.
    After ``budget`` seconds with the container still running, return None:
    the server is alive but slow, and JupyterHub's own wait (``http_timeout``)
    takes over, as it does for DockerSpawner.
    """
    client = AsyncHTTPClient()
    t0 = time.monotonic()
    end = t0 + budget
    next_check = t0 + check_every
    while True:
        left = end - time.monotonic()
        if left <= 0:
            why = await still_running()
            if why is not None:
                raise ServerDied(why)
            return None
        req = HTTPRequest(
            url,
            request_timeout=max(0.1, min(left, 5.0, max(1.0, interval * 10))),
            follow_redirects=False,
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
        await asyncio.sleep(min(interval, max(0.0, end - time.monotonic())))
