"""Small helpers shared by our API handlers."""

from __future__ import annotations

from typing import Any

from tornado import web


def actor_name(handler: Any) -> str:
    """Who is asking: a user's or a service's name (for audit lines)."""
    who = handler.current_user
    if who is None:
        return "-"
    kind = getattr(who, "kind", "user")
    return who.name if kind == "user" else f"{kind}:{who.name}"


def target_label(user_name: str, server_name: str) -> str:
    """``alice`` for a default server, ``alice/lab2`` for a named one."""
    return f"{user_name}/{server_name}" if server_name else user_name


def find_server(handler: Any, user_name: str, server_name: str) -> tuple[Any, Any]:
    """The hub's User and Spawner wrapper for a server, or a JSON 4xx.

    Call only after the scope check, so a refused caller learns nothing about
    which users or servers exist.
    """
    user = handler.find_user(user_name)
    if user is None:
        raise web.HTTPError(404, f"No such user: {user_name}")
    if server_name:
        if not handler.allow_named_servers:
            raise web.HTTPError(400, "Named servers are not enabled on this hub.")
        if server_name not in user.orm_spawners:
            raise web.HTTPError(404, f"{user_name} has no server named {server_name!r}")
    # the default server's record is created on first access, as the core API does
    return user, user.spawners[server_name]
