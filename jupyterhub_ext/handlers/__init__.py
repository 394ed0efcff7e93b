"""Tornado handlers for ``c.JupyterHub.extra_handlers`` (added by ``jupyterhub_ext.setup``)."""

from __future__ import annotations

from . import rename


def default_handlers() -> list[tuple]:
    """Every route we serve, relative to the hub prefix (/hub)."""
    routes: list[tuple] = []
    routes.extend(rename.handlers())
    return routes
