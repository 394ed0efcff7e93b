"""Restart a server through the hub: stop it (proxy route removed), then spawn again.

``POST /hub/api/users/{name}/restart-server`` (default server) and
``POST /hub/api/users/{name}/servers/{server}/restart-server`` (named server).

A restart is the hub's own stop followed by the hub's own spawn with the
previous ``user_options``, so everything a spawn decides (group overrides,
image, volume set, environment) is decided again. A ``docker restart`` would
apply nothing and, with ``remove=True``, can delete the container.

Answers: 200 the server is back and ready; 202 it is stopped and the new
spawn is still pending (follow ``progress_url`` or poll the server model);
400 the server is not running (start it instead); 409 a start, stop or
restart of it is already under way; 500 it stopped but could not start.
"""

from __future__ import annotations

import json
import time
from typing import Any

from jupyterhub.scopes import needs_scope
from tornado import web

from jupyterhub_ext import hubcompat
from jupyterhub_ext.audit import audit
from jupyterhub_ext.handlers._common import ExtAPIHandler, actor_name, find_server, target_label

ACTION = "restart-server"

# (hub user id, server name) of restarts between their stop and their spawn.
# In that gap the server is neither pending nor ready; a volume reset or a
# second restart must still be refused.
_restarting: set[tuple[int, str]] = set()


def restart_in_progress(user_id: int, server_name: str | None = None) -> bool:
    """Whether a restart of this user's server (any server if None) is under way."""
    return any(
        uid == user_id and (server_name is None or name == server_name) for uid, name in _restarting
    )


class RestartServerAPIHandler(ExtAPIHandler):
    """Stop a running server through the hub and spawn it again."""

    ACTION = ACTION

    def _refuse(self, status: int, message: str, user_name: str, server_name: str) -> None:
        self.refuse(status, message, target_label(user_name, server_name), reason=message)

    @needs_scope("servers")
    async def post(self, user_name: str, server_name: str = "") -> None:
        user, spawner = find_server(self, user_name, server_name)
        self.check_can_restart(user, spawner, server_name)
        key = (user.id, server_name)
        tic = time.perf_counter()
        _restarting.add(key)
        try:
            await self._stop(user, spawner, server_name)
            await self._spawn_again(user, server_name)
        finally:
            _restarting.discard(key)
        spawner = user.spawners[server_name]
        pending = self._audit_outcome(user, spawner, server_name, tic)
        self.set_status(202 if pending else 200)
        self.write(
            json.dumps(
                {
                    "status": "pending" if pending else "ready",
                    "server": self.server_model(spawner, user=user),
                }
            )
        )

    def check_can_restart(self, user: Any, spawner: Any, server_name: str) -> None:
        label = f"Server {target_label(user.name, server_name)}"
        if (user.id, server_name) in _restarting:
            self._refuse(409, f"{label} is already restarting.", user.name, server_name)
        if spawner.pending:
            self._refuse(
                409,
                f"{label} is busy ({spawner.pending} pending); try again when it is done.",
                user.name,
                server_name,
            )
        if not spawner.ready:
            self._refuse(400, f"{label} is not running; start it instead.", user.name, server_name)

    async def _stop(self, user: Any, spawner: Any, server_name: str) -> None:
        actor, target = actor_name(self), target_label(user.name, server_name)
        label = f"Server {target}"
        try:
            stop_future = await self.stop_single_user(user, server_name)
            # stop_single_user returns early for slow stops; wait for all of it
            await stop_future
        except Exception as e:
            audit(actor, ACTION, target, "failed", stage="stop", error=str(e))
            raise web.HTTPError(500, f"{label} could not be stopped: {e}") from e
        if spawner.active:
            audit(actor, ACTION, target, "failed", stage="stop", error="still active")
            raise web.HTTPError(500, f"{label} did not stop; try again or ask an admin.")

    async def _spawn_again(self, user: Any, server_name: str) -> None:
        actor, target = actor_name(self), target_label(user.name, server_name)
        label = f"Server {target}"
        try:
            # options=None: the hub reuses the options of the previous start
            await self.spawn_single_user(user, server_name, options=None)
        except RuntimeError as e:
            # someone started it in the moment between our stop and our spawn
            audit(actor, ACTION, target, "refused", stage="start", error=str(e))
            raise web.HTTPError(409, f"{label} was stopped; {e}") from e
        except web.HTTPError as e:
            audit(actor, ACTION, target, "failed", stage="start", error=e.log_message)
            raise
        except Exception as e:
            audit(actor, ACTION, target, "failed", stage="start", error=str(e))
            raise web.HTTPError(500, f"{label} was stopped but could not start again: {e}") from e

    def _audit_outcome(self, user: Any, spawner: Any, server_name: str, tic: float) -> bool:
        """One audit line with the result; whether the new spawn is still pending."""
        actor, target = actor_name(self), target_label(user.name, server_name)
        pending = spawner.pending == "spawn"
        future = hubcompat.spawn_future(spawner) if pending else None
        if future is not None:
            # the final result, when the spawn finishes
            def _done(f: Any) -> None:
                err = None if f.cancelled() else f.exception()
                audit(
                    actor,
                    ACTION,
                    target,
                    "ok" if err is None else "failed",
                    seconds=round(time.perf_counter() - tic, 1),
                    **({"error": str(err)} if err else {}),
                )

            future.add_done_callback(_done)
        elif not spawner.ready:
            # the spawn failed fast; the hub keeps the reason on the spawner
            audit(actor, ACTION, target, "failed", stage="start")
            raise web.HTTPError(500, f"Server {target} was stopped but did not start again.")
        else:
            audit(actor, ACTION, target, "ok", seconds=round(time.perf_counter() - tic, 1))
        return pending
