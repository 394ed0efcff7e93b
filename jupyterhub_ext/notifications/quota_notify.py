"""Deliver one notification to one user's running servers, the way a broadcast does.

Used by the quota check of the usage scan (no request handler around it):
the delivery service gets one token per target server, good for that server
only and only for the delivery, deleted right after (broadcast_tokens.py).
"""

from __future__ import annotations

from typing import Any

from jupyterhub import orm
from jupyterhub.utils import make_ssl_context

from jupyterhub_ext.notifications import fanout
from jupyterhub_ext.notifications import tokens as broadcast_tokens
from jupyterhub_ext.notifications.broadcast import NotificationsConfig


def _targets(app: Any, user_name: str, only: str | None = None) -> list[fanout.Target]:
    orm_user = orm.User.find(app.db, user_name)
    if orm_user is None:
        return []
    user = app.users[orm_user]
    out = []
    for name in sorted(orm_user.orm_spawners):
        if only is not None and name != only:
            continue
        spawner = user.spawners[name]
        if spawner.ready and spawner.server is not None:
            out.append(fanout.Target(user.name, name, spawner.server.url))
    return out


def _ssl_context(app: Any) -> Any:
    if not getattr(app, "internal_ssl", False):
        return None
    return make_ssl_context(app.internal_ssl_key, app.internal_ssl_cert, cafile=app.internal_ssl_ca)


async def to_user(
    app: Any, user_name: str, message: str, variant: str = "warning", sender: str = "quota"
) -> int:
    """Send ``message`` to every running server of ``user_name``; returns how many got it."""
    return await _send(app, _targets(app, user_name), message, variant, sender)


async def to_server(
    app: Any, user_name: str, server_name: str, message: str, sender: str, variant: str = "warning"
) -> int:
    """Send ``message`` to one server of ``user_name`` ("" = default); 1 if it got it."""
    return await _send(app, _targets(app, user_name, server_name), message, variant, sender)


async def _send(
    app: Any, targets: list[fanout.Target], message: str, variant: str, sender: str
) -> int:
    if not targets:
        return 0
    cfg = NotificationsConfig(config=app.config)
    service = orm.Service.find(app.db, cfg.service_name)
    if service is None:
        return 0
    tokens = broadcast_tokens.mint(
        app.db, service, targets, expires_in=cfg.token_lifetime(len(targets))
    )
    payload = {
        "message": message,
        "type": variant,
        "autoClose": False,  # stays until the user closes it
        "immediate": True,
        "actions": [],
        "data": {"source": "jupyterhub-ext", "sender": sender},
    }
    try:
        results = await fanout.deliver(
            targets,
            payload,
            tokens=tokens,
            concurrency=cfg.concurrency,
            per_server_timeout=cfg.timeout,
            ssl_context=_ssl_context(app),
        )
    finally:
        broadcast_tokens.revoke(app.db, service, tokens.ids)
        tokens.by_target.clear()
    return sum(1 for r in results if r.status == fanout.DELIVERED)
