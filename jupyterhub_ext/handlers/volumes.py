"""List and reset a user's volumes.

``GET|DELETE /hub/api/users/{name}/manage-volumes`` (default server's set) and
``GET|DELETE /hub/api/users/{name}/servers/{server}/manage-volumes`` (a named
server's set; differs from the default one only where names use
``{servername}``).

Authorization: the custom scope ``custom:jupyterhub-ext:manage-volumes``
filtered to the user (every user has it on themself, the
``jupyterhub-ext-admin`` role on everyone). Custom scopes are defined when the
hub starts, after this module is imported, so ``needs_custom_scope`` checks it
per request, with the answers of JupyterHub's ``needs_scope``.

A reset takes the user's lock (the one ``ExtDockerSpawner.start`` holds while
it creates volumes and the container) and, under it, checks that no server of
that user which mounts the chosen volumes is running, pending or restarting.
A start arriving meanwhile waits for the reset and then gets fresh volumes.
"""

from __future__ import annotations

import json
from typing import Any

from jupyterhub.apihandlers.base import APIHandler
from tornado import web

from jupyterhub_ext.audit import audit
from jupyterhub_ext.handlers._common import (
    actor_name,
    find_server,
    needs_custom_scope,
    target_label,
)
from jupyterhub_ext.handlers.restart import restart_in_progress
from jupyterhub_ext.locks import user_lock
from jupyterhub_ext.scopes import MANAGE_VOLUMES
from jupyterhub_ext.storage import volume_ops
from jupyterhub_ext.usage import quota, scan

ACTION = "reset-volumes"


def busy_servers(user: Any, volume_names: set[str]) -> list[str]:
    """Names of this user's servers that are active (or restarting) and mount any of these."""
    busy = []
    for name, spawner in list(user.spawners.items()):
        if not (spawner.active or restart_in_progress(user.id, name)):
            continue
        mounted = getattr(spawner, "volume_names", None)
        # a spawner that cannot tell us its volumes is assumed to mount them
        if mounted is None or set(mounted().values()) & volume_names:
            busy.append(name or "default")
    return busy


def _refuse_if_busy(
    user: Any, chosen: set[str], *, actor: str, target: str, keys: list[str]
) -> None:
    """409, audited, when a server of ``user`` that mounts a chosen volume is up."""
    busy = busy_servers(user, chosen)
    if busy:
        msg = (
            f"Stop these servers of {user.name} first, they use the chosen "
            f"volumes: {', '.join(busy)}"
        )
        audit(actor, ACTION, target, "refused", status=409, volumes=keys, reason=msg)
        raise web.HTTPError(409, msg)


class ManageVolumesAPIHandler(APIHandler):
    """GET: the volume set with existence and size; DELETE: reset chosen volumes."""

    def audit_refusal(self, reason: str, user_name: str, server_name: str = "") -> None:
        action = ACTION if self.request.method == "DELETE" else "list-volumes"
        target = target_label(user_name, server_name)
        audit(actor_name(self), action, target, "refused", reason=f"{reason} on this user")

    def _spawner_volumes(self, spawner: Any) -> tuple[list, dict[str, str]]:
        if not hasattr(spawner, "volume_specs"):
            raise web.HTTPError(
                400, "This hub's spawner has no volume set (use jupyterhub_ext's ExtDockerSpawner)."
            )
        return spawner.volume_specs, spawner.volume_names()

    @needs_custom_scope(MANAGE_VOLUMES, per_user=True)
    async def get(self, user_name: str, server_name: str = "") -> None:
        user, spawner = find_server(self, user_name, server_name)
        specs, names = self._spawner_volumes(spawner)
        volumes = await volume_ops.list_volumes(
            spawner.volume_engine(),
            specs,
            names,
            pool_size=spawner.docker_pool_size,
            refusal=spawner.volume_refusal,
        )
        busy = busy_servers(user, {names[s.key] for s in specs if s.resettable})
        self.write(
            json.dumps(
                {
                    "user": user.name,
                    "server_name": server_name,
                    "volumes": volumes,
                    # volumes with a quota: key -> state, sizes from the last usage scan
                    "quota": quota.report(specs, scan.snapshot().user_volumes.get(user.name, {})),
                    # servers that must be stopped before a reset is possible
                    "blocking_servers": busy,
                }
            )
        )

    @needs_custom_scope(MANAGE_VOLUMES, per_user=True)
    async def delete(self, user_name: str, server_name: str = "") -> None:
        user, spawner = find_server(self, user_name, server_name)
        actor, target = actor_name(self), target_label(user.name, server_name)
        specs, names = self._spawner_volumes(spawner)
        try:
            keys = volume_ops.parse_reset_request(self.get_json_body(), specs)
        except volume_ops.ResetRequestError as e:
            audit(actor, ACTION, target, "refused", status=400, reason=str(e))
            raise web.HTTPError(400, str(e)) from e
        chosen = {names[k] for k in keys}
        # answer at once instead of queueing behind a start
        _refuse_if_busy(user, chosen, actor=actor, target=target, keys=keys)
        async with user_lock(user.id):
            # what counts: nothing can start while we hold the lock
            _refuse_if_busy(user, chosen, actor=actor, target=target, keys=keys)
            self.log.info("Resetting volumes %s of %s (holding the user lock)", keys, target)
            results = await volume_ops.reset_volumes(
                spawner.volume_engine(),
                [(k, names[k]) for k in keys],
                owner=spawner.owner(),
                adopt_unlabelled=getattr(spawner, "adopt_unlabelled", False),
                pool_size=spawner.docker_pool_size,
            )
        # a reset volume is empty: no quota refusal from its old size
        scan.forget(user.name, [r.key for r in results if r.ok])
        self._audit_reset(actor, target, results)
        self._write_reset_results(user.name, server_name, results)

    def _audit_reset(self, actor: str, target: str, results: list[volume_ops.ResetResult]) -> None:
        ok = all(r.ok for r in results)
        audit(
            actor,
            ACTION,
            target,
            "ok" if ok else "failed",
            volumes={r.key: r.status for r in results},
            seconds=round(self.request.request_time(), 3),
            **({} if ok else {"errors": {r.key: r.message for r in results if not r.ok}}),
        )

    def _write_reset_results(
        self, user_name: str, server_name: str, results: list[volume_ops.ResetResult]
    ) -> None:
        ok = all(r.ok for r in results)
        # a volume that is not this user's is a refusal (409), not a server fault
        refused_only = all(r.ok or r.status == "refused" for r in results)
        self.set_status(200 if ok else 409 if refused_only else 500)
        self.write(
            json.dumps(
                {
                    "user": user_name,
                    "server_name": server_name,
                    "ok": ok,
                    "message": "Volumes reset; the next start creates them empty."
                    if ok
                    else "Some volumes could not be reset; see each volume's message.",
                    "volumes": [r.as_json() for r in results],
                }
            )
        )
