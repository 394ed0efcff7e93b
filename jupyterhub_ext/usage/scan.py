"""What every running server uses, and who holds the disk: one periodic, bounded scan.

The servers page, its JSON API and the Prometheus metrics all read the last
result of this scan (:func:`snapshot`); no page view or scrape makes a Docker
call. The scan runs in the hub's event loop as a background task started by
``jupyterhub_ext.setup``. Its Docker calls never run on the event loop and
never hold threads of the shared pool (:mod:`jupyterhub_ext.engine.dockerpool`) that
spawns need: ``docker stats`` answers at the engine's next once-a-second
sample, so each call waits about a second. They run in the scan's own pool of
``max_concurrent_calls`` threads, with its own client (built by dockerpool,
negotiated in that pool), each call with a deadline:

- every ``scan_interval`` seconds: for each server the hub's database says is
  running, a one-shot ``docker stats`` (memory, CPU time) and, once per
  container, an inspect (start time, memory limit, GPU devices). On Docker
  Swarm, one call to the manager finds each server's task (node, container);
  the servers on other nodes are inspected and measured by one job per node
  per scan, all of that node's servers at once;
- every ``volume_scan_interval`` seconds: ``docker system df`` (it walks every
  volume, so it is rare), matched to hub users by the volume names their
  spawner renders AND the owner-id label (a volume of another hub on the same
  engine, or another user's, is never counted as theirs). On Docker Swarm the
  hub's engine is one node: the local volumes of users pinned to other nodes
  are measured there, one ``docker system df`` job per such node per scan
  (:class:`~jupyterhub_ext.engine.nodejob.NodeEngine`, about a second each).

Only servers and users of this hub appear: label values are bounded by the
hub's own user and server names and the volume set's keys.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from traitlets import Float, Int
from traitlets.config import Configurable

from jupyterhub_ext.audit import audit
from jupyterhub_ext.engine import dockerpool
from jupyterhub_ext.engine.labels import LABEL_KEY, LABEL_MANAGED, LABEL_OWNER_ID, LABEL_SCOPE
from jupyterhub_ext.notifications import quota_notify
from jupyterhub_ext.usage import quota

log = logging.getLogger("jupyterhub_ext.usage.scan")


class UsageConfig(Configurable):
    """Settings of the usage scan behind the servers page and the metrics (``c.UsageConfig``)."""

    scan_interval = Float(
        15.0,
        min=1.0,
        help="""
        Seconds between two scans of the running servers (one ``docker
        stats`` per server, in the shared Docker pool). The servers page,
        its API and the Prometheus metrics show the last scan's numbers.
        """,
    ).tag(config=True)

    volume_scan_interval = Float(
        300.0,
        min=10.0,
        help="""
        Seconds between two measurements of volume sizes (``docker system
        df``, which walks every volume on the engine: keep it rare on hosts
        with big volumes). On Docker Swarm each node that holds local volumes
        of users pinned to it is measured too, by one ``docker system df``
        job on that node per scan (about a second each, in this scan's own
        pool, within six times ``call_timeout``).
        """,
    ).tag(config=True)

    max_concurrent_calls = Int(
        8,
        min=1,
        help="""
        Threads of the scan's own pool (not the shared Docker pool, which
        spawns use): the most Docker calls it has in flight at once. The
        engine answers ``docker stats`` at its next once-a-second sample, so
        one scan of N servers takes about N / this many seconds.
        """,
    ).tag(config=True)

    call_timeout = Float(
        10.0,
        min=0.5,
        help="""
        Seconds one Docker call of the scan may take (``docker system df``:
        six times as long); a server whose stats did not come in time keeps
        its previous numbers and is marked stale.
        """,
    ).tag(config=True)

    large_volume_bytes = Int(
        1024**3,
        min=0,
        help="""
        Stopped users whose volumes hold at least this many bytes in total
        are listed in the servers page's second table ("who holds the disk").
        """,
    ).tag(config=True)


@dataclass
class ServerUsage:
    """One running server's row (JSON-ready with ``asdict``)."""

    user: str
    server: str
    image: str = ""
    profile: str = ""
    started: str | None = None
    last_activity: str | None = None
    container: str = ""
    cpu_seconds: float | None = None
    cpu_percent: float | None = None
    memory_bytes: int | None = None
    memory_limit_bytes: int | None = None
    gpu_devices: list[str] = field(default_factory=list)
    volumes: dict[str, int | None] = field(default_factory=dict)
    stale: bool = False


