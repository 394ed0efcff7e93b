"""Keep running: move a server's idle deadline (docs/features/culling.md).

``POST /hub/api/users/{name}/keep-running`` (default server) and
``POST /hub/api/users/{name}/servers/{server}/keep-running`` (named server)
need the ``servers`` scope on that user (every user has it on themself).
Answers 200 with the new deadline; 400 the server is not running; 409 no
extensions are left (the message says so); 404 the culler is not enabled
(``GET`` then answers ``{"enabled": false}``).

``GET`` on the same routes (``read:servers``) gives each running server's
deadline and extensions left and the notes of servers stopped for
inactivity: the home page shows them.
"""

from __future__ import annotations

import json
import time

from jupyterhub.scopes import needs_scope
from tornado import web

from jupyterhub_ext import culler
from jupyterhub_ext.audit import audit
from jupyterhub_ext.handlers._common import ExtAPIHandler, actor_name, find_server, target_label

ACTION = "keep-running"


def _enabled() -> culler.CullerConfig:
    cfg = culler.config()
    if cfg is None:
        raise web.HTTPError(
            404, "Idle culling is not enabled on this hub (c.CullerConfig.enabled)."
        )
    return cfg


class KeepRunningAPIHandler(ExtAPIHandler):
    """Extend a running server's idle deadline; list deadlines and cull notes."""

    ACTION = ACTION

    @needs_scope("read:servers")
    async def get(self, user_name: str, server_name: str = "") -> None:
        user = self.find_user(user_name)
        if user is None:
            raise web.HTTPError(404, f"No such user: {user_name}")
        cfg = culler.config()
        if cfg is None:
            # the home page asks on every visit: no 404 in the hub's log for it
            self.write(json.dumps({"enabled": False, "servers": {}, "culled": {}, "warning": 0}))
            return
        servers = {}
        for name in sorted(user.orm_spawners):
            info = culler.server_info(user.spawners[name], cfg)
            if info is not None:
                servers[name] = info
        notes = dict(culler.state().notes.get(user.name, {}))
        self.write(
            json.dumps(
                {"enabled": True, "servers": servers, "culled": notes, "warning": cfg.warning}
            )
        )

    @needs_scope("servers")
    async def post(self, user_name: str, server_name: str = "") -> None:
        cfg = _enabled()
        user, spawner = find_server(self, user_name, server_name)
        actor, target = actor_name(self), target_label(user.name, server_name)
        info = culler.server_info(spawner, cfg)
        if info is None or spawner.pending:
            message = f"Server {target} is not running; there is nothing to keep."
            self.refuse(400, message, target, reason="not running")
        if info["deadline"] is None:
            raise web.HTTPError(
                400, f"Server {target} is never stopped for inactivity (its timeout is 0)."
            )
        started = culler._ts(spawner.orm_spawner.started) or 0.0
        try:
            ext = culler.state().keep_running(
                user.name, server_name, started, time.time(), info["deadline"], cfg
            )
        except culler.NoExtensionsLeft as e:
            self.refuse(409, str(e), target, reason="no extensions left")
        audit(actor, ACTION, target, "ok", extensions_used=ext.used)
        self.write(json.dumps({"server": server_name, **culler.server_info(spawner, cfg)}))
