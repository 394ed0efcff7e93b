"""Listing and resetting one user's volumes, apart from Tornado and the hub.

The hub-side rules (who may ask, which server is running, the per-user lock)
live in :mod:`jupyterhub_ext.handlers.volumes`; this module only knows a
volume set, the Docker names its keys render to, and a Docker client. Every
Docker call runs in the shared pool (:mod:`jupyterhub_ext.engine.dockerpool`).

Safety rules of a reset, enforced here:

- the caller passes volume *keys*; names come only from the volume set, so
  no request can name another user's, a shared or the hub's own volume;
- a volume labelled as owned by another hub user is never removed;
- a stopped container holding the volume is removed first only when it is
  one of ours owned by the same user; a running one, or a foreign one, makes
  that volume fail with a message saying which container holds it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jupyterhub_ext.engine import APIClient, dockerpool, ownership
from jupyterhub_ext.engine.errors import APIError, NotFound, explain
from jupyterhub_ext.engine.labels import LABEL_MANAGED, LABEL_OWNER_ID
from jupyterhub_ext.storage.volumes import VolumeSpec

log = logging.getLogger("jupyterhub_ext.storage.volume_ops")

# Container states in which Docker still counts a volume as used by a live process.
LIVE_STATES = {"running", "paused", "restarting", "removing"}

# How long a `docker system df` answer is reused, and how long a listing waits
# for a fresh one before answering with what it has (sizes null when unknown).
SIZE_MAX_AGE = 60.0
SIZE_WAIT = 1.5


class ResetRequestError(ValueError):
    """A reset request that cannot be carried out as sent; the message says why."""


def parse_reset_request(body: Any, specs: Sequence[VolumeSpec]) -> list[str]:
    """Validate ``{"volumes": [key, ...]}`` against a volume set.

    Returns the chosen keys in the order of the set. Raises ResetRequestError
    for anything but a JSON object whose only field ``volumes`` is a
    non-empty list of keys of resettable volumes of this set.
    """
    by_key = {s.key: s for s in specs}
    resettable = [s.key for s in specs if s.resettable]
    hint = f"resettable volumes: {', '.join(resettable) or 'none'}"
    if not isinstance(body, dict):
        raise ResetRequestError('body must be a JSON object like {"volumes": ["home"]}; ' + hint)
    extra = sorted(set(body) - {"volumes"})
    if extra:
        raise ResetRequestError(f"unknown field(s) {extra}; the only field is 'volumes'")
    keys = body.get("volumes")
    if not isinstance(keys, list) or not keys:
        raise ResetRequestError("'volumes' must be a non-empty list of volume keys; " + hint)
    for k in keys:
        if not isinstance(k, str):
            raise ResetRequestError(
                f"'volumes' must contain volume keys (strings), got {k!r}; " + hint
            )
    for k in keys:
        spec = by_key.get(k)
        if spec is None:
            raise ResetRequestError(f"no volume with key {k!r} in this server's set; " + hint)
        if not spec.resettable:
            why = "shared volumes are never reset" if not spec.per_user else "it is protected"
            raise ResetRequestError(f"volume {k!r} cannot be reset ({why}); " + hint)
    chosen = set(keys)
    return [s.key for s in specs if s.key in chosen]


# -- sizes -------------------------------------------------------------------


class SizeCache:
    """Volume sizes from ``docker system df``, refreshed in the pool, reused a while.

    ``df`` walks every volume on the engine and can take seconds on a busy
    host; a listing never waits for it longer than ``wait``.
    """

    def __init__(self, max_age: float = SIZE_MAX_AGE) -> None:
        self.max_age = max_age
        self._sizes: dict[str, int] = {}
        self._at = float("-inf")
        self._task: asyncio.Task | None = None

    def fresh(self) -> bool:
        return time.monotonic() - self._at < self.max_age

    async def _refresh(self, client: APIClient, pool_size: int) -> None:
        try:
            df = await dockerpool.run(client.df, pool_size=pool_size)
        except Exception as e:  # sizes are a nicety: keep the old ones
            log.warning("docker system df failed, volume sizes stay unknown: %s", e)
            return
        sizes = {}
        for v in df.get("Volumes") or []:
            size = (v.get("UsageData") or {}).get("Size", -1)
            if isinstance(size, int) and size >= 0:
                sizes[v["Name"]] = size
        self._sizes = sizes
        self._at = time.monotonic()

    async def sizes(
        self, client: APIClient, *, pool_size: int, wait: float = SIZE_WAIT
    ) -> dict[str, int]:
        """Known sizes by volume name; refreshes in the background when stale."""
        if not self.fresh():
            if self._task is None or self._task.done():
                self._task = asyncio.ensure_future(self._refresh(client, pool_size))
            try:
                await asyncio.wait_for(asyncio.shield(self._task), wait)
            except TimeoutError:
                pass
        return dict(self._sizes)

    def forget(self, names: Iterable[str]) -> None:
        """Drop sizes of volumes that were just removed (the next df is not needed)."""
        for n in names:
            self._sizes.pop(n, None)


_size_caches: dict[str, SizeCache] = {}


def size_cache(client: APIClient) -> SizeCache:
    """The cache for one Docker engine."""
    key = str(getattr(client, "base_url", ""))
    if key not in _size_caches:
        _size_caches[key] = SizeCache()
    return _size_caches[key]


# -- listing -----------------------------------------------------------------


async def _inspect(client: APIClient, name: str, pool_size: int) -> dict | None:
    try:
        return await dockerpool.run(client.inspect_volume, name, pool_size=pool_size)
    except NotFound:
        return None


async def list_volumes(
    client: APIClient,
    specs: Sequence[VolumeSpec],
    names: Mapping[str, str],
    *,
    pool_size: int = dockerpool.DEFAULT_POOL_SIZE,
    size_wait: float = SIZE_WAIT,
    refusal: Callable[[str, Mapping[str, str] | None, str], str | None] | None = None,
) -> list[dict[str, Any]]:
    """One entry per volume of the set: what a user may see about it.

    ``size`` is bytes, or None when not known yet (never created, or the
    engine's usage data not in the cache and not ready within ``size_wait``).
    ``refusal(name, labels, scope)``: the ownership rule; a volume of that
    name that is not the user's shows only ``problem``, nothing of its content.
    """
    infos, sizes = await asyncio.gather(
        asyncio.gather(*(_inspect(client, names[s.key], pool_size) for s in specs)),
        size_cache(client).sizes(client, pool_size=pool_size, wait=size_wait),
    )
    out = []
    for spec, info in zip(specs, infos, strict=True):
        name = names[spec.key]
        problem = refusal(name, info.get("Labels"), spec.scope) if info and refusal else None
        entry = {
            **spec.public(),
            "name": name,
            "exists": info is not None,
            "size": sizes.get(name) if info is not None and not problem else None,
        }
        if problem:
            entry["problem"] = problem
        out.append(entry)
    return out


# -- reset -------------------------------------------------------------------


@dataclass
class ResetResult:
    key: str
    name: str
    status: str = "reset"  # reset | absent | refused (not this user's) | failed
    message: str = ""
    removed_containers: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status in ("reset", "absent")

    def as_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "name": self.name,
            "status": self.status,
            "ok": self.ok,
            "message": self.message,
            "removed_containers": self.removed_containers,
        }


def _owned_by(labels: Mapping[str, str] | None, owner_id: int) -> bool:
    labels = labels or {}
    return labels.get(LABEL_MANAGED) == "true" and labels.get(LABEL_OWNER_ID) == str(owner_id)


async def _reset_one(
    client: APIClient,
    key: str,
    name: str,
    owner: ownership.Owner,
    pool_size: int,
    adopt_unlabelled: bool = False,
) -> ResetResult:
    res = ResetResult(key=key, name=name)
    info = await _inspect(client, name, pool_size)
    if info is None:
        res.status, res.message = "absent", "did not exist; the next start creates it empty"
        return res
    # e.g. a name template that maps two users to one name: never cross over
    why = ownership.volume_refusal(
        name, info.get("Labels"), owner=owner, scope="user", adopt_unlabelled=adopt_unlabelled
    )
    if why:
        res.status = "refused"
        res.message = f"{why}; nothing was removed; ask an administrator"
        return res

    failure = await _remove_stopped_holders(
        client, name, owner.id, pool_size, res.removed_containers
    )
    if failure:
        res.status, res.message = "failed", failure
        return res

    try:
        await dockerpool.run(client.remove_volume, name, pool_size=pool_size)
    except NotFound:
        res.status, res.message = "absent", "did not exist; the next start creates it empty"
    except APIError as e:
        res.status = "failed"
        res.message = f"Docker refused to remove it: {explain(e)}"
    else:
        res.message = "removed; the next start creates it empty"
    return res


async def _remove_stopped_holders(
    client: APIClient, name: str, owner_id: int, pool_size: int, removed: list[str]
) -> str | None:
    """Remove this user's stopped containers holding volume ``name``.

    Returns why the volume cannot be freed (a live holder, another's holder,
    a refused removal), or None. Each removed container's name is appended
    to ``removed`` as it goes.
    """

    async def run(fn, *args, **kwargs):
        return await dockerpool.run(fn, *args, pool_size=pool_size, **kwargs)

    holders = await run(client.containers, all=True, filters={"volume": name})
    for c in holders:
        try:
            detail = await run(client.inspect_container, c["Id"])
        except NotFound:
            continue  # removed since the listing (an auto-removed or Swarm task container)
        if not any(m.get("Name") == name for m in detail.get("Mounts") or []):
            continue  # the filter also matches mount paths
        cname = detail.get("Name", "").lstrip("/") or c["Id"][:12]
        state = (detail.get("State") or {}).get("Status", "")
        if state in LIVE_STATES:
            return f"in use by container {cname} ({state}); stop it first"
        if not _owned_by((detail.get("Config") or {}).get("Labels"), owner_id):
            return (
                f"held by container {cname}, which is not one of this user's servers; "
                "ask an administrator"
            )
        try:
            await run(client.remove_container, c["Id"], v=False, force=False)
        except NotFound:
            pass  # an auto-removed container went away by itself
        except APIError as e:
            return f"could not remove stopped container {cname}: {explain(e)}"
        removed.append(cname)
    return None


async def reset_volumes(
    client: APIClient,
    targets: Sequence[tuple[str, str]],
    *,
    owner: ownership.Owner,
    pool_size: int = dockerpool.DEFAULT_POOL_SIZE,
    adopt_unlabelled: bool = False,
) -> list[ResetResult]:
    """Remove the given (key, docker name) volumes of one hub user, one by one.

    The caller holds the user's lock and has checked that none of that user's
    servers mounting them is running or pending.
    """
    results = []
    for key, name in targets:
        try:
            res = await _reset_one(client, key, name, owner, pool_size, adopt_unlabelled)
        except APIError as e:
            res = ResetResult(key, name, "failed", f"Docker error: {explain(e)}")
        results.append(res)
    size_cache(client).forget(r.name for r in results if r.ok)
    return results
