"""ExtDockerSpawner: DockerSpawner with per-user volume sets, host networking,
a bounded shared pool for Docker calls, GPUs and Docker access by group.

Engine objects are built in :mod:`jupyterhub_ext.spawner.hostconfig`; GPU and group-grant
decisions in :mod:`jupyterhub_ext.gpu` and :mod:`jupyterhub_ext.spawner.grants`; this
module keeps the lifecycle (start, stop, state) and the traits.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import inspect
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from dockerspawner import DockerSpawner
from traitlets import (
    CaselessStrEnum,
    Dict,
    Float,
    Int,
    List,
    TraitError,
    Unicode,
    Union,
    default,
    observe,
    validate,
)

from jupyterhub_ext import gpu, hubcompat
from jupyterhub_ext.accounts import usernames
from jupyterhub_ext.audit import audit
from jupyterhub_ext.engine import APIClient, calls, dockerpool, ownership
from jupyterhub_ext.engine.errors import APIError, NotFound, explain
from jupyterhub_ext.engine.labels import (
    LABEL_GPU_DEVICES,
    LABEL_GRANTS,
    LABEL_OWNER_NAME,
    LABEL_PROFILE,
)
from jupyterhub_ext.locks import user_lock
from jupyterhub_ext.profiles.mixin import ProfilesMixin
from jupyterhub_ext.profiles.rules import ProfileChoiceError
from jupyterhub_ext.spawner import compat, grants, hooks, hostconfig, hostnet, readiness
from jupyterhub_ext.spawner.refused import SpawnRefused
from jupyterhub_ext.storage.mixin import NotOwnedError, StorageMixin
from jupyterhub_ext.storage.volumes import VolumeSetError, VolumeSpec, parse_volume_set

DEFAULT_VOLUME_SET = {
    "home": {
        "name": "jupyterhub-user-{username}",
        "mount": "/home/jovyan",
        "description": "Your home directory: notebooks, settings and installed packages.",
        "resettable": True,
    }
}


# Traits that decide grants: only the admin's config and hub groups set them,
# never user_options, even when listed in user_options_traits.
PROTECTED_TRAITS = (
    "gpu_mode",
    "gpu_groups",
    "gpu_probe_image",
    "gpu_probe_command",
    "docker_sock_group",
    "docker_privileged_group",
    "docker_sock_host_path",
    "docker_sock_container_path",
    "docker_sock_gid",
)


@dataclass(frozen=True)
class SpawnGrants:
    """Everything decided from group membership for one spawn."""

    user_groups: frozenset[str]
    access: grants.AccessDecision
    gpu: gpu.GpuDecision
    sock_gid: int | None

    def label(self) -> str:
        """What the container gets, for its ``jupyterhub-ext.grants`` label."""
        granted = [
            name
            for name, on in (
                ("docker-sock", self.access.docker_sock),
                ("gpu", self.gpu.enabled),
                ("privileged", self.access.privileged),
            )
            if on
        ]
        return ",".join(granted) or "none"


class ExtDockerSpawner(ProfilesMixin, StorageMixin, DockerSpawner):
    """A DockerSpawner for lab and department hubs.

    Adds declared per-user volume sets (created with owner labels), working
    host networking, Docker calls in a bounded pool shared by all users, GPUs
    (off / on / auto-detected from the engine's report) and Docker access
    (the host's socket, privileged containers) granted by hub group.
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
        - ``scope``: ``user`` (default, one volume per user), ``shared``
          (one volume for everyone) or ``archive`` (implied by ``union``).
        - ``read_only``: mount read-only (default false).
        - ``driver`` / ``driver_opts``: Docker volume driver and options used
          when the volume is created (default driver ``local``), e.g. the
          local driver's ``type=nfs|cifs``, ``o``, ``device``. Put secrets in
          as ``${env:NAME}`` or ``${file:/path}``: resolved only when the
          volume is created, never logged or shown.
        - ``union``: host directories, highest priority first, shown as one
          read-only tree (an overlay volume; the first directory's copy of a
          path wins). Makes an ``archive``: read-only, never resettable;
          ``name`` defaults to ``jupyterhub-archive-<key>`` (a digest of the
          list is appended). Missing directories stop the hub at start.
        - ``owner`` / ``group`` / ``mode``: set on the volume's root by a short
          helper container right after the volume is created (plain local
          volumes only; a network share's ownership is the file server's).
          Owner and group are numeric ids or names known in the image; mode
          an octal string (``"2775"``) or number (``0o2775``). A ``shared``
          local volume defaults to ``1000``, ``100``, ``2775`` (the image's
          user and group, group-writable with setgid) so every user can write
          to it; Docker alone would make it ``root:root 755``.
        - ``soft_limit`` / ``hard_limit``: per-user quota in bytes or a size
          like ``"10G"`` / ``"500MiB"``, measured by the periodic usage scan
          (``c.UsageConfig.volume_scan_interval``). Over a limit the user is
          warned on the home page and once in JupyterLab; ``on_hard_limit``
          ``"refuse"`` (default ``"warn"``) also refuses the next start over
          the hard limit, with a message saying what to delete or reset.

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

    # -- GPUs -----------------------------------------------------------------

    gpu_mode = CaselessStrEnum(
        list(gpu.MODES),
        default_value="auto",
        help="""
        GPUs for single-user containers: ``off``, ``on`` or ``auto``.

        - ``auto`` (default): GPUs when the Docker engine reports it can
          provide them (an ``nvidia`` runtime, or CDI GPU devices, in
          ``docker info``). No container is run and nothing is pulled; the
          answer is cached for ``gpu_detect_interval`` seconds. Set
          ``gpu_probe_image`` to check with a real container instead.
        - ``on``: always ask for GPUs. If the engine cannot provide them the
          spawn fails with a message saying so and what to change.
        - ``off``: never; containers get ``NVIDIA_VISIBLE_DEVICES=void``.

        With ``gpu_groups`` set, only members of those groups get GPUs.
        """,
    ).tag(config=True)

    gpu_count = Union(
        [Int(), Unicode()],
        default_value="all",
        help="""
        How many GPUs a GPU server gets: ``"all"`` (default) or a positive
        number. Ignored when ``gpu_device_ids`` is set.
        """,
    ).tag(config=True)

    gpu_device_ids = List(
        Unicode(),
        help="""
        Give GPU servers these devices (indexes like ``"0"`` or UUIDs like
        ``"GPU-3a23c669-..."``) instead of a count. Per group, set it with
        ``c.Spawner.group_overrides``.
        """,
    ).tag(config=True)

    gpu_capabilities = List(
        Unicode(),
        default_value=list(gpu.DEFAULT_CAPABILITIES),
        help="""
        NVIDIA driver capabilities for GPU servers (``compute``, ``utility``,
        ``graphics``, ``video``, ``display``, ``compat32`` or ``all``). They go
        into the device request and ``NVIDIA_DRIVER_CAPABILITIES``.
        """,
    ).tag(config=True)

    gpu_groups = List(
        Unicode(),
        help="""
        If set, only members of these hub groups get GPUs (in ``on`` and
        ``auto`` mode); everyone else's container gets
        ``NVIDIA_VISIBLE_DEVICES=void``. Empty (default): everyone.
        The groups are created at hub start and at spawn when missing.
        """,
    ).tag(config=True)

    gpu_detect_interval = Float(
        300.0,
        min=0,
        help="""
        Seconds an engine's GPU answer is reused before ``auto`` asks again
        (0: at every spawn). Engines change GPU support only when Docker is
        reconfigured and restarted.
        """,
    ).tag(config=True)

    gpu_probe_image = Unicode(
        "",
        help="""
        Optional: an image with ``nvidia-smi`` (e.g. ``nvidia/cuda:12.4.1-base-ubuntu22.04``)
        for a probe container that checks GPUs really work, for hosts where
        the engine's report is not enough (the NVIDIA hook installed without
        a registered ``nvidia`` runtime does not show in ``docker info``).
        The image must already be on the engine: it is never pulled. Costs a
        container run (seconds) per ``gpu_detect_interval``. Empty (default):
        the engine's report decides.
        """,
    ).tag(config=True)

    gpu_probe_command = List(
        Unicode(),
        default_value=["nvidia-smi", "-L"],
        help="Command the GPU probe container runs; exit status 0 means GPUs work.",
    ).tag(config=True)

    gpu_probe_timeout = Float(60.0, min=1, help="Seconds the GPU probe container may run.").tag(
        config=True
    )

    # -- Docker access by group ---------------------------------------------------

    docker_sock_group = Unicode(
        grants.DEFAULT_SOCK_GROUP,
        help="""
        Hub group whose members' containers get the host's Docker socket
        (``docker_sock_host_path`` mounted at ``docker_sock_container_path``,
        ``DOCKER_HOST`` set, the socket's group added). Anyone with the
        socket controls the engine: that is root on the Docker host.
        Created at hub start and at spawn when missing. Empty: nobody.
        """,
    ).tag(config=True)

    docker_privileged_group = Unicode(
        grants.DEFAULT_PRIVILEGED_GROUP,
        help="""
        Hub group whose members' containers run privileged (every
        capability, every host device). Created at hub start and at spawn
        when missing. Empty: nobody.
        """,
    ).tag(config=True)

    docker_sock_host_path = Unicode(
        grants.DEFAULT_SOCK_PATH,
        help="The Docker socket on the Docker host, mounted for docker_sock_group members.",
    ).tag(config=True)

    docker_sock_container_path = Unicode(
        grants.DEFAULT_SOCK_PATH,
        help="Where the Docker socket appears inside members' containers.",
    ).tag(config=True)

    docker_sock_gid = Union(
        [Int(), Unicode()],
        default_value="auto",
        allow_none=True,
        help="""
        Group id added to docker_sock_group members' containers so their
        (non-root) user can use the socket. ``"auto"``: the group owning
        ``docker_sock_host_path`` as the hub sees it (nothing if the hub
        cannot see it); a number: that gid; ``None``: add nothing.
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

    user_options_traits = List(
        Unicode(),
        help="""
        The traits that ``user_options`` may change, through JupyterHub's
        ``apply_user_options`` (a callable, or a dict mapping option to trait:
        the dict's traits are declared by being named there).

        Everything else is the admin's: a spawn whose options changed any
        other configurable trait (``extra_host_config``, ``volumes``,
        ``volume_set``, ``mounts``, ``cap_add``-style create arguments ...)
        is refused with a 403 and the option is forgotten, so a careless
        ``apply_user_options`` callable cannot hand users the host. The
        image choice of ``allowed_images`` needs no entry. Traits that grant
        Docker access or GPUs (``gpu_mode``, ``docker_sock_group`` ...) can
        never be listed. Default: none.
        """,
    ).tag(config=True)

    docker_connect_timeout = Float(
        dockerpool.DEFAULT_CONNECT_TIMEOUT,
        min=0.1,
        help="""
        Seconds the Docker engine has to answer the first request of a client
        (its API version) before the spawn or action fails with a message
        saying the engine does not answer. The request runs in the Docker
        pool, never on the hub's event loop, so a hung engine cannot freeze the
        hub. Later calls use ``client_kwargs["timeout"]`` (docker-py's default: 60 s).
        """,
    ).tag(config=True)

    rename_timeout = Float(
        6 * 3600.0,
        min=1,
        help="""
        Seconds the copy phase of one user rename (copying and checking
        every volume) may take. Past it the rename is rolled back: the copies
        are removed, the old volumes and the old name stay as they were.
        """,
    ).tag(config=True)

    ready_poll_interval = Float(
        0.1,
        min=0,
        help="""
        Seconds between checks that a new server answers, before the spawn
        is handed to the hub. JupyterHub's own wait backs off up to 5 s
        between tries, so it notices a server seconds after it is up; this
        notices it within this interval, and fails a spawn whose container
        exited at once (with its exit code and last log lines). 0: leave the
        wait to JupyterHub alone.
        """,
    ).tag(config=True)

    @default("remove")
    def _default_remove(self) -> bool:
        # Data lives in volumes; a fresh container per start applies the
        # current image, environment, groups and mounts.
        return True

    @validate("user_options_traits")
    def _validate_user_options_traits(self, proposal: Any) -> Any:
        bad = sorted(set(proposal.value) & set(PROTECTED_TRAITS))
        if bad:
            raise TraitError(
                f"user_options_traits may not list {', '.join(bad)}: Docker access and "
                "GPUs are granted through hub groups"
            )
        return proposal.value

    @observe(*DockerSpawner._deprecated_aliases)
    def _deprecated_trait(self, change: Any) -> None:
        """DockerSpawner's alias handling, naming the section the admin really wrote.

        DockerSpawner names ``self.__class__`` (ExtDockerSpawner) even when the
        old option sits in ``c.DockerSpawner``, where the admin must change it.
        """
        old = change.name
        new, version = self._deprecated_aliases[old]
        if getattr(self, new) == change.new:
            return
        section = compat.section_of(self.config, old, self.__class__.__name__)
        self.log.warning(
            "c.%s.%s is deprecated since DockerSpawner %s: use c.%s.%s instead",
            section,
            old,
            version.rstrip("*").rstrip("."),
            section,
            new,
        )
        setattr(self, new, change.new)

    @validate("volume_set")
    def _validate_volume_set(self, proposal: Any) -> Any:
        parse_volume_set(proposal.value)
        return proposal.value

    @validate("gpu_count")
    def _validate_gpu_count(self, proposal: Any) -> Any:
        try:
            gpu.parse_gpu_count(proposal.value)
        except gpu.GpuConfigError as e:
            raise TraitError(str(e)) from None
        return proposal.value

    @validate("gpu_capabilities")
    def _validate_gpu_capabilities(self, proposal: Any) -> Any:
        try:
            return list(gpu.check_capabilities(proposal.value))
        except gpu.GpuConfigError as e:
            raise TraitError(str(e)) from None

    @validate("docker_sock_container_path", "docker_sock_host_path")
    def _validate_sock_path(self, proposal: Any) -> Any:
        if not str(proposal.value).startswith("/"):
            raise TraitError(f"{proposal.trait.name} must be an absolute path: {proposal.value!r}")
        return proposal.value

    @property
    def volume_specs(self) -> list[VolumeSpec]:
        """The volume set in effect for this server.

        The default set gives way where DockerSpawner's own ``volumes`` /
        ``read_only_volumes`` / ``mounts`` already mount its volume or its
        path (a config switched over from DockerSpawner keeps working as it
        did); an explicit set that collides is refused (see start).
        """
        specs = parse_volume_set(self.volume_set)
        if self.volume_set != DEFAULT_VOLUME_SET:
            return specs
        aside = compat.stepping_aside(self.volume_conflicts(specs))
        return [s for s in specs if s.key not in aside]

    def volume_conflicts(self, specs: list[VolumeSpec]) -> list[compat.Conflict]:
        """Entries of ``specs`` that collide with DockerSpawner's own mount options."""
        if not (self.volumes or self.read_only_volumes or self.mounts):
            return []
        ns = self.template_namespace()
        names = {s.key: s.render_name(ns) for s in specs}
        theirs = compat.docker_spawner_mounts(
            self._volumes_to_binds(self.volumes, {}),
            self._volumes_to_binds(self.read_only_volumes, {}, mode="ro"),
            self.mount_binds,
        )
        return compat.conflicts(specs, names, theirs)

    def check_volume_conflicts(self) -> None:
        """Refuse an explicit volume set that DockerSpawner's mounts collide with."""
        specs = parse_volume_set(self.volume_set)
        found = self.volume_conflicts(specs)
        if self.volume_set == DEFAULT_VOLUME_SET:
            if found and not self._told_step_aside:
                self._told_step_aside = True
                self.log.warning(
                    "The default volume_set steps aside for %s (%s). To fix: %s",
                    self._log_name,
                    found[0].describe(),
                    compat.fix_hint(found[0]),
                )
            return
        blocking = compat.blocking(found)
        if blocking:
            raise SpawnRefused(
                str(compat.conflict_error(blocking)), reason="volume-conflict", status_code=409
            )

    _told_step_aside = False

    # -- Docker access ------------------------------------------------------

    @property
    def executor(self):  # type: ignore[override]
        return dockerpool.executor(self.docker_pool_size)

    def _client_settings(self) -> dict[str, Any]:
        return {
            "tls_config": self.tls_config,
            "connect_timeout": self.docker_connect_timeout,
            **self.client_kwargs,
        }

    @property
    def client(self) -> APIClient:  # type: ignore[override]
        """The shared client for this engine and TLS settings (one per settings, not per access).

        Building it makes no network call; its API version is asked on first
        use. Coroutines use ``await self.docker_client()``, which does both in
        the Docker pool.
        """
        return dockerpool.client(self.docker_pool_size, **self._client_settings())

    async def docker_client(self) -> APIClient:
        """The client, built and its API version negotiated in the pool, with a deadline."""
        return await dockerpool.get_client(self.docker_pool_size, **self._client_settings())

    async def docker(self, method: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """Call a Docker API method in the shared pool (the client is never made on the loop)."""
        client = await self.docker_client()
        fn = getattr(client, method)
        return await dockerpool.run(lambda: fn(*args, **kwargs), pool_size=self.docker_pool_size)

    async def move_certs(self, paths: dict) -> dict:
        # DockerSpawner's move_certs reads the client's API version on the loop
        await self.docker_client()
        return await super().move_certs(paths)

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
                if url.port and url.port != self.port:
                    # give back the port reserved for this start, hold the one in use
                    hostnet.release_port(self.port)
                    hostnet.claim_port(url.port)
                    self.port = url.port
        return self.host_network_ip, self.port

    # -- volumes ------------------------------------------------------------

    def volume_names(self) -> dict[str, str]:
        """Volume key -> Docker volume name for this server."""
        ns = self.template_namespace()
        return {s.key: s.render_name(ns) for s in self.volume_specs}

    async def ensure_volumes(self) -> None:
        """Create missing volumes of the set, with their labels.

        Each one through StorageMixin.ensure_volume (storage.py), which
        resolves secret driver options only at creation.
        """
        names = self.volume_names()
        await asyncio.gather(*(self.ensure_volume(s, names[s.key]) for s in self.volume_specs))

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
        plan = await self.spawn_grants()
        return [
            {"mounts": hostconfig.volume_mounts(self.volume_specs, self.volume_names())},
            plan.gpu.host_config(),
            self.profile_host_config(),
            grants.access_host_config(
                plan.access,
                sock_host_path=self.docker_sock_host_path,
                sock_container_path=self.docker_sock_container_path,
                sock_gid=plan.sock_gid,
            ),
        ]

    async def extra_environment(self) -> dict[str, str]:
        """Environment our features add to the container (the admin's ``environment`` wins)."""
        plan = await self.spawn_grants()
        env = plan.gpu.environment()
        env.update(
            grants.access_environment(
                plan.access, sock_container_path=self.docker_sock_container_path
            )
        )
        return {k: v for k, v in env.items() if k not in self.environment}

    async def extra_labels(self) -> dict[str, str]:
        """Container labels our features add."""
        plan = await self.spawn_grants()
        return {LABEL_GRANTS: plan.label(), **self.profile_labels()}

    # -- GPUs and Docker access by group ----------------------------------------

    _spawn_grants: SpawnGrants | None = None

    def builtin_group_names(self) -> list[str]:
        """Groups this spawner's grants read; they are kept in existence."""
        names = [self.docker_sock_group, self.docker_privileged_group, *self.gpu_groups]
        return [n for n in dict.fromkeys(names) if n]

    def gpu_request(self) -> gpu.GpuRequest:
        return gpu.GpuRequest.from_config(
            self.gpu_count, self.gpu_device_ids, self.gpu_capabilities
        )

    async def gpu_report(self) -> gpu.EngineGpuReport:
        """What the engine offers, cached per engine for gpu_detect_interval seconds."""
        client = await self.docker_client()
        if self.gpu_probe_image:
            key = (gpu.engine_key(client), "probe", self.gpu_probe_image, *self.gpu_probe_command)
            image, command, timeout = (
                self.gpu_probe_image,
                tuple(self.gpu_probe_command),
                self.gpu_probe_timeout,
            )
            prefix = self.prefix

            def check() -> gpu.EngineGpuReport:
                return gpu.probe_check(client, image, command, timeout=timeout, name_prefix=prefix)
        else:
            key = (gpu.engine_key(client), "info")

            def check() -> gpu.EngineGpuReport:
                return gpu.info_check(client)

        return await gpu.detector.report(
            key,
            check,
            self.gpu_detect_interval,
            lambda fn: dockerpool.run(fn, pool_size=self.docker_pool_size),
        )

    async def spawn_grants(self) -> SpawnGrants:
        """Decide GPUs and Docker access for this spawn (once; logged once)."""
        if self._spawn_grants is not None:
            return self._spawn_grants
        db = self.user.db
        created = grants.ensure_groups(db, self.builtin_group_names())
        if created:
            self.log.warning("Re-created missing group(s) %s", ", ".join(created))
        user_groups = grants.user_group_names(db, self.user.id)
        access = grants.decide_access(
            user_groups,
            sock_group=self.docker_sock_group,
            privileged_group=self.docker_privileged_group,
        )
        mode = self.gpu_mode.lower()
        # a GPU profile asks for its own count, as if gpu_mode were on (profile_spawner.py)
        request, forced = self.profile_gpu_request(self.gpu_request())
        decide_mode = "on" if forced and mode == "auto" else mode
        report = None
        if gpu.needs_report(mode, user_groups, self.gpu_groups):
            report = await self.gpu_report()
        gpu_decision = gpu.decide_gpu(
            decide_mode,
            request,
            user_groups=user_groups,
            gpu_groups=self.gpu_groups,
            report=report,
        )
        gpu_decision = self.profile_gpu_decision(gpu_decision, mode)
        sock_gid = (
            grants.socket_gid(self.docker_sock_host_path, self.docker_sock_gid)
            if access.docker_sock
            else None
        )
        plan = self._spawn_grants = SpawnGrants(
            frozenset(user_groups), access, gpu_decision, sock_gid
        )
        audit(
            self._requester(),
            "spawn-grants",
            self._log_name,
            f"gpu {gpu_decision.summary()}; {access.summary()}",
            groups=sorted(user_groups),
            gpu_groups=list(gpu_decision.granted_by),
            socket_gid=sock_gid if access.docker_sock else None,
        )
        return plan

    def _requester(self) -> str:
        """Who asked for this start (an admin or service may start someone's server)."""
        handler = getattr(self, "handler", None)
        who = getattr(getattr(handler, "current_user", None), "name", None)
        return who or self.user.name

    def _user_settable(self) -> set[str]:
        allowed = set(self.user_options_traits)
        if isinstance(self.apply_user_options, Mapping):
            allowed |= set(self.apply_user_options.values())
        return allowed - set(PROTECTED_TRAITS)

    def _config_snapshot(self) -> dict[str, Any]:
        out = {}
        for name in self.trait_names(config=True):
            value = getattr(self, name)
            try:
                out[name] = copy.deepcopy(value)
            except Exception:  # an object that cannot be copied: compare identity
                out[name] = value
        return out

    async def _run_apply_user_options(self, user_options: dict) -> None:
        # An allow-list: user_options may change only the traits the admin
        # declared user-settable (user_options_traits, or the traits named by
        # a dict apply_user_options); and even those may not gain Docker
        # access (privileged, the socket) that hub groups did not grant.
        try:
            profile = self.choose_profile(user_options)
        except ProfileChoiceError as e:
            self._forget_user_options()
            audit(self._requester(), "spawn-options", self._log_name, "refused", reason=e.message)
            raise SpawnRefused(e.message, reason="profile", status_code=e.status) from None
        if self.profiles:
            user_options = {k: v for k, v in (user_options or {}).items() if k != "profile"}
        before = self._config_snapshot()
        had = set(self._config_escalations())
        await super()._run_apply_user_options(user_options)
        allowed = self._user_settable()
        changed = [
            n for n, v in before.items() if n not in allowed and not _same(getattr(self, n), v)
        ]
        gained = [e for e in self._config_escalations() if e not in had]
        if not (changed or gained):
            if self.profiles:
                self.apply_profile(profile)
            return
        for name in changed:
            setattr(self, name, before[name])
        what = ", ".join([*changed, *gained])
        self._forget_user_options()
        self.log.warning("Refused user_options of %s setting %s", self._log_name, what)
        audit(self._requester(), "spawn-options", self._log_name, "refused", setting=what)
        raise SpawnRefused(
            f"Server options may not set {what}. Only settings the administrator "
            "declared user-settable (c.ExtDockerSpawner.user_options_traits) can be "
            "chosen; Docker access and GPUs are granted through hub groups.",
            reason="forbidden-option",
            status_code=403,
        )

    def _forget_user_options(self) -> None:
        # JupyterHub reuses the last options at the next plain start: drop refused ones
        self.user_options = {}
        if self.orm_spawner is not None:
            self.orm_spawner.user_options = {}
            self.user.db.commit()

    def _config_escalations(self) -> list[str]:
        found = []
        if isinstance(self.extra_host_config, Mapping):
            found += grants.escalations(self.extra_host_config, self.docker_sock_host_path)
        found += grants.escalations({"mounts": self.mounts}, self.docker_sock_host_path)
        if isinstance(self.extra_create_kwargs, Mapping):
            # raw Docker API host config, passed through as under DockerSpawner
            raw = self.extra_create_kwargs.get("host_config") or {}
            if isinstance(raw, Mapping):
                found += grants.escalations(
                    {k.lower(): v for k, v in raw.items()}, self.docker_sock_host_path
                )
        if isinstance(self.volumes, Mapping):
            found += grants.volume_escalations(self.volumes, self.docker_sock_host_path)
        return list(dict.fromkeys(found))

    async def create_object(self) -> dict:
        # GPUs and the admission check are decided with the create, under one lock
        async with self.placement():
            return await self.create_supervised(self._create_container())

    async def create_supervised(self, create_call: Awaitable[dict]) -> dict:
        """Run the coroutine that creates this server's object (container, Swarm
        service) so that a cancelled start removes what it made."""
        create = asyncio.ensure_future(create_call)
        try:
            return await asyncio.shield(create)
        except asyncio.CancelledError:
            await self._drop_abandoned_create(create)
            raise

    async def _drop_abandoned_create(self, create: asyncio.Future) -> None:
        """JupyterHub cancelled this start (``start_timeout``) while the engine was
        creating its object: the call goes on in its pool thread. Wait for it
        (still under the placement lock: the next decision sees the GPUs that
        container was given), then remove it: nobody will start it.
        """
        self.log.warning(
            "Start of %s cancelled while the engine was creating its %s; "
            "removing that %s when it exists",
            self._log_name,
            self.object_type,
            self.object_type,
        )
        await _wait_through_cancels(create)
        if create.cancelled() or create.exception() is not None:
            return
        self.object_id = create.result()[self.object_id_key]
        try:
            await self.remove_object()
        finally:
            self.object_id = ""

    async def _create_container(self) -> dict:
        return await self.docker("create_container", **await self.container_create_kwargs())

    async def container_create_kwargs(self) -> dict[str, Any]:
        """``create_container`` arguments, merging the admin's settings as DockerSpawner does.

        ``extra_create_kwargs`` is deep-merged into the create arguments as
        DockerSpawner merges it (dicts merge, lists replace), and its raw
        ``host_config`` keys are kept under the generated host config.
        Host-config fragments (ours and ``extra_host_config``) are combined by
        objects.merge_fragments, where lists extend.
        """
        client = await self.docker_client()
        extra_create = await self._resolve(self.extra_create_kwargs)
        extra_host = dict(await self._resolve(self.extra_host_config))
        if "binds" in extra_host:
            extra_host["binds"] = hostconfig.normalize_binds(extra_host["binds"])
        base = self._base_host_config(extra_host)
        host_config = hostconfig.merge_fragments(
            base, *(await self.host_config_fragments()), extra_host
        )
        host_config.setdefault("network_mode", self.network_name)
        create_kwargs = await self._create_kwargs(extra_create)
        self.log.debug("Creating %s with host config %s", self.container_name, host_config)
        raw_host_config = dict(create_kwargs.get("host_config") or {})
        raw_host_config.update(client.create_host_config(**host_config))
        create_kwargs["host_config"] = raw_host_config
        return create_kwargs

    def _base_host_config(self, extra_host: Mapping[str, Any]) -> dict[str, Any]:
        """DockerSpawner's own host config: binds, links, limits, port bindings."""
        base: dict[str, Any] = {
            "auto_remove": self.remove,
            "binds": hostconfig.normalize_binds(self.volume_binds),
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
        return base

    async def _create_kwargs(self, extra_create: Mapping[str, Any]) -> dict[str, Any]:
        """The create arguments (all but the host config), ``extra_create_kwargs`` merged in."""
        env = self.get_env()
        env.update(await self.extra_environment())
        labels = {
            **hostconfig.container_labels(
                self.user.id, self.user.name, self.name, self.owner().created
            ),
            **await self.extra_labels(),
        }
        create_kwargs: dict[str, Any] = {
            "image": self.image,
            "environment": env,
            "volumes": self.volume_mount_points,
            "name": self.container_name,
            "command": await self.get_command(),
            "labels": labels,
        }
        if not self.host_network:
            create_kwargs["ports"] = {f"{self.port}/tcp": None}
        create_kwargs = compat.deep_merge(create_kwargs, extra_create)
        # owner and grants labels find a user's containers: the admin's labels add to them
        create_kwargs["labels"] = {**(create_kwargs.get("labels") or {}), **labels}
        return create_kwargs

    # -- lifecycle ----------------------------------------------------------

    async def _follow_rename(self) -> None:
        """Run the features' locked start hooks, then drop names cached for an old user name.

        Called with the user's lock held, before the volumes are ensured: a
        user renamed through JupyterHub's own API gets their volumes moved by
        the rename's hook here at the latest, and a spawner object made
        before the rename must not create or mount anything under the old name.
        """
        for hook in hooks.with_user_lock:
            await hook(self)
        hubcompat.forget_escaped_name(self, self.user.name)
        expected = self._object_name_default()
        if self.object_name != expected:
            info = await calls.container_or_none(self.client, self.object_name)
            labels = (info or {}).get("Config", {}).get("Labels") or {}
            if info is None or labels.get(LABEL_OWNER_NAME, self.user.name) != self.user.name:
                self.log.info(
                    "Not reusing %s (made for another user name); next: %s",
                    self.object_name,
                    expected,
                )
                self.object_name = expected
                self.object_id = ""

    async def get_object(self) -> dict | None:
        """The server's container, only if its labels say it is this user's server.

        A container of the expected name that is someone else's is never
        reported as ours: not to ``poll`` (the hub would proxy to it), not to
        ``start`` (DockerSpawner would remove or restart it), not to ``stop``.
        """
        obj = await super().get_object()
        self._foreign_container = None
        if obj is None:
            return None
        why = ownership.container_refusal(
            self.object_name,
            self.object_labels(obj),
            owner=self.owner(),
            server_name=self.name,
            adopt_unlabelled=self.adopt_unlabelled,
        )
        if why:
            self.log.warning(
                "Not using container %s for %s: %s", self.object_name, self._log_name, why
            )
            self._foreign_container = why
            self.object_id = ""
            return None
        return obj

    _foreign_container: str | None = None

    def volume_engine(self) -> Any:
        """The engine that holds this server's volumes, for reset and rename: our own."""
        return self.client

    def object_labels(self, obj: Mapping[str, Any]) -> Mapping[str, str] | None:
        """The labels of this server's Docker object (a container here)."""
        return (obj.get("Config") or {}).get("Labels")

    async def check_ownership(self) -> None:
        """Refuse a start that would use another user's container or volumes."""
        if await self.get_object() is None and self._foreign_container:
            why = self._foreign_container
            audit(self._requester(), "start", self._log_name, "refused", reason=why)
            raise NotOwnedError(
                f"Cannot start: {why}. An administrator can remove that container, "
                "or change c.ExtDockerSpawner.name_template."
            )
        # volumes named in DockerSpawner's own `volumes` (our volume set is
        # checked as each volume is ensured)
        for source in hostconfig.named_volume_sources(self.volume_binds):
            try:
                info = await self.docker("inspect_volume", source)
            except NotFound:
                continue
            why = self.volume_refusal(source, info.get("Labels"), None)
            if why:
                self._refuse_volume(why, source)

    async def start(self) -> tuple[str, int]:
        why = usernames.problem(self.user.name)
        if why:
            # a name from before the rule, or an authenticator that skips it
            raise SpawnRefused(
                f"Cannot start a server for {self.user.name!r}: {why}. "
                "An administrator can rename the user.",
                reason="invalid-user-name",
            )
        for check in hooks.before_start:
            check(self)
        # JupyterHub's start_timeout counts from here
        deadline = time.monotonic() + self.start_timeout
        self._started_as = self.user.name
        # the client is made and the engine asked for its API version in the
        # pool, with a deadline: a hung engine fails this spawn, not the hub
        await self.docker_client()
        # membership is read now, at every spawn: a restart applies group changes
        self._spawn_grants = None
        await self.spawn_grants()
        self.check_volume_conflicts()
        if self.host_network:
            self.ip = self.host_network_ip
            self.port = hostnet.reserve_port(self.host_network_ip)
        try:
            # Wait for any volume reset or rename of this user to finish first.
            async with user_lock(self.user.id):
                await self._follow_rename()
                await self.check_ownership()
                await self.ensure_volumes()
                if not self.remove:
                    await self.drop_container_with_other_grants()
                ip, port = await super().start()
            await self.wait_until_up(ip, port, deadline=deadline)
            return ip, port
        except Exception:
            if self.host_network:
                hostnet.release_port(self.port)
            raise

    _started_as: str | None = None

    @property
    def started_as(self) -> str | None:
        """The user's name when this server was last started (a rename may change it since)."""
        return self._started_as

    def load_state(self, state: dict) -> None:
        super().load_state(state)
        if self.object_id:  # a server that may still run, from before a hub restart
            self._started_as = self.user.name

    def readiness_budget(self, deadline: float) -> float:
        """Seconds our own readiness poll may take before start() must return.

        JupyterHub cancels start() after ``start_timeout`` and then waits up to
        ``http_timeout`` itself; a slow server must reach that second wait, as
        under DockerSpawner. A margin is left for the hub to take the result.
        """
        margin = min(2.0, 0.2 * self.start_timeout)
        return max(0.0, min(self.http_timeout, deadline - margin - time.monotonic()))

    async def wait_until_up(self, ip: str, port: int, deadline: float | None = None) -> None:
        """Return as soon as the new server answers (see readiness.py), or when
        the time left of ``start_timeout`` runs out while the container still
        runs: JupyterHub's own wait (``http_timeout``) takes over from there."""
        if not self.ready_poll_interval or self.internal_ssl:
            return
        if deadline is None:
            deadline = time.monotonic() + self.start_timeout
        budget = self.readiness_budget(deadline)
        if budget <= 0:
            return
        base = self.server.base_url if self.server else "/"
        url = f"http://{ip}:{port}{base}api"

        waited = await readiness.wait_until_up(
            url,
            interval=self.ready_poll_interval,
            still_running=self.server_exit_reason,
            budget=budget,
        )
        if waited is None:
            self.log.info(
                "Server of %s not answering after %.1fs; JupyterHub waits for it "
                "(http_timeout %ss)",
                self._log_name,
                budget,
                self.http_timeout,
            )
        else:
            self.log.debug("Server of %s answered after %.2fs", self._log_name, waited)

    async def server_exit_reason(self) -> str | None:
        """Why the server's container is no longer running (None while it runs)."""
        try:
            info = await self.docker("inspect_container", self.container_id)
        except NotFound:
            return (
                f"container {self.object_name} exited before its server answered and "
                "was removed (remove=True); set c.ExtDockerSpawner.remove = False "
                "to keep it for `docker logs`"
            )
        state = info["State"]
        if state.get("Running"):
            return None
        logs = await self.docker("logs", self.container_id, tail=15)
        return (
            f"container {self.object_name} exited with code {state.get('ExitCode')} "
            "before its server answered; last log lines:\n" + logs.decode(errors="replace").strip()
        )

    async def drop_container_with_other_grants(self) -> None:
        """With ``remove = False`` DockerSpawner restarts the old container as it was
        created. If it was created with other grants than decided now (someone
        left or joined a group), it is removed so the start creates a new one:
        otherwise leaving the docker-sock group would not take the socket away.
        """
        obj = await self.get_object()
        if obj is None:
            return
        labels = obj["Config"].get("Labels") or {}
        had = labels.get(LABEL_GRANTS, "none")
        want = (await self.spawn_grants()).label()
        # a container holding GPUs or made for another profile is made again (placement)
        same_profile = labels.get(LABEL_PROFILE) == self.profile_labels().get(LABEL_PROFILE)
        if had == want and same_profile and not labels.get(LABEL_GPU_DEVICES):
            return
        self.log.warning(
            "Re-creating container %s of %s: created with grants %s, now %s",
            self.object_name,
            self._log_name,
            had,
            want,
        )
        if obj["State"].get("Running"):
            await self.stop_object()
        await self.remove_object()
        self.object_id = ""

    async def remove_object(self) -> None:
        """Remove this server's old container, keeping its anonymous volumes.

        DockerSpawner removes them with the container (``v=True``). We remove
        old containers for reasons the user did not ask for (grants changed,
        a leftover found at start), and an image's ``VOLUME`` paths may hold
        the only copy of someone's files: never delete data as a side effect.
        They are logged so an admin can remove them.
        """
        try:
            info = await self.docker("inspect_container", self.object_id)
        except NotFound:
            return
        anonymous = hostconfig.anonymous_volumes(info.get("Mounts"))
        try:
            await self.docker("remove_container", self.object_id, v=False)
        except APIError as e:
            if e.status_code not in (404, 409):  # gone, or removal already in progress
                raise
        if anonymous:
            self.log.warning(
                "Removed container %s of %s; kept its anonymous volumes %s",
                self.object_name,
                self._log_name,
                ", ".join(anonymous),
            )

    async def start_object(self) -> None:
        # JupyterHub may cancel this start (start_timeout) while the engine is
        # starting the container in a pool thread: wait for that call, so the
        # hub's stop() that follows stops a started container, not one that
        # starts after it and runs on unsupervised, holding its GPUs
        start = asyncio.ensure_future(super().start_object())
        try:
            await asyncio.shield(start)
        except asyncio.CancelledError:
            await _wait_through_cancels(start)
            raise
        except APIError as e:
            plan = self._spawn_grants
            explanation = explain(e)
            message = gpu.start_failure_message(explanation, plan and plan.gpu)
            if message:
                self.log.error("GPU spawn of %s failed: %s", self._log_name, explanation)
                raise SpawnRefused(message, reason="gpu-unavailable", status_code=500) from e
            raise

    async def stop(self, now: bool = False) -> None:
        await super().stop(now=now)
        if self.host_network:
            hostnet.release_port(self.port)
        for hook in hooks.after_stop:
            hook(self)


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # values without a usable ==
        return a is b


async def _wait_through_cancels(fut: asyncio.Future) -> None:
    """Wait until ``fut`` (a Docker call in a pool thread) is done, even if this
    task is cancelled again meanwhile: the call ends by itself (the client's
    timeout), and the caller re-raises its cancellation afterwards."""
    while not fut.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait([fut])


__all__ = ["ExtDockerSpawner", "VolumeSetError"]

# Configs, the entry point and the configuration reference's anchors all name
# the class by its public path; the module split is ours.
ExtDockerSpawner.__module__ = "jupyterhub_ext.spawner"
