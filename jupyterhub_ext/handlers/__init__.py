"""Tornado handlers for ``c.JupyterHub.extra_handlers`` (added by ``jupyterhub_ext.setup``)."""

from __future__ import annotations

from . import notifications


def default_handlers() -> list[tuple]:
    """Every route we serve, relative to the hub prefix (/hub)."""
    routes: list[tuple] = []
    routes.extend(notifications.default_handlers())
    return routes
