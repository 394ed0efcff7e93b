"""Admin rename: ``PATCH /hub/api/users/{name}/rename``, its status, and the page ``/hub/rename``.

The work is done by :mod:`jupyterhub_ext.rename.runner`; here are the HTTP rules:
``admin:users`` on the user (scope-filtered like JupyterHub's own user API),
400 for an invalid or unchanged name, 404 for an unknown user, 409 when the
name is taken (hub user, NativeAuthenticator sign-up, volumes or a container
under the new names, another rename holding it), a setting names the user
(``admin_users``, ``allowed_users``, ``load_roles``, ``load_groups``, a
role's ``!user=`` scope filter) or a server of the user runs or is pending.
A rename that passes answers 202 with the job; ``GET`` on the same path
reports it; ``DELETE`` cancels it before its commit point (rolled back).
"""

from __future__ import annotations

import json
from typing import Any

from jupyterhub import orm
from jupyterhub import scopes as hub_scopes
from jupyterhub.handlers import BaseHandler
from jupyterhub.scopes import needs_scope
from jupyterhub.utils import url_path_join
from tornado import web
from tornado.escape import url_escape

from jupyterhub_ext.audit import audit
from jupyterhub_ext.handlers._common import ExtAPIHandler, actor_name, status_of
from jupyterhub_ext.locks import user_lock
from jupyterhub_ext.rename import runner
from jupyterhub_ext.rename.journal import COMMITTED, DONE, RenameJob, ensure_schema, latest_job


