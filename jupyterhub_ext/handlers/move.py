"""Move a user's volumes to another Swarm node (docs/deployment/swarm.md).

``POST /hub/api/users/{name}/move-volumes`` (default server) and
``POST /hub/api/users/{name}/servers/{server}/move-volumes`` (named server),
body ``{"node": "<hostname or node ID>"}``. Needs ``admin:users`` on the
user: an admin's tool, for a node going away or to balance users. The work
is :func:`jupyterhub_ext.swarm.move.move_volumes` (copy, verify, then remove
the originals), under the user's lock with the server stopped.

Answers: 200 moved, ``{"from", "to", "volumes"}``; 400 a bad body, not a
Swarm server, no such node or one that cannot take it; 409 the server runs or
is busy, or something is in the way (a volume of that name on the target);
500 a copy that failed or did not verify, 504 one that did not finish within
``c.ExtSwarmSpawner.swarm_move_timeout`` (the originals are kept, the copies
removed).
"""

from __future__ import annotations

import json
import time
from typing import Any

from jupyterhub.scopes import needs_scope

from jupyterhub_ext.audit import audit
from jupyterhub_ext.handlers._common import ExtAPIHandler, status_of, target_label
from jupyterhub_ext.locks import user_lock
from jupyterhub_ext.swarm import move

ACTION = "move-volumes"


class MoveVolumesAPIHandler(ExtAPIHandler):
    """Move one server's local volumes from its node to another."""

    ACTION = ACTION

    def check_body(self, target: str) -> str:
        body = self.get_json_body()
        node = body.get("node") if isinstance(body, dict) else None
        if not isinstance(node, str) or not node.strip():
            self.refuse(
                400, 'Send {"node": "<hostname or node ID>"}.', target, reason="no node given"
            )
        return node.strip()

    def check_stopped(self, spawner: Any, target: str) -> None:
        if spawner.active or spawner.pending:
            message = f"Stop the server {target} first; its volumes are in use."
            self.refuse(409, message, target, reason=message)

    @needs_scope("admin:users")
    async def post(self, user_name: str, server_name: str = "") -> None:
        user, spawner = self.find_server(user_name, server_name)
        target = target_label(user.name, server_name)
        node = self.check_body(target)
        self.check_stopped(spawner, target)
        tic = time.perf_counter()
        async with user_lock(user.id):
            self.check_stopped(spawner, target)  # nothing starts while we hold the lock
            try:
                result = await move.move_volumes(spawner, node)
            except move.MoveError as e:
                self.refuse(status_of(e.kind), str(e), target, reason=str(e))
            # the node the data is on now: the next start goes there
            spawner.orm_spawner.state = spawner.get_state()
            self.db.commit()
        seconds = round(time.perf_counter() - tic, 1)
        audit(self.actor, ACTION, target, "ok", seconds=seconds, **result.as_json())
        self.write(json.dumps(result.as_json()))
