"""What our handlers share: the base class (who asks, which server, refuse with an
audit line), the custom-scope decorator, and the map from refusal kinds to statuses."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from jupyterhub.apihandlers.base import APIHandler
from tornado import web

from jupyterhub_ext.audit import audit
from jupyterhub_ext.scopes import user_scope

NO_CREDENTIALS = "Missing or invalid credentials."
NOT_FOUND = "No access to resources or resources not found"


def check_custom_scope(
    handler: Any, scope: str, *, user_name: str | None = None, message: str = ""
) -> None:
    """Answer as JupyterHub's ``needs_scope`` does, for one of our custom scopes.

    ``needs_scope`` checks scope names when a module is imported; ours are
    defined when the hub starts, so they are checked here, per request.
    403 without credentials or without the scope. A scope filtered by user
    (``user_name`` given) that the caller holds on other users only gives a
    404, as the core API does: a refused caller learns nothing of who exists.
    Raises ``web.HTTPError``; its ``log_message`` is the reason.
    """
    if handler.current_user is None:
        raise web.HTTPError(403, NO_CREDENTIALS)
    wanted = scope if user_name is None else user_scope(scope, user_name)
    if handler.has_scope(wanted):
        return
    if user_name is not None and scope in getattr(handler, "parsed_scopes", {}):
        raise web.HTTPError(404, NOT_FOUND)
    raise web.HTTPError(
        403, message or f"Action is not authorized with current scopes; requires [{scope}]"
    )


def needs_custom_scope(
    scope: str, *, per_user: bool = False, message: str = ""
) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
    """``@needs_scope`` for our custom scopes (see ``check_custom_scope``).

    ``per_user``: the verb's first path argument is the user name the scope is
    filtered by. A handler with an ``audit_refusal(reason, *path_args)`` method
    gets each refusal of a known caller written to the audit log.
    """

    def decorate(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(method)
        async def checked(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                check_custom_scope(
                    self, scope, user_name=args[0] if per_user else None, message=message
                )
            except web.HTTPError:
                if self.current_user is not None and hasattr(self, "audit_refusal"):
                    self.audit_refusal(f"no {scope} scope", *args)
                raise
            return await method(self, *args, **kwargs)

        return checked

    return decorate


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


# what a feature's refusal kind answers over HTTP (features never pick statuses)
REFUSAL_STATUS = {
    "invalid": 400,
    "forbidden": 403,
    "not-found": 404,
    "conflict": 409,
    "failed": 500,
    "timeout": 504,
}


def status_of(kind: str) -> int:
    """The HTTP status for a feature's refusal ``kind`` (500 for one we do not know)."""
    return REFUSAL_STATUS.get(kind, 500)


class ExtAPIHandler(APIHandler):
    """The base of our API handlers: each verb checks, then acts, then answers.

    ``ACTION`` names the handler's action in audit lines. A refusal is one
    audit line and a JSON 4xx with a message a person can act on.
    """

    ACTION = ""

    @property
    def actor(self) -> str:
        return actor_name(self)

    def find_server(self, user_name: str, server_name: str) -> tuple[Any, Any]:
        return find_server(self, user_name, server_name)

    def refuse(
        self, status: int, message: str, target: str, *, action: str = "", **details: Any
    ) -> None:
        """Audit the refusal (``details`` as given) and answer ``status`` with ``message``."""
        audit(self.actor, action or self.ACTION, target, "refused", status=status, **details)
        raise web.HTTPError(status, message)
