"""The /hub/notifications page and the /hub/api/notifications/* API.

Everything here needs the ``custom:jupyterhub-ext:broadcast`` scope (admins
have it; it is delegated through the ``jupyterhub-ext-broadcasters`` group).
Delivery itself is in :mod:`jupyterhub_ext.notifications.fanout`; request checks and
settings in :mod:`jupyterhub_ext.notifications.broadcast`.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from jupyterhub import orm
from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.handlers.base import BaseHandler
from jupyterhub.utils import make_ssl_context
from tornado import web

from jupyterhub_ext.audit import audit
from jupyterhub_ext.handlers._common import actor_name, needs_custom_scope
from jupyterhub_ext.notifications import fanout
from jupyterhub_ext.notifications import tokens as broadcast_tokens
from jupyterhub_ext.notifications.broadcast import (
    VARIANTS,
    BroadcastError,
    BroadcastRequest,
    NotificationsConfig,
    parse_broadcast,
)
from jupyterhub_ext.notifications.history import HistoryStore
from jupyterhub_ext.scopes import BROADCAST, BROADCAST_GROUP

_SETTINGS_KEY = "jupyterhub_ext_notifications"
FORBIDDEN = (
    f"Sending notifications needs the {BROADCAST} scope "
    f"(admins have it; others get it through the {BROADCAST_GROUP} group)."
)


def _state(handler: web.RequestHandler) -> tuple[NotificationsConfig, HistoryStore]:
    """Config and history store, made once per hub from the hub's config."""
    state = handler.settings.get(_SETTINGS_KEY)
    if state is None:
        cfg = NotificationsConfig(config=handler.settings.get("config"))
        state = (cfg, HistoryStore(cfg.history_path, cfg.history_size))
        handler.settings[_SETTINGS_KEY] = state
    return state


needs_broadcast = needs_custom_scope(BROADCAST, message=FORBIDDEN)


class _NotificationsMixin:
    def running_servers(self) -> list[tuple[Any, Any]]:
        """(user, spawner) of every server that is up and not starting or stopping."""
        found = []
        query = self.db.query(orm.Spawner).filter(orm.Spawner.server_id.isnot(None))
        for orm_spawner in query:
            user = self.users[orm_spawner.user]
            spawner = user.spawners[orm_spawner.name]
            if spawner.ready:
                found.append((user, spawner))
        return sorted(found, key=lambda us: (us[0].name, us[1].name))


class NotificationsPageHandler(_NotificationsMixin, BaseHandler):
    """GET /hub/notifications: compose, send, see results and history."""

    @web.authenticated
    @needs_broadcast
    async def get(self) -> None:
        cfg, _ = _state(self)
        html = await self.render_template(
            "notifications.html",
            notifications={
                "max_length": cfg.max_length,
                "variants": list(VARIANTS),
                "default_auto_close": cfg.default_auto_close,
                "history_size": cfg.history_size,
            },
        )
        self.finish(html)


class ActiveServersHandler(_NotificationsMixin, APIHandler):
    """GET /hub/api/notifications/active-servers"""

    @needs_broadcast
    async def get(self) -> None:
        servers = [
            {
                "username": user.name,
                "server": spawner.name,
                "url": user.server_url(spawner.name),
                "last_activity": (
                    spawner.orm_spawner.last_activity.isoformat() + "Z"
                    if spawner.orm_spawner.last_activity
                    else None
                ),
            }
            for user, spawner in self.running_servers()
        ]
        self.finish({"servers": servers})


class HistoryHandler(_NotificationsMixin, APIHandler):
    """GET /hub/api/notifications/history[?limit=N]: newest first."""

    @needs_broadcast
    async def get(self) -> None:
        cfg, store = _state(self)
        raw = self.get_argument("limit", None)
        limit = None
        if raw is not None:
            try:
                limit = int(raw)
                if limit < 0:
                    raise ValueError
            except ValueError:
                raise web.HTTPError(400, "limit must be a non-negative integer") from None
        entries = await store.recent_async(limit)
        self.finish({"history": entries, "size": cfg.history_size})


def _history_entry(actor: str, req: BroadcastRequest, ordered: list[dict]) -> dict[str, Any]:
    """The history record of one broadcast; ``ordered``: one result dict per recipient."""
    successful = sum(1 for d in ordered if d["status"] == fanout.DELIVERED)
    return {
        "id": secrets.token_hex(6),
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "sender": actor,
        "message": req.message,
        "variant": req.variant,
        "autoClose": req.auto_close,
        "recipients": "all" if req.recipients is None else [r.label for r in req.recipients],
        "total": len(ordered),
        "successful": successful,
        "failed": len(ordered) - successful,
        "failures": [d for d in ordered if d["status"] != fanout.DELIVERED],
    }


