"""What ``jupyterhub_ext.setup(c)`` does to a hub's configuration.

Each feature that needs hub-level config (routes, scopes, roles, groups,
services) adds itself to ``apply`` here, so an admin calls one function.
"""

from __future__ import annotations

import logging
from typing import Any

from jupyterhub_ext import gpu, scopes
from jupyterhub_ext.accounts import signup, usernames
from jupyterhub_ext.configutil import TRAIT_SECTIONS, any_section, configured, spawner_setting
from jupyterhub_ext.handlers import default_handlers
from jupyterhub_ext.notifications import broadcast
from jupyterhub_ext.paths import template_path
from jupyterhub_ext.spawner import compat, grants
from jupyterhub_ext.storage.mixin import check_at_hub_start
from jupyterhub_ext.storage.volumes import parse_volume_set
from jupyterhub_ext.swarm import hubcheck as swarm_hubcheck

SPAWNER_SECTIONS = ("ExtDockerSpawner",)
# sections whose values reach ExtDockerSpawner's traits, lowest precedence first


def hook_logging(app_logger: str = "JupyterHub") -> None:
    """Send our loggers (``jupyterhub_ext.*``, the audit log too) to the hub's log.

    JupyterHub's logger does not propagate to the root logger, and the root
    logger has no handler, so without this our INFO lines (audit!) vanish.
    JupyterHub hooks tornado's loggers up the same way.
    """
    ours = logging.getLogger("jupyterhub_ext")
    ours.parent = logging.getLogger(app_logger)
    ours.propagate = True


def apply(c: Any) -> None:
    """Register templates, handlers, scopes and roles; validate our config now."""
    hook_logging()
    # names with invisible characters can collide in Docker object names
    usernames.install()
    _add_templates_and_handlers(c)
    scopes.configure(
        c,
        admin_users=set(configured(c, "Authenticator", "admin_users", set())),
    )

    # notification broadcast: its delivery service, and its settings checked now
    notifications = broadcast.NotificationsConfig(config=c)
    broadcast.configure(c, service_name=notifications.service_name)

    _install_rename(c)
    _install_usage_and_culling(c)
    _check_volume_sets(c)
    configure_groups(c)
    check_gpu_config(c)
    check_docker_spawner_options(c)
    # Docker Swarm: what a service would silently drop stops the hub instead
    swarm_hubcheck.check_at_hub_start(c)
    # spawn profiles: syntax, GPU counts, images present on the engine
    from jupyterhub_ext.profiles.mixin import check_at_hub_start as check_profiles

    check_profiles(c, spawner_setting)


def _add_templates_and_handlers(c: Any) -> None:
    """Our templates first in ``template_paths``; our routes unless the admin has them."""
    paths = list(configured(c, "JupyterHub", "template_paths", []))
    if template_path() not in paths:
        c.JupyterHub.template_paths = [template_path(), *paths]

    existing = list(configured(c, "JupyterHub", "extra_handlers", []))
    routes = {h[0] for h in existing}
    c.JupyterHub.extra_handlers = existing + [h for h in default_handlers() if h[0] not in routes]


def _install_rename(c: Any) -> None:
    """Rename: the journal table (created by JupyterHub with its own tables),
    the listeners that keep NativeAuthenticator's row with the user's name,
    and resuming renames a crash interrupted once the hub is up.
    """
    from jupyterhub_ext.accounts import nativecompat
    from jupyterhub_ext.rename import journal, runner

    if signup.uses_native(configured(c, "JupyterHub", "authenticator_class", "")):
        nativecompat.apply()
        # names Native approves at sign-up must have accounts before it opens
        signup.install()

    journal.install()
    runner.install_spawner_hooks()
    journal.set_core_rename_hook(runner.on_core_rename)
    # JupyterHub's own rename obeys the same privilege rule as ours
    journal.set_privilege_check(runner.rename_refusal)
    runner.schedule_recovery()


def _install_usage_and_culling(c: Any) -> None:
    # usage: our series on /hub/metrics, and the scan behind them and /hub/servers
    from jupyterhub_ext.usage import metrics, scan

    metrics.register()
    scan.schedule()

    # idle culling with a warning (c.CullerConfig.enabled)
    from jupyterhub_ext import culler

    culler.configure(c)