@dataclass
class Snapshot:
    servers: list[ServerUsage] = field(default_factory=list)
    # user -> volume key -> bytes (per-user volumes of this hub's users)
    user_volumes: dict[str, dict[str, int]] = field(default_factory=dict)
    # volume key -> bytes (shared volumes of the volume set)
    shared_volumes: dict[str, int] = field(default_factory=dict)
    running_users: set[str] = field(default_factory=set)
    host_memory_bytes: int | None = None
    scanned_at: float | None = None  # wall clock
    volumes_scanned_at: float | None = None
    scan_seconds: float | None = None
    version: int = 0  # bumped at every change; answers are cached per version
    _json_cache: tuple[tuple, bytes] | None = None

    def json_bytes(self, large_volume_bytes: int, extra: Mapping[str, Any]) -> bytes:
        """``as_json`` encoded, computed once per scan result (not once per request)."""
        key = (self.version, large_volume_bytes, tuple(sorted(extra.items())))
        if self._json_cache is None or self._json_cache[0] != key:
            body = {**self.as_json(large_volume_bytes), **extra}
            self._json_cache = (key, json.dumps(body).encode())
        return self._json_cache[1]

    def stopped_large(self, threshold: int) -> list[dict[str, Any]]:
        """Users with no running server whose volumes add up to ``threshold`` bytes or more."""
        rows = []
        for user, vols in self.user_volumes.items():
            total = sum(vols.values())
            if user not in self.running_users and total >= threshold:
                rows.append({"user": user, "total_bytes": total, "volumes": dict(vols)})
        return sorted(rows, key=lambda r: -r["total_bytes"])

    def as_json(self, large_volume_bytes: int) -> dict[str, Any]:
        servers = [asdict(s) for s in self.servers]
        mem = sum(s.memory_bytes or 0 for s in self.servers)
        committed = sum(s.memory_limit_bytes or 0 for s in self.servers)
        return {
            "servers": servers,
            "totals": {
                "servers": len(servers),
                "memory_bytes": mem,
                "memory_limit_bytes": committed,
                "host_memory_bytes": self.host_memory_bytes,
                "cpu_percent": round(sum(s.cpu_percent or 0 for s in self.servers), 1),
                "gpu_devices": sum(len(s.gpu_devices) for s in self.servers),
                # volumes of the users listed above (the stopped ones have their own table)
                "volume_bytes": sum(
                    sum(v.values())
                    for u, v in self.user_volumes.items()
                    if u in {s.user for s in self.servers}
                ),
            },
            "stopped_with_large_volumes": self.stopped_large(large_volume_bytes),
            "large_volume_bytes": large_volume_bytes,
            "shared_volumes": dict(self.shared_volumes),
            "scanned_at": self.scanned_at,
            "volumes_scanned_at": self.volumes_scanned_at,
            "scan_seconds": self.scan_seconds,
        }


# -- pure parsing of engine answers (unit-tested on plain dicts) ------------------


def memory_used(stats: Mapping[str, Any]) -> int | None:
    """Memory in use as ``docker stats`` shows it: usage minus reclaimable page cache."""
    mem = stats.get("memory_stats") or {}
    usage = mem.get("usage")
    if not isinstance(usage, int):
        return None
    detail = mem.get("stats") or {}
    # cgroup v2: inactive_file; v1: total_inactive_file (docker CLI's rule)
    cache = detail.get("inactive_file", detail.get("total_inactive_file", 0))
    return max(0, usage - cache) if isinstance(cache, int) and cache < usage else usage


