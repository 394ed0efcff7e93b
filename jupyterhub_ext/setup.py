"""What ``jupyterhub_ext.setup(c)`` does to a hub's configuration.

Each feature that needs hub-level config (routes, scopes, roles, groups,
services) adds itself to ``apply`` here, so an admin calls one function.
"""

from __future__ import annotations

from typing import Any

from traitlets.config import LazyConfigValue

from . import scopes, template_path
from .handlers import default_handlers
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


def apply(c: Any) -> None:
    """Register templates, handlers, scopes and roles; validate our config now."""
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

    # Rename: the journal table (created by JupyterHub with its own tables),
    # the listeners that keep NativeAuthenticator's row with the user's name,
    # and resuming renames a crash interrupted once the hub is up.
    from . import nativecompat, rename, rename_db

    if nativecompat.uses_native(configured(c, "JupyterHub", "authenticator_class", "")):
        nativecompat.apply()

    rename_db.install()
    rename_db.set_core_rename_hook(rename.on_core_rename)
    rename.schedule_recovery()

    for section in SPAWNER_SECTIONS:
        raw = configured(c, section, "volume_set")
        if raw is not None:
            parse_volume_set(raw)