class BroadcastHandler(_NotificationsMixin, APIHandler):
    """POST /hub/api/notifications/broadcast"""

    @needs_broadcast
    async def post(self) -> None:
        cfg, store = _state(self)
        try:
            req = parse_broadcast(
                self.get_json_body(),
                max_length=cfg.max_length,
                max_recipients=cfg.max_recipients,
            )
        except BroadcastError as e:
            raise web.HTTPError(400, str(e)) from None

        targets, refused = self.resolve(req)
        actor = actor_name(self)
        deliveries = await self.deliver(cfg, req, targets, actor) if targets else []

        # servers we tried, in server order, then chosen ones we could not try
        ordered = [d.as_dict() for d in deliveries] + refused
        entry = _history_entry(actor, req, ordered)
        try:
            await store.append_async(entry)
        except OSError as e:
            # the notifications went out; a full disk must not hide that
            self.log.error("Could not record broadcast %s in %s: %s", entry["id"], store.path, e)
        self._audit_broadcast(actor, req, entry)
        self.finish(
            {
                "id": entry["id"],
                "total": entry["total"],
                "successful": entry["successful"],
                "failed": entry["failed"],
                "details": ordered,
            }
        )

    def _audit_broadcast(self, actor: str, req: BroadcastRequest, entry: dict[str, Any]) -> None:
        audit(
            actor,
            "broadcast",
            "all running servers" if req.recipients is None else entry["recipients"],
            f"{entry['successful']}/{entry['total']} delivered",
            id=entry["id"],
            variant=req.variant,
            message=req.message,
            seconds=round(self.request.request_time(), 3),
            failed=[
                f"{d['username']}/{d['server']}" if d["server"] else d["username"]
                for d in entry["failures"]
            ],
        )

    def resolve(self, req: BroadcastRequest) -> tuple[list[fanout.Target], list[dict]]:
        """Targets to deliver to, and chosen recipients that are not running."""
        if req.recipients is None:
            return [self._target(u, s) for u, s in self.running_servers()], []
        unknown = [r.username for r in req.recipients if self.find_user(r.username) is None]
        if unknown:
            raise web.HTTPError(400, f"Unknown user(s): {', '.join(unknown)}")
        targets, refused = [], []
        for r in req.recipients:
            user = self.find_user(r.username)
            if r.server not in user.orm_spawners:
                what = f"no server named {r.server!r}" if r.server else "server not running"
                refused.append(self._refused(r.username, r.server, what))
                continue
            spawner = user.spawners[r.server]
            if not spawner.ready:
                why = f"server busy ({spawner.pending} pending)" if spawner.pending else ""
                refused.append(self._refused(user.name, r.server, why or "server not running"))
                continue
            targets.append(self._target(user, spawner))
        return targets, refused

    @staticmethod
    def _refused(username: str, server: str, error: str) -> dict:
        return {"username": username, "server": server, "status": fanout.FAILED, "error": error}

    @staticmethod
    def _target(user: Any, spawner: Any) -> fanout.Target:
        # The URL the spawner reports (host, port and base URL of this server).
        return fanout.Target(user.name, spawner.name, spawner.server.url)

    async def deliver(
        self,
        cfg: NotificationsConfig,
        req: BroadcastRequest,
        targets: list[fanout.Target],
        actor: str,
    ) -> list[fanout.Delivery]:
        service = orm.Service.find(self.db, cfg.service_name)
        if service is None:
            raise web.HTTPError(
                500,
                f"The delivery service {cfg.service_name!r} is not registered: "
                "end the hub's config with jupyterhub_ext.setup(c).",
            )
        broadcast_tokens.purge_expired(self.db, service)
        # Least privilege: each server gets its own token, good for that
        # server only (its owner can read what it receives), only until the
        # fan-out can have ended; all deleted as soon as it has.
        tokens = broadcast_tokens.mint(
            self.db, service, targets, expires_in=cfg.token_lifetime(len(targets))
        )
        try:
            return await fanout.deliver(
                targets,
                req.payload(actor),
                tokens=tokens,
                concurrency=cfg.concurrency,
                per_server_timeout=cfg.timeout,
                ssl_context=self._ssl_context(),
            )
        finally:
            broadcast_tokens.revoke(self.db, service, tokens.ids)
            tokens.by_target.clear()

    def _ssl_context(self) -> Any:
        if not self.settings.get("internal_ssl"):
            return None
        return make_ssl_context(
            self.settings.get("internal_ssl_key"),
            self.settings.get("internal_ssl_cert"),
            cafile=self.settings.get("internal_ssl_ca"),
        )


def default_handlers() -> list[tuple[str, type]]:
    return [
        (r"/notifications", NotificationsPageHandler),
        (r"/api/notifications/active-servers", ActiveServersHandler),
        (r"/api/notifications/broadcast", BroadcastHandler),
        (r"/api/notifications/history", HistoryHandler),
    ]


__all__ = ["default_handlers"]
