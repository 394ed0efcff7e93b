"""ExtDockerSpawner: DockerSpawner with per-user volume sets, host networking
and a bounded shared pool for Docker calls.

Engine objects are built in :mod:`jupyterhub_ext.objects`; this module keeps
the lifecycle (start, stop, state).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

import docker
from dockerspawner import DockerSpawner
from traitlets import Dict, Int, List, Unicode, Union, default, validate

from . import dockerpool, netutil, objects, rename, volcopy
from .locks import user_lock
from .volumes import (
    LABEL_OWNER_NAME,
    VolumeSetError,
    VolumeSpec,
    parse_volume_set,
    volume_labels,
)

DEFAULT_VOLUME_SET = {
    "home": {
        "name": "jupyterhub-user-{username}",
        "mount": "/home/jovyan",
        "description": "Your home directory: notebooks, settings and installed packages.",
        "resettable": True,
    }
}


class ExtDockerSpawner(DockerSpawner):
    """A DockerSpawner for lab and department hubs.

    Adds declared per-user volume sets (created with owner labels), working
    host networking, and Docker calls in a bounded pool shared by all users.
    """

    volume_set = Union(
        [Dict(), List()],
        default_value=DEFAULT_VOLUME_SET,
        help="""
        The volumes every server gets, declared as a set.

        A dict keyed by volume key (``home``, ``workspace``, ``cache`` ...), or a
        list of dicts that each carry a ``key``. Each entry has:

        - ``name``: Docker volume name template. Per-user volumes must contain
          ``{username}`` (escaped as DockerSpawner escapes it); add
          ``{servername}`` to give each named server its own volume.
        - ``mount``: absolute path inside the container.
        - ``description``: shown to users in the Manage volumes dialog.
        - ``resettable``: whether the owner may reset (wipe) it.
          Default true for per-user volumes; never for shared ones.
        - ``scope``: ``user`` (default, one volume per user) or ``shared``
          (one volume for everyone).
        - ``read_only``: mount read-only (default false).
        - ``driver`` / ``driver_opts``: Docker volume driver and options used
          when the volume is created (default driver ``local``).

        Volumes are created when missing, labelled with the owner's hub user
        id and name, the key and the description. An invalid set (two volumes
        on one mount path, a per-user name without ``{username}``, a key used
        twice, an unknown field) is refused with a message naming the entry.
        """,
    ).tag(config=True)

    docker_pool_size = Int(
        dockerpool.DEFAULT_POOL_SIZE,
        min=1,
        help="""
        Threads for Docker calls, shared by every server and every
        jupyterhub_ext handler in this hub. Plain DockerSpawner uses one
        thread for the whole class, so one slow call stalls every spawn.
        """,
    ).tag(config=True)

    host_network_ip = Unicode(
        "127.0.0.1",
        help="""
        With ``network_name = "host"``: the address single-user servers bind
        to and the hub connects to. Each server gets a free port on it.
        Keep the loopback default unless the proxy runs on another host.
        """,
    ).tag(config=True)

    helper_image = Unicode(
        "",
        help="""
        Image for short-lived helper containers that copy and check volume
        data (user rename). Runs as root with no network; needs ``sh``,
        GNU ``cp``/``du``/``sync`` and ``python3``. Empty: the spawner's
        ``image``, which is already on this host.
        """,
    ).tag(config=True)

    @default("remove")
    def _default_remove(self) -> bool:
        # Data lives in volumes; a fresh container per start applies the
        # current image, environment, groups and mounts.
        return True

    @validate("volume_set")
    def _validate_volume_set(self, proposal: Any) -> Any:
        parse_volume_set(proposal.value)
        return proposal.value

    @property
    def volume_specs(self) -> list[VolumeSpec]:
        return parse_volume_set(self.volume_set)

    # -- Docker access ------------------------------------------------------

    @property
    def executor(self):  # type: ignore[override]
        return dockerpool.executor(self.docker_pool_size)

    @property
    def client(self) -> docker.APIClient:  # type: ignore[override]
        kwargs = dict(self.client_kwargs)
        if self.tls_config:
            kwargs["tls"] = docker.tls.TLSConfig(**self.tls_config)
        return dockerpool.client(self.docker_pool_size, **kwargs)

    # -- networking ---------------------------------------------------------

    @property
    def host_network(self) -> bool:
        return self.network_name == "host"

    async def get_ip_and_port(self) -> tuple[str, int]:
        if not self.host_network:
            return await super().get_ip_and_port()
        # A reused container (remove=False) keeps the port it was created with.
        info = await self.docker("inspect_container", self.container_id)
        for line in info["Config"]["Env"] or []:
            if line.startswith("JUPYTERHUB_SERVICE_URL="):
                url = urlparse(line.split("=", 1)[1])
                if url.port:
                    self.port = url.port
        return self.host_network_ip, self.port

    # -- volumes ------------------------------------------------------------

    def volume_names(self) -> dict[str, str]:
        """Volume key -> Docker volume name for this server."""
        ns = self.template_namespace()
        return {s.key: s.render_name(ns) for s in self.volume_specs}

    async def ensure_volumes(self) -> None:
        """Create missing volumes of the set, with their labels."""
        names = self.volume_names()

        async def ensure(spec: VolumeSpec) -> None:
            name = names[spec.key]
            try:
                await self.docker("inspect_volume", name)
                return
            except docker.errors.NotFound:
                pass
            labels = volume_labels(
                spec, owner_id=self.user.id, owner_name=self.user.name, server_name=self.name
            )
            await self.docker(
                "create_volume",
                name=name,
                driver=spec.driver,
                driver_opts=dict(spec.driver_opts) or None,
                labels=labels,
            )
            self.log.info("Created volume %s (%s) for %s", name, spec.key, self._log_name)

        await asyncio.gather(*(ensure(s) for s in self.volume_specs))

    # -- engine objects -----------------------------------------------------

    async def _resolve(self, value: Any) -> Any:
        value = self._eval_if_callable(value)
        if inspect.isawaitable(value):
            value = await value
        return self._render_templates(value or {})

    async def host_config_fragments(self) -> list[Mapping[str, Any]]:
        """Host-config fragments of our features, merged before the admin's own.

        Subclasses and features extend this list; see objects.merge_fragments.
        """
        return [{"mounts": objects.volume_mounts(self.volume_specs, self.volume_names())}]

    async def extra_environment(self) -> dict[str, str]:
        """Environment our features add to the container."""
        return {}

    async def create_object(self) -> dict:
        extra_create = await self._resolve(self.extra_create_kwargs)
        extra_host = dict(await self._resolve(self.extra_host_config))
        if "binds" in extra_host:
            extra_host["binds"] = objects.normalize_binds(extra_host["binds"])

        base: dict[str, Any] = {
            "auto_remove": self.remove,
            "binds": objects.normalize_binds(self.volume_binds),
            "links": self.links,
            "mounts": list(self.mount_binds),
        }
        if getattr(self, "mem_limit", None) is not None:
            base["mem_limit"] = self.mem_limit
        if getattr(self, "cpu_limit", None) is not None:
            cpu_period = base["cpu_period"] = extra_host.get("cpu_period", 100_000)
            base["cpu_quota"] = int(self.cpu_limit * cpu_period)
        if not self.use_internal_ip and not self.host_network:
            base["port_bindings"] = {self.port: (self.host_ip,)}

        host_config = objects.merge_fragments(
            base, *(await self.host_config_fragments()), extra_host
        )
        host_config.setdefault("network_mode", self.network_name)

        env = self.get_env()
        env.update(await self.extra_environment())
        create_kwargs: dict[str, Any] = {
            "image": self.image,
            "environment": env,
            "volumes": self.volume_mount_points,
            "name": self.container_name,
            "command": await self.get_command(),
            "labels": objects.container_labels(self.user.id, self.user.name, self.name),
        }
        if not self.host_network:
            create_kwargs["ports"] = {f"{self.port}/tcp": None}
        create_kwargs = objects.merge_fragments(create_kwargs, extra_create)
        self.log.debug("Creating %s with host config %s", self.container_name, host_config)
        create_kwargs["host_config"] = self.client.create_host_config(**host_config)
        return await self.docker("create_container", **create_kwargs)

    # -- lifecycle ----------------------------------------------------------

    async def _follow_rename(self) -> None:
        """Move data of a finished or interrupted rename, and drop names cached for the old name.

        Called with the user's lock held, before the volumes are ensured: a
        user renamed through JupyterHub's own API gets their volumes moved here
        at the latest, and a spawner object made before the rename must not
        create or mount anything under the old name.
        """
        await rename.settle_locked(self.user.db, self.user, except_spawner=self)
        if self._escaped_name is not None and self._escaped_name != self.escape(self.user.name):
            self._escaped_name = None
        expected = self._object_name_default()
        if self.object_name != expected:
            info = await volcopy.container_or_none(self.client, self.object_name)
            labels = (info or {}).get("Config", {}).get("Labels") or {}
            if info is None or labels.get(LABEL_OWNER_NAME, self.user.name) != self.user.name:
                self.log.info(
                    "Not reusing %s (made for another user name); next: %s",
                    self.object_name,
                    expected,
                )
                self.object_name = expected
                self.object_id = ""

    async def start(self) -> tuple[str, int]:
        running = rename.api_job_running(self.user.db, self.user.id)
        if running is not None:
            raise RuntimeError(
                f"{self.user.name} is being renamed to {running.new_name}; "
                "start the server when the rename has finished."
            )
        self._started_as = self.user.name
        if self.host_network:
            self.ip = self.host_network_ip
            self.port = netutil.reserve_port(self.host_network_ip)
        try:
            # Wait for any volume reset or rename of this user to finish first.
            async with user_lock(self.user.id):
                await self._follow_rename()
                await self.ensure_volumes()
                return await super().start()
        except Exception:
            if self.host_network:
                netutil.release_port(self.port)
            raise

    _started_as: str | None = None

    def load_state(self, state: dict) -> None:
        super().load_state(state)
        if self.object_id:  # a server that may still run, from before a hub restart
            self._started_as = self.user.name

    async def stop(self, now: bool = False) -> None:
        await super().stop(now=now)
        if self.host_network:
            netutil.release_port(self.port)
        if self._started_as is not None and self._started_as != self.user.name:
            # renamed (JupyterHub's own API) while it ran
            rename.forget_spawner(self)


def validate_volume_set(raw: Any) -> list[VolumeSpec]:
    """Check a volume set from config; raise VolumeSetError naming the bad entry."""
    return parse_volume_set(raw)


__all__ = ["ExtDockerSpawner", "VolumeSetError", "validate_volume_set"]
