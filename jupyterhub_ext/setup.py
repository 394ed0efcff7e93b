"""What ``jupyterhub_ext.setup(c)`` does to a hub's configuration.

Each feature that needs hub-level config (routes, scopes, roles, groups,
services) adds itself to ``apply`` here, so an admin calls one function.
"""

from __future__ import annotations

import logging
from typing import Any

from traitlets.config import LazyConfigValue

from . import broadcast, scopes, template_path
from .handlers import default_handlers
from .storage import check_at_hub_start
from .volumes import parse_volume_set

SPAWNER_SECTIONS = ("ExtDockerSpawner",)


def configured(c: Any, section: str, name: str, default: Any = None) -> Any:
    """A value set in config, without creating traitlets' lazy placeholders."""
    sub = c[section] if section in c else {}
    value = sub[name] if name in sub else default
    if isinstance(value, LazyConfigValue):
        # e.g. the admin wrote c.JupyterHub.template_paths.append(...)
        value = value.get_value(default)
    return value


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
    paths = list(configured(c, "JupyterHub", "template_paths", []))
    if template_path() not in paths:
        c.JupyterHub.template_paths = [template_path(), *paths]

    existing = list(configured(c, "JupyterHub", "extra_handlers", []))
    routes = {h[0] for h in existing}
    c.JupyterHub.extra_handlers = existing + [h for h in default_handlers() if h[0] not in routes]

    scopes.configure(
        c,
        admin_users=set(configured(c, "Authenticator", "admin_users", set())),
    )

    # notification broadcast: its delivery service, and its settings checked now
    notifications = broadcast.NotificationsConfig(config=c)
    broadcast.configure(c, service_name=notifications.service_name)

    for section in SPAWNER_SECTIONS:
        raw = configured(c, section, "volume_set")
        if raw is not None:
            # archive directories and secret sources too, not only the syntax
            check_at_hub_start(parse_volume_set(raw))