def _check_volume_sets(c: Any) -> None:
    for section in SPAWNER_SECTIONS:
        raw = configured(c, section, "volume_set")
        if raw is not None:
            # archive directories and secret sources too, not only the syntax
            check_at_hub_start(parse_volume_set(raw))


def configure_groups(c: Any) -> None:
    """Create the docker-sock, docker-privileged and GPU groups at hub start.

    The spawner re-creates them at spawn if an admin deleted them. With an
    authenticator that manages groups (``manage_groups``), JupyterHub refuses
    ``load_groups``; then they are created at the first spawn.
    """
    # the authenticator's own section counts too (c.GenericOAuthenticator...)
    if any_section(c, "manage_groups", "Authenticator"):
        return
    names = [
        spawner_setting(c, "docker_sock_group", grants.DEFAULT_SOCK_GROUP),
        # no privileged containers on Swarm: no group for them either
        spawner_setting(
            c,
            "docker_privileged_group",
            "" if swarm_hubcheck.uses_swarm(c) else grants.DEFAULT_PRIVILEGED_GROUP,
        ),
        *spawner_setting(c, "gpu_groups", []),
    ]
    groups = dict(configured(c, "JupyterHub", "load_groups", {}))
    for name in names:
        if name and name not in groups:
            # no "users" key: load_groups only adds, so this never changes membership
            groups[name] = {}
    c.JupyterHub.load_groups = groups


def check_gpu_config(c: Any) -> None:
    """Refuse an impossible GPU setting at hub start, not at someone's spawn."""
    mode = str(spawner_setting(c, "gpu_mode", "auto")).lower()
    if mode not in gpu.MODES:
        raise gpu.GpuConfigError(
            f"c.ExtDockerSpawner.gpu_mode must be one of {', '.join(gpu.MODES)}, not {mode!r}"
        )
    gpu.GpuRequest.from_config(
        spawner_setting(c, "gpu_count", "all"),
        spawner_setting(c, "gpu_device_ids", []),
        spawner_setting(c, "gpu_capabilities", list(gpu.DEFAULT_CAPABILITIES)),
    )


log = logging.getLogger("jupyterhub_ext.setup")


def check_docker_spawner_options(c: Any) -> None:
    """DockerSpawner options that would collide with ours or be ignored, at hub start.

    - An explicit ``volume_set`` mounting what ``volumes`` / ``read_only_volumes``
      / ``mounts`` already mount (same path, or the same volume twice) stops the
      hub with the one-line change. The default set steps aside instead (logged).
    - With ``network_name = "host"``, ``port`` and ``host_ip`` are not used
      (each server gets a free port on ``host_network_ip``): say so.
    """
    from jupyterhub_ext.spawner.lifecycle import DEFAULT_VOLUME_SET

    raw = spawner_setting(c, "volume_set", None)
    theirs = compat.config_mounts(
        spawner_setting(c, "volumes", {}),
        spawner_setting(c, "read_only_volumes", {}),
        spawner_setting(c, "mounts", []),
    )
    explicit = raw is not None and raw != DEFAULT_VOLUME_SET
    specs = parse_volume_set(raw if explicit else DEFAULT_VOLUME_SET)
    found = compat.conflicts(specs, {}, theirs)
    if explicit and compat.blocking(found):
        raise compat.conflict_error(compat.blocking(found))
    if found and not explicit:
        log.warning(
            "The default volume_set gives way to DockerSpawner's own mounts (%s); "
            "Manage volumes, reset and rename do not cover it. To fix: %s",
            found[0].describe(),
            compat.fix_hint(found[0]),
        )
    if spawner_setting(c, "network_name", "") == "host":
        for name in ("port", "host_ip"):
            section = next((s for s in TRAIT_SECTIONS if configured(c, s, name) is not None), None)
            if section:
                log.warning(
                    "c.%s.%s is not used with network_name = 'host': each server gets a free "
                    "port on c.ExtDockerSpawner.host_network_ip (default 127.0.0.1)",
                    section,
                    name,
                )
