"""One bounded thread pool and one Docker client per engine for every Docker call we make.

DockerSpawner runs the Docker calls of a whole spawner class through a single
thread, so one slow call (a pull, a big volume removal) stalls every other
user's spawn. Everything in jupyterhub_ext - spawners and handlers - shares this
pool instead: calls run in parallel up to ``size`` and never on the event loop.

Clients are cached per engine and TLS settings (compared by value, never by
object identity: a fresh ``TLSConfig`` per access must not make a new client).
A client asks the engine for its API version on first use, which happens in a
pool thread with a deadline (``get_client``), never in the constructor: with
``version="auto"`` docker-py would make that HTTP call wherever the client is
built, and a hung engine would freeze the hub's event loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import docker
from docker.constants import MINIMUM_DOCKER_API_VERSION
from docker.tls import TLSConfig
from docker.utils import kwargs_from_env, version_lt

T = TypeVar("T")

DEFAULT_POOL_SIZE = 8
# seconds the engine has to tell its API version before a call fails
DEFAULT_CONNECT_TIMEOUT = 10.0

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None
_executor_size = 0
_clients: dict[tuple, PooledClient] = {}


class DockerUnavailable(docker.errors.DockerException):
    """The engine did not answer (in time) when asked for its API version."""


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


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class PooledClient(docker.APIClient):
    """An APIClient that negotiates the API version on first use, not when built.

    The constructor makes no network call; the first request (or
    ``negotiate()``) asks the engine, with ``connect_timeout`` as deadline.
    Asking from a thread that runs an event loop is refused: that call would
    block the hub.
    """

    def __init__(self, *, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT, **kwargs: Any) -> None:
        self._api_version: str | None = None
        self._negotiate_lock = threading.Lock()
        self.connect_timeout = connect_timeout
        version = kwargs.pop("version", None)
        auto = version is None or str(version).lower() == "auto"
        # a fixed placeholder keeps docker-py's constructor off the network
        super().__init__(version=MINIMUM_DOCKER_API_VERSION if auto else version, **kwargs)
        if auto:
            self._api_version = None

    @property  # type: ignore[override]
    def _version(self) -> str:
        return self._api_version or self.negotiate()

    @_version.setter
    def _version(self, value: str) -> None:
        self._api_version = value

    @property
    def negotiated(self) -> bool:
        return self._api_version is not None

    def negotiate(self) -> str:
        """Ask the engine for its API version once (blocking: call it in the pool)."""
        with self._negotiate_lock:
            if self._api_version is not None:
                return self._api_version
            if _on_event_loop():
                raise RuntimeError(
                    "Docker API version asked on the event loop; "
                    "await dockerpool.get_client() (or dockerpool.ready()) first"
                )
            url = self._url("/version", versioned_api=False)
            try:
                info = self._result(self._get(url, timeout=self.connect_timeout), json=True)
                version = info["ApiVersion"]
            except Exception as e:
                raise DockerUnavailable(
                    f"Docker engine at {self.base_url} did not tell its API version "
                    f"within {self.connect_timeout:g} s: {e}"
                ) from e
            if version_lt(version, MINIMUM_DOCKER_API_VERSION):
                raise DockerUnavailable(f"Docker API {version} is too old (docker-py needs 1.24+)")
            self._api_version = version
            return version


def _stable(value: Any) -> Any:
    """A hashable, value-based stand-in for a client option (TLSConfig by its fields)."""
    if isinstance(value, TLSConfig):
        return ("TLSConfig", _stable(value.cert), _stable(value.ca_cert), _stable(value.verify))
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _stable(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_stable(v) for v in value)
    return repr(value)


def client_options(tls_config: Mapping[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
    """Client options in DockerSpawner's precedence: tls_config, then env, then client_kwargs."""
    opts: dict[str, Any] = {"version": "auto"}
    if tls_config:
        opts["tls"] = dict(tls_config)
    opts.update(kwargs_from_env())
    opts.update(kwargs)
    return opts


def client_key(opts: Mapping[str, Any]) -> tuple:
    """Same engine and TLS settings -> same key (values, never object identity)."""
    return tuple(sorted((k, _stable(v)) for k, v in opts.items()))


def _build(pool_size: int, connect_timeout: float, opts: dict[str, Any]) -> PooledClient:
    opts = dict(opts)
    if isinstance(opts.get("tls"), Mapping):
        # reads the certificate paths: only when a client is really built
        opts["tls"] = TLSConfig(**opts["tls"])
    return PooledClient(max_pool_size=max(10, pool_size), connect_timeout=connect_timeout, **opts)


def client(
    pool_size: int = DEFAULT_POOL_SIZE,
    *,
    tls_config: Mapping[str, Any] | None = None,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    **kwargs: Any,
) -> PooledClient:
    """The shared client for these settings; built without any network call.

    Its API version is negotiated on first use, in whichever thread makes
    it: coroutines should ``await get_client(...)`` so that happens in the pool.
    """
    opts = client_options(tls_config, **kwargs)
    key = client_key(opts)
    with _lock:
        c = _clients.get(key)
        if c is None:
            c = _clients[key] = _build(pool_size, connect_timeout, opts)
        return c


async def ready(c: docker.APIClient, pool_size: int = DEFAULT_POOL_SIZE) -> docker.APIClient:
    """Negotiate ``c``'s API version in the pool (once), bounded by its connect timeout."""
    if not isinstance(c, PooledClient) or c.negotiated:
        return c
    timeout = c.connect_timeout
    try:
        await asyncio.wait_for(run(c.negotiate, pool_size=pool_size), timeout + 1)
    except TimeoutError:
        raise DockerUnavailable(
            f"Docker engine at {c.base_url} did not answer within {timeout:g} s"
        ) from None
    return c


def _cached(tls_config: Mapping[str, Any] | None = None, **kwargs: Any) -> PooledClient | None:
    kwargs.pop("connect_timeout", None)
    with _lock:
        return _clients.get(client_key(client_options(tls_config, **kwargs)))


async def get_client(pool_size: int = DEFAULT_POOL_SIZE, **kwargs: Any) -> PooledClient:
    """``client(...)`` built and negotiated in the pool: never blocks the event loop."""
    c = _cached(**kwargs)
    if c is not None and c.negotiated:
        # the usual case: no trip through the pool, which may be busy with pulls
        return c
    c = await run(client, pool_size, pool_size=pool_size, **kwargs)
    await ready(c, pool_size)
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
