"""Reading a hub's traitlets Config before JupyterHub has applied it."""

from __future__ import annotations

from typing import Any

from traitlets.config import LazyConfigValue


def configured(c: Any, section: str, name: str, default: Any = None) -> Any:
    """A value set in config, without creating traitlets' lazy placeholders.

    Resolves lazy edits such as ``c.JupyterHub.load_roles.append(...)``
    made before ``jupyterhub_ext.setup(c)``.
    """
    sub = c[section] if section in c else {}
    value = sub[name] if name in sub else default
    if isinstance(value, LazyConfigValue):
        value = value.get_value(default)
    return value


def any_section(c: Any, name: str, suffix: str) -> Any:
    """``name`` from any section ending in ``suffix`` (e.g. every *Authenticator)."""
    for section in list(c.keys()):
        if section.endswith(suffix):
            value = configured(c, section, name)
            if value is not None:
                return value
    return None


# where a spawner trait may be set, weakest first
TRAIT_SECTIONS = ("Spawner", "DockerSpawner", "ExtDockerSpawner")


def spawner_setting(c: Any, name: str, default: Any) -> Any:
    """A spawner trait as ExtDockerSpawner will see it (subclass sections win)."""
    value = default
    for section in TRAIT_SECTIONS:
        value = configured(c, section, name, value)
    return value