class RenameAPIHandler(ExtAPIHandler):
    """Rename a user with their login and data; report a rename's progress."""

    ACTION = "rename-user"

    def _status_url(self, name: str, job: RenameJob) -> str:
        # the name may hold any printable character: escape it for the path
        path = url_path_join(self.hub.base_url, "api/users", url_escape(name, plus=False), "rename")
        return f"{path}?id={url_escape(job.key)}"

    def _accepted(self, job: RenameJob) -> None:
        self.set_status(202)
        self.set_header("Location", self._status_url(job.new_name, job))
        self.write(json.dumps(runner.job_model(job)))

    def _refuse(self, status: int, message: str, target: str, **details: Any) -> None:
        self.refuse(status, message, target, **details)

    def _new_name_from_body(self) -> Any:
        body = self.get_json_body()
        if not isinstance(body, dict):
            raise web.HTTPError(400, 'Send a JSON object: {"new_name": "..."}')
        unknown = set(body) - {"new_name", "name"}
        if unknown:
            raise web.HTTPError(
                400, f"Unknown field(s) {sorted(unknown)}; only 'new_name' (or 'name') is read."
            )
        return body.get("new_name", body.get("name"))

    @needs_scope("admin:users")
    async def patch(self, user_name: str) -> None:
        ensure_schema(self.db)
        raw = self._new_name_from_body()
        if not isinstance(raw, str) or not raw.strip():
            self._refuse(400, 'Give the new name as {"new_name": "..."}.', user_name)
        target = self.authenticator.normalize_username(raw)
        user = self.find_user(user_name)
        if user is None:
            return self._finish_committed(user_name, target)
        self.check_admin_rule(user)
        again = await self._same_rename_again(user, target)
        if again is not None:
            return self._accepted(again)
        try:
            target = runner.check_new_name(self.db, self.authenticator, user, raw)
        except runner.RenameError as e:
            self._refuse(status_of(e.kind), e.message, user.name, new_name=target)
        self.check_nothing_running(user, target)
        # no await since check_new_name: the name is ours before anyone else's check
        job = runner.reserve(self.db, user, target, actor_name(self))
        plan = await self._plan(user, target, job)
        job = await runner.start_rename(self.db, user, job, plan)
        audit(
            actor_name(self),
            "rename-user",
            job.old_name,
            "started",
            new_name=target,
            job=job.key,
            volumes=[m["old"] for m in plan.moves],
        )
        self._accepted(job)

    def _finish_committed(self, user_name: str, target: str) -> None:
        """No such user: maybe a rename re-issued after a crash past its commit point.

        The user already has the new name then; finish that job (or answer it
        again when done), else 404.
        """
        job = latest_job(self.db, user_name)
        if job is not None and (job.old_name, job.new_name) == (user_name, target):
            if job.state == DONE:
                # already finished (e.g. by hub start): the same answer again
                return self.write(json.dumps(runner.job_model(job)))
            user = self.find_user(target)
            if job.state == COMMITTED and user is not None:
                runner.resume(self.db, user, job)
                return self._accepted(job)
        self._refuse(404, f"No user named {user_name}.", user_name)

    def check_admin_rule(self, user: Any) -> None:
        # JupyterHub's own rule for PATCH /users/{name}
        if user.admin and not self.current_user.admin:
            self._refuse(403, "Only admins can rename other admins.", user.name)

    async def _same_rename_again(self, user: Any, target: str) -> RenameJob | None:
        """The job to resume if this is the rename already under way; settles older ones.

        Another rename of this user in progress is a 409; interrupted renames
        are settled (rolled back or finished) before a new one starts.
        """
        pending = runner.jobs_of(self.db, user)
        if not pending:
            return None
        job = pending[-1]
        if job.new_name == target and (runner.running(job.key) or job.state == COMMITTED):
            runner.resume(self.db, user, job)
            return job
        if any(runner.running(j.key) for j in pending):
            self._refuse(
                409,
                f"A rename of {user.name} to {job.new_name} is in progress (job {job.key}).",
                user.name,
            )
        try:
            async with user_lock(user.id):
                await runner.settle_locked(self.db, user)
        except runner.RenameError as e:
            self._refuse(409, e.message, user.name)
        return None

    def check_nothing_running(self, user: Any, target: str) -> None:
        busy = runner.active_servers(user)
        if busy:
            self._refuse(
                409,
                f"Stop {user.name}'s server(s) first: {', '.join(busy)} running or pending.",
                user.name,
                new_name=target,
            )
        if user_lock(user.id).locked():
            self._refuse(
                409,
                f"{user.name}'s server or volumes are being changed right now; try again.",
                user.name,
                new_name=target,
            )

    async def _plan(self, user: Any, target: str, job: RenameJob) -> runner.Plan:
        """The volumes to move; the reserved name is released if there is nothing to do."""
        try:
            plan = await runner.plan_moves(user, user.name, target, job.key)
        except BaseException:
            runner.release(self.db, job)
            raise
        if plan.conflicts:
            runner.release(self.db, job)
            self._refuse(
                409,
                f"Cannot rename {user.name} to {target}: " + "; ".join(plan.conflicts),
                user.name,
                new_name=target,
            )
        return plan

    @needs_scope("admin:users")
    async def delete(self, user_name: str) -> None:
        """Cancel the user's rename that is still copying; answers the rolled-back job."""
        ensure_schema(self.db)
        user = self.find_user(user_name)
        if user is None:
            raise web.HTTPError(404, f"No user named {user_name}.")
        if user.admin and not self.current_user.admin:
            self._refuse(403, "Only admins can cancel renames of admins.", user.name)
        try:
            job = await runner.cancel(
                self.db, user, actor_name(self), self.get_argument("id", None)
            )
        except runner.RenameError as e:
            status = status_of(e.kind)
            audit(actor_name(self), "cancel-rename", user.name, "refused", status=status)
            raise web.HTTPError(status, e.message) from None
        audit(actor_name(self), "cancel-rename", user.name, job.state, job=job.key)
        self.write(json.dumps(runner.job_model(job)))

    @needs_scope("admin:users")
    async def get(self, user_name: str) -> None:
        ensure_schema(self.db)
        job = latest_job(self.db, user_name, self.get_argument("id", None))
        if job is None:
            raise web.HTTPError(404, f"No rename of {user_name} is recorded.")
        self.write(json.dumps(runner.job_model(job)))


class RenamePageHandler(BaseHandler):
    """``/hub/rename``: pick a user, give the new name, watch the data move."""

    @web.authenticated
    async def get(self) -> None:
        if not hub_scopes.has_scope("admin:users", self.parsed_scopes, post_filter=True):
            raise web.HTTPError(403, "Renaming users needs the admin:users scope.")
        ensure_schema(self.db)
        names = [
            u.name
            for u in self.db.query(orm.User).order_by(orm.User.name)
            if self.has_scope(f"admin:users!user={u.name}")
        ]
        recent = [
            runner.job_model(j)
            for j in self.db.query(RenameJob).order_by(RenameJob.id.desc()).limit(20)
            if self.has_scope(f"admin:users!user={j.new_name}")
            or self.has_scope(f"admin:users!user={j.old_name}")
        ]
        html = await self.render_template(
            "rename.html",
            rename_users=names,
            rename_selected=self.get_argument("user", ""),
            rename_recent=recent,
        )
        self.finish(html)


def handlers() -> list[tuple[str, type]]:
    return [
        (r"/api/users/([^/]+)/rename", RenameAPIHandler),
        (r"/rename", RenamePageHandler),
    ]