def cpu_seconds(stats: Mapping[str, Any]) -> float | None:
    total = ((stats.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage")
    return total / 1e9 if isinstance(total, (int, float)) else None


def cpu_percent(prev: tuple[float, float] | None, now: tuple[float, float]) -> float | None:
    """CPU % (100 = one core) between two (monotonic time, cpu seconds) samples."""
    if prev is None:
        return None
    dt = now[0] - prev[0]
    dcpu = now[1] - prev[1]
    if dt <= 0 or dcpu < 0:
        return None
    return round(100.0 * dcpu / dt, 1)


def gpu_devices(inspect: Mapping[str, Any]) -> list[str]:
    """GPU device IDs a container holds (its device requests, or what the runtime was told)."""
    host = inspect.get("HostConfig") or {}
    ids: list[str] = []
    wants_gpu = False
    for req in host.get("DeviceRequests") or []:
        caps = [c for group in req.get("Capabilities") or [] for c in group]
        if "gpu" not in caps and req.get("Driver") != "nvidia":
            continue
        wants_gpu = True
        ids += [str(i) for i in req.get("DeviceIDs") or [] if str(i) not in ids]
    if wants_gpu and not ids:
        for item in (inspect.get("Config") or {}).get("Env") or []:
            if item.startswith("NVIDIA_VISIBLE_DEVICES="):
                value = item.split("=", 1)[1]
                if value not in ("", "void", "none"):
                    ids = [v for v in value.split(",") if v]
    return ids


def memory_limit(inspect: Mapping[str, Any]) -> int | None:
    limit = (inspect.get("HostConfig") or {}).get("Memory")
    return limit if isinstance(limit, int) and limit > 0 else None


def volume_sizes(df: Mapping[str, Any]) -> dict[str, tuple[int, Mapping[str, str]]]:
    """Volume name -> (bytes, labels) from ``docker system df`` (unknown sizes left out)."""
    out = {}
    for v in df.get("Volumes") or []:
        size = (v.get("UsageData") or {}).get("Size", -1)
        if isinstance(size, int) and size >= 0:
            out[v["Name"]] = (size, v.get("Labels") or {})
    return out


def user_volume_bytes(
    sizes: Mapping[str, tuple[int, Mapping[str, str]]],
    expected: Iterable[tuple[str, int, str, str]],
) -> dict[str, dict[str, int]]:
    """Sizes by user and key, for (user name, user id, key, volume name) the hub expects.

    A volume counts only when its owner-id label is that user's: the name
    alone does not prove whose it is (another hub, a deleted namesake).
    """
    out: dict[str, dict[str, int]] = {}
    for user, uid, key, name in dict.fromkeys(expected):  # each volume once
        found = sizes.get(name)
        if found is None:
            continue
        size, labels = found
        if labels.get(LABEL_MANAGED) == "true" and labels.get(LABEL_OWNER_ID) == str(uid):
            # named servers' own copies of a key add up
            by_key = out.setdefault(user, {})
            by_key[key] = by_key.get(key, 0) + size
    return out


def merge_node_sizes(
    sizes: Mapping[str, tuple[int, Mapping[str, str]]],
    where: Mapping[str, str],
    by_node: Mapping[str, Mapping[str, tuple[int, Mapping[str, str]]]],
) -> dict[str, tuple[int, Mapping[str, str]]]:
    """The hub engine's sizes, with each volume ``where`` places on another node
    (name -> node ID) taken from that node's measurement instead.

    A volume of that name on the hub's own engine is not the one the user's
    server mounts, so it never stands in; a volume on a node that could not be
    measured is left out (no size, as before the first scan).
    """
    out = {name: found for name, found in sizes.items() if name not in where}
    for name, node in where.items():
        found = (by_node.get(node) or {}).get(name)
        if found is not None:
            out[name] = found
    return out


# -- the scanner -------------------------------------------------------------------


def _iso(dt: Any) -> str | None:
    if dt is None:
        return None
    return dt.isoformat() + ("Z" if dt.tzinfo is None else "")


class Scanner:
    """The background scan of one hub; its result is read with ``snapshot``."""

    def __init__(self, app: Any, cfg: UsageConfig) -> None:
        self.app = app
        self.cfg = cfg
        self.snapshot = Snapshot()
        self._inspect_cache: dict[str, dict] = {}
        self._cpu_prev: dict[str, tuple[float, float]] = {}
        self._pool = ThreadPoolExecutor(cfg.max_concurrent_calls, thread_name_prefix="jhext-usage")
        self._own_client: Any = None
        self._sem = asyncio.Semaphore(cfg.max_concurrent_calls)
        self._volume_task: asyncio.Task | None = None
        self._last_volume_scan = float("-inf")
        self.scans = 0
        self.volume_scans = 0
        self.quota_specs: dict[str, dict[str, Any]] = {}
        self.quota_states: dict[tuple[str, str], str] = {}
        # Swarm: volume name -> the node that holds it; a spawner per node (for its
        # node engine); the last sizes measured on each node; the hub engine's node
        self._volume_nodes: dict[str, str] = {}
        self._node_spawners: dict[str, Any] = {}
        self._node_sizes: dict[str, dict[str, tuple[int, Mapping[str, str]]]] = {}
        self._own_node: str | None = None
        self.node_scans = 0

    # each Docker call: in the scan's own bounded pool, with a deadline
    async def _call(self, fn: Any, *args: Any, deadline: float | None = None, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        # the deadline counts from when a thread is free, not while queued
        async with self._sem:
            return await asyncio.wait_for(
                loop.run_in_executor(self._pool, lambda: fn(*args, **kwargs)),
                deadline or self.cfg.call_timeout,
            )

    def _running_spawners(self) -> list[Any]:
        """The hub's running servers (from its database), as Spawner objects."""
        from jupyterhub import orm

        found = []
        db = self.app.db
        for orm_spawner in db.query(orm.Spawner).filter(orm.Spawner.server_id.isnot(None)):
            user = self.app.users[orm_spawner.user]
            spawner = user.spawners.get(orm_spawner.name)
            if spawner is not None and getattr(spawner, "ready", True):
                found.append(spawner)
        return found

    async def _client(self, spawners: list[Any]) -> Any:
        """The scan's own client (its connection pool sized for the scan's threads)."""
        if self._own_client is not None:
            return self._own_client
        from jupyterhub_ext.configutil import spawner_setting

        c = self.app.config
        opts = dockerpool.client_options(
            spawner_setting(c, "tls_config", {}), **spawner_setting(c, "client_kwargs", {})
        )
        timeout = spawner_setting(c, "docker_connect_timeout", dockerpool.DEFAULT_CONNECT_TIMEOUT)

        def build() -> Any:
            client = dockerpool._build(self.cfg.max_concurrent_calls + 2, timeout, opts)
            client.negotiate()
            return client

        self._own_client = await self._call(build, deadline=timeout + 1)
        return self._own_client

    async def _server_row(
        self,
        client: Any,
        spawner: Any,
        old: Mapping[str, ServerUsage],
        placed: Mapping[str, tuple[str, str]],
        usage: Mapping[str, Mapping[str, Any]],
    ) -> Any:
        cid = getattr(spawner, "object_id", None) or getattr(spawner, "container_id", None)
        if cid in placed:  # a Swarm service: its task's container
            cid = placed[cid][1]
        user, name = spawner.user.name, spawner.name
        options = spawner.user_options or {}
        row = ServerUsage(
            user=user,
            server=name,
            image=str(getattr(spawner, "image", "") or ""),
            profile=str(options.get("profile", "") or ""),
            started=_iso(spawner.orm_spawner.started),
            last_activity=_iso(spawner.orm_spawner.last_activity),
            container=(cid or "")[:12],
        )
        if not cid:
            return row
        try:
            if cid in usage:  # measured on its Swarm node (_node_usage)
                info, stats = usage[cid]["inspect"], usage[cid]["stats"]
            else:
                info = self._inspect_cache.get(cid)
                if info is None:
                    info = await self._call(client.inspect_container, cid)
                    self._inspect_cache[cid] = info
                stats = await self._call(client.stats, cid, stream=False, one_shot=True)
        except Exception as e:  # keep the last numbers; the row says they are stale
            log.debug("stats of %s/%s failed: %s", user, name, e)
            prev = old.get(f"{user}/{name}")
            if prev is not None:
                prev.stale = True
                prev.last_activity = row.last_activity
                return prev
            row.stale = True
            return row
        row.image = (info.get("Config") or {}).get("Image") or row.image
        row.memory_bytes = memory_used(stats)
        row.memory_limit_bytes = memory_limit(info)
        row.gpu_devices = gpu_devices(info)
        row.cpu_seconds = cpu_seconds(stats)
        if row.cpu_seconds is not None:
            now = (time.monotonic(), row.cpu_seconds)
            row.cpu_percent = cpu_percent(self._cpu_prev.get(cid), now)
            self._cpu_prev[cid] = now
        return row

    async def scan_servers(self) -> None:
        t0 = time.perf_counter()
        spawners = self._running_spawners()
        client = await self._client(spawners)
        snap = self.snapshot
        if snap.host_memory_bytes is None:
            try:
                snap.host_memory_bytes = (await self._call(client.info)).get("MemTotal")
            except Exception as e:
                log.debug("docker info failed: %s", e)
        old = {f"{s.user}/{s.server}": s for s in snap.servers}
        placed = await self._swarm_placement(client, spawners)
        usage = await self._node_usage(client, placed, spawners)
        rows = await asyncio.gather(
            *(self._server_row(client, sp, old, placed, usage) for sp in spawners)
        )
        live = {getattr(sp, "object_id", None) for sp in spawners}
        live |= {cid for _node, cid in placed.values()}
        for cid in list(self._inspect_cache):
            if cid not in live:
                self._inspect_cache.pop(cid, None)
                self._cpu_prev.pop(cid, None)
        for row in rows:
            row.volumes = dict(snap.user_volumes.get(row.user, {}))
        snap.servers = sorted(rows, key=lambda r: (r.user, r.server))
        snap.running_users = {r.user for r in rows}
        snap.scanned_at = time.time()
        snap.version += 1
        snap.scan_seconds = round(time.perf_counter() - t0, 3)
        self.scans += 1

    async def _swarm_placement(
        self, client: Any, spawners: list[Any]
    ) -> dict[str, tuple[str, str]]:
        """Service ID -> (node ID, container ID) of each running Swarm server's task
        (one call to the manager per scan; none without Swarm servers)."""
        services = {
            sp.object_id
            for sp in spawners
            if getattr(sp, "object_type", "") == "service" and getattr(sp, "object_id", "")
        }
        if not services:
            return {}
        try:
            tasks = await self._call(client.tasks, filters={"desired-state": "running"})
        except Exception as e:  # the rows say their numbers are stale
            log.debug("tasks of the Swarm servers: %s", e)
            return {}
        out = {}
        for t in tasks or []:
            status = t.get("Status") or {}
            cid = (status.get("ContainerStatus") or {}).get("ContainerID")
            if t.get("ServiceID") in services and cid and status.get("State") == "running":
                out[t["ServiceID"]] = (t.get("NodeID") or "", cid)
        return out

    async def _node_usage(
        self, client: Any, placed: Mapping[str, tuple[str, str]], spawners: list[Any]
    ) -> dict[str, Mapping[str, Any]]:
        """Container ID -> inspect and one-shot stats of the Swarm servers on nodes
        other than the hub engine's: one job per such node per scan (all its
        servers at once, :meth:`NodeEngine.container_usage`), in the scan's own
        bounded pool. A node that does not answer leaves its rows stale."""
        if not placed:
            return {}
        own = await self._own_node_id(client)
        by_node: dict[str, list[str]] = {}
        for node, cid in placed.values():
            if node and node != own:
                by_node.setdefault(node, []).append(cid)
        if not by_node:
            return {}
        swarm = next(sp for sp in spawners if getattr(sp, "object_type", "") == "service")
        budget = 6 * self.cfg.call_timeout

        async def measure(node: str, ids: list[str]) -> dict[str, Any]:
            engine = swarm.node_engine(node, client)
            try:
                return await self._call(
                    engine.container_usage, ids, timeout=budget, deadline=budget + 5
                )
            except Exception as e:
                log.warning("server usage on node %s: %s (rows stale)", node[:12], e)
                return {}

        found = await asyncio.gather(*(measure(n, ids) for n, ids in sorted(by_node.items())))
        self.node_usage_scans += len(by_node)
        return {cid: u for part in found for cid, u in part.items()}

    node_usage_scans = 0

    async def _own_node_id(self, client: Any) -> str:
        """The Swarm node ID of the hub's engine ("" when it is not in a swarm)."""
        if self._own_node is None:
            info = await self._call(client.info)
            self._own_node = ((info or {}).get("Swarm") or {}).get("NodeID") or ""
        return self._own_node

    async def _expected_volumes(self) -> tuple[list[tuple[str, int, str, str]], dict[str, str]]:
        """(user, id, key, name) for every hub user's per-user volumes; shared key -> name.

        Also keeps each user's specs with quotas (``self.quota_specs``).
        """
        from jupyterhub import orm

        expected: list[tuple[str, int, str, str]] = []
        shared: dict[str, str] = {}
        quota_specs: dict[str, dict[str, Any]] = {}
        self._volume_nodes, self._node_spawners = {}, {}
        for i, orm_user in enumerate(self.app.db.query(orm.User).all()):
            if i % 20 == 19:
                await asyncio.sleep(0)  # many users: let requests in between
            user = self.app.users[orm_user]
            names = list(orm_user.orm_spawners) if orm_user.orm_spawners else [""]
            for server_name in names:
                sp = user.spawners[server_name]
                if not hasattr(sp, "volume_specs"):
                    continue
                rendered = sp.volume_names()
                self._locate(sp, rendered)
                for spec in sp.volume_specs:
                    if spec.per_user:
                        expected.append((user.name, user.id, spec.key, rendered[spec.key]))
                        if spec.soft_limit is not None or spec.hard_limit is not None:
                            quota_specs.setdefault(user.name, {})[spec.key] = spec
                    elif spec.scope == "shared":
                        shared[spec.key] = rendered[spec.key]
        self.quota_specs = quota_specs
        return expected, shared

    def _locate(self, spawner: Any, rendered: Mapping[str, str]) -> None:
        """Note the node of a Swarm server's local volumes (ExtSwarmSpawner.volume_node)."""
        node = spawner.volume_node() if hasattr(spawner, "volume_node") else ""
        if not node:
            return
        self._node_spawners.setdefault(node, spawner)
        for spec in spawner.volume_specs:
            if spec.plain_local:
                self._volume_nodes[rendered[spec.key]] = node

    async def _node_volume_sizes(self, client: Any) -> dict[str, str]:
        """Measure the volumes on the Swarm nodes other than the hub engine's own.

        One ``docker system df`` job per node that holds volumes of this hub
        (:class:`~jupyterhub_ext.engine.nodejob.NodeEngine`), in the scan's own
        bounded pool, each with a deadline; a node that does not answer keeps
        the sizes it had at the last scan. Returns volume name -> node for the
        volumes measured elsewhere.
        """
        if not self._volume_nodes:
            return {}
        own = await self._own_node_id(client)
        where = {n: node for n, node in self._volume_nodes.items() if node != own}
        budget = 6 * self.cfg.call_timeout

        async def measure(node: str) -> dict[str, tuple[int, Mapping[str, str]]]:
            engine = self._node_spawners[node].node_engine(node, client)
            try:
                df = await self._call(engine.df, timeout=budget, deadline=budget + 5)
            except Exception as e:
                log.warning("volume sizes on node %s: %s (last sizes kept)", node[:12], e)
                return self._node_sizes.get(node, {})
            self.node_scans += 1
            return volume_sizes(df)

        nodes = sorted(set(where.values()))
        found = await asyncio.gather(*(measure(n) for n in nodes))
        self._node_sizes = dict(zip(nodes, found, strict=True))
        return where

    async def scan_volumes(self) -> None:
        spawners = self._running_spawners()
        client = await self._client(spawners)
        expected, shared = await self._expected_volumes()
        df = await self._call(client.df, deadline=6 * self.cfg.call_timeout)
        where = await self._node_volume_sizes(client)
        sizes = merge_node_sizes(volume_sizes(df), where, self._node_sizes)
        snap = self.snapshot
        snap.user_volumes = user_volume_bytes(sizes, expected)
        snap.shared_volumes = {
            key: sizes[name][0]
            for key, name in shared.items()
            if name in sizes
            and sizes[name][1].get(LABEL_SCOPE) == "shared"
            and LABEL_KEY in sizes[name][1]
        }
        for row in snap.servers:
            row.volumes = dict(snap.user_volumes.get(row.user, {}))
        snap.volumes_scanned_at = time.time()
        snap.version += 1
        self.volume_scans += 1
        await self._quota_notifications()

    async def _quota_notifications(self) -> None:
        """Tell users in JupyterLab, once, when a volume crosses its soft or hard limit."""
        states = {}
        for user, specs in self.quota_specs.items():
            sizes = self.snapshot.user_volumes.get(user, {})
            for key, spec in specs.items():
                states[(user, key)] = quota.state(spec, sizes.get(key))
        crossed = quota.crossings(self.quota_states, states)
        self.quota_states = states
        for user, key, _state in crossed:
            spec = self.quota_specs[user][key]
            size = self.snapshot.user_volumes[user][key]
            text = quota.message(spec, size, quota.cleanup_hint(spec))
            audit("jupyterhub", "volume-quota", user, _state, volume=key, size=size)
            try:
                await quota_notify.to_user(self.app, user, text)
            except Exception as e:  # the home page still shows it
                log.warning("quota notification to %s failed: %s", user, e)

    def forget(self, user: str, keys: Iterable[str]) -> None:
        """Sizes of volumes that were just reset (removed): unknown until the next scan."""
        by_key = self.snapshot.user_volumes.get(user, {})
        for key in keys:
            by_key.pop(key, None)
            self.quota_states.pop((user, key), None)
        self.snapshot.version += 1

    async def _volumes_in_background(self) -> None:
        try:
            await self.scan_volumes()
        except Exception as e:
            log.warning("volume size scan failed: %s", e)

    async def run_forever(self) -> None:
        while True:
            try:
                if time.monotonic() - self._last_volume_scan >= self.cfg.volume_scan_interval:
                    # df may take long: it runs beside the server scans, never blocks them
                    if self._volume_task is None or self._volume_task.done():
                        self._last_volume_scan = time.monotonic()
                        self._volume_task = asyncio.ensure_future(self._volumes_in_background())
                await self.scan_servers()
            except Exception:
                log.exception("usage scan failed")
            await asyncio.sleep(self.cfg.scan_interval)


_scanner: Scanner | None = None
_task: asyncio.Task | None = None


def scanner() -> Scanner | None:
    return _scanner


def forget(user: str, keys: Iterable[str]) -> None:
    """Drop the sizes of ``user``'s volumes ``keys`` (after a reset)."""
    if _scanner is not None:
        _scanner.forget(user, keys)


def volume_size(user: str, key: str) -> int | None:
    """The last measured size of a user's volume (None: not measured)."""
    return snapshot().user_volumes.get(user, {}).get(key)


def snapshot() -> Snapshot:
    """The last scan's result (empty before the first scan)."""
    return _scanner.snapshot if _scanner is not None else Snapshot()


async def start_when_hub_is_up(give_up_after: float = 600) -> None:
    from jupyterhub.app import JupyterHub

    global _scanner
    deadline = time.monotonic() + give_up_after
    while time.monotonic() < deadline:
        if JupyterHub.initialized():
            app = JupyterHub.instance()
            if getattr(app, "http_server", None) is not None and getattr(app, "db", None):
                _scanner = Scanner(app, UsageConfig(config=app.config))
                await _scanner.run_forever()
                return
        await asyncio.sleep(0.5)


def schedule() -> None:
    """Called from ``jupyterhub_ext.setup`` while JupyterHub loads its config."""
    global _task
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return  # config loaded outside a running hub (tests, --generate-config)
    _task = loop.create_task(start_when_hub_is_up())
