"""One bounded thread pool and one Docker client for every Docker call we make.

DockerSpawner runs the Docker calls of a whole spawner class through a single
thread, so one slow call (a pull, a big volume removal) stalls every other
user's spawn. Everything in jupyterhub_ext - spawners and handlers - shares this
pool instead: calls run in parallel up to ``size`` and never on the event loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import docker
from docker.utils import kwargs_from_env

T = TypeVar("T")

DEFAULT_POOL_SIZE = 8

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None
_executor_size = 0
_clients: dict[tuple, docker.APIClient] = {}


def executor(size: int = DEFAULT_POOL_SIZE) -> ThreadPoolExecutor:
    """The process-wide pool; the first caller's size wins, a larger one grows it."""
    global _executor, _executor_size
    with _lock:
        if _executor is None or size > _executor_size:
            old = _executor
            _executor = ThreadPoolExecutor(max(1, size), thread_name_prefix="jhext-docker")
            _executor_size = max(1, size)
            if old is not None:
                # let calls already queued on the old pool finish there
                old.shutdown(wait=False)
        return _executor


def client(pool_size: int = DEFAULT_POOL_SIZE, **kwargs: Any) -> docker.APIClient:
    """A shared low-level client; its HTTP connection pool matches the thread pool."""
    opts = {"version": "auto", **kwargs_from_env(), **kwargs}
    key = tuple(sorted((k, repr(v)) for k, v in opts.items()))
    with _lock:
        c = _clients.get(key)
        if c is None:
            c = _clients[key] = docker.APIClient(max_pool_size=max(10, pool_size), **opts)
        return c


def current() -> ThreadPoolExecutor:
    """The pool as the spawner sized it (``docker_pool_size``); the default if none yet."""
    with _lock:
        if _executor is not None:
            return _executor
    return executor()


async def run(fn: Callable[..., T], *args: Any, pool_size: int | None = None, **kwargs: Any) -> T:
    """Run a blocking call in the shared pool without blocking the event loop.

    Without ``pool_size`` the pool is used at the size it has: a caller that
    does not know the admin's ``docker_pool_size`` must not grow it.
    """
    loop = asyncio.get_running_loop()
    pool = executor(pool_size) if pool_size else current()
    return await loop.run_in_executor(pool, lambda: fn(*args, **kwargs))
