"""Rename a hub user together with their login and their data: plan, journal, copy, finish.

No Tornado here; handlers, the spawner and hub start-up call in.

A rename through our API runs in two phases around one commit point:

1. ``copying``: every per-user volume is copied to its name under the new
   username (new volume, same labels with the owner name updated, plus the job
   key), and the copy is verified. The old volumes are untouched.
2. One database transaction: the hub's user row, NativeAuthenticator's
   ``users_info`` row (by the listener in :mod:`rename_db`), the spawners'
   state and the journal row (now ``committed``).
3. Old stopped containers and the old volumes are removed; ``done``.

After a crash the journal row and the user row agree on which side of the
commit point we were: ``copying`` rolls back (the helper containers and the new
volumes carrying this job's key are removed; the old data never changed);
``committed`` goes forward (copies not yet verified are redone, then the old
volumes are removed). That happens when the rename is re-run, at hub start,
and at the user's next spawn, always under the user's lock.

The new name is reserved by the journal row from the moment a rename is
accepted (``reserve``, with no ``await`` between the name checks and the
insert): sign-ups, user creation and other renames to it are refused until
the job ends. Before the commit point an admin can cancel (``cancel``) and
the copy phase has a deadline; both roll back. Renaming away from a name that
a setting grants to (``privileged_settings``) is refused.

A rename made outside our API (JupyterHub's own PATCH or admin page) gets a
``committed`` journal row from the listener; its volumes - found by name and
by the owner-id + owner-name labels - are moved right after the commit when
no server of the user runs, or at the next spawn.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from jupyterhub_ext import hubcompat
from jupyterhub_ext.accounts import usernames
from jupyterhub_ext.audit import audit
from jupyterhub_ext.engine import APIClient, calls, dockerpool, ownership
from jupyterhub_ext.engine.errors import NotFound
from jupyterhub_ext.engine.labels import (
    LABEL_KEY,
    LABEL_OWNER_ID,
    LABEL_OWNER_NAME,
    LABEL_RENAME_JOB,
    LABEL_SERVER_NAME,
)
from jupyterhub_ext.locks import user_lock
from jupyterhub_ext.rename import journal, volcopy
from jupyterhub_ext.rename.journal import (
    ABANDONED,
    COMMITTED,
    COPYING,
    DONE,
    OWN_RENAME,
    ROLLED_BACK,
    UNFINISHED,
    RenameJob,
    belongs_to,
    ensure_schema,
    native_row_taken,
    new_key,
    reserved_message,
    unfinished_jobs,
    user_stamp,
)
from jupyterhub_ext.spawner import hooks

# a child of the hub's own logger, so lines show up formatted in the hub log
log = logging.getLogger("jupyterhub_ext.rename.runner")

# Test-only fault injection: a file listing checkpoints (one a line) at which
# the hub kills itself or holds the copy, so crash recovery can be tested
# deterministically. Unset in production; nothing is read then.
FAULTS_ENV = "JUPYTERHUB_EXT_RENAME_FAULTS"

# move states
PLANNED, COPIED, VERIFIED, REMOVED = "planned", "copied", "verified", "removed"

# How long the copy phase of one rename may take before it is rolled back
# (ExtDockerSpawner.rename_timeout overrides it).
DEFAULT_TIMEOUT = 6 * 3600.0


class RenameError(Exception):
    """A rename that cannot go ahead.

    ``kind`` says why, in words a caller maps to its own answer (the handlers
    map it to an HTTP status): ``invalid`` (the request), ``not-found``,
    ``conflict`` (a name, a server or another rename is in the way) or
    ``failed`` (the engine or the data).
    """

    KINDS = ("invalid", "not-found", "conflict", "failed")

    def __init__(self, kind: str, message: str) -> None:
        if kind not in self.KINDS:
            raise ValueError(f"unknown refusal kind {kind!r}")
        super().__init__(message)
        self.kind = kind
        self.message = message


class ServersRunning(RenameError):
    """Data of a committed rename cannot move while a server uses it: not a failure."""


def describe(e: BaseException) -> str:
    """A message for the journal and the page."""
    if isinstance(e, RenameError):
        return e.message
    if getattr(e, "log_message", None):  # tornado HTTPError, e.g. RenameConflict
        return str(e.log_message)
    return f"{type(e).__name__}: {e}"


# -- naming -------------------------------------------------------------------


def _is_ext_spawner(spawner: Any) -> bool:
    return hasattr(spawner, "volume_specs") and hasattr(spawner, "template_namespace")


def namespace(spawner: Any, user_name: str, server_name: str | None = None) -> dict[str, str]:
    """The spawner's template namespace as it would be for ``user_name``."""
    ns = dict(spawner.template_namespace())
    escaped = spawner.escape(user_name)
    ns.update(username=escaped, safe_username=escaped, raw_username=user_name)
    if server_name is not None:
        ns.update(servername=spawner.escape(server_name.lower()), raw_servername=server_name)
    return ns


def container_name(spawner: Any, user_name: str) -> str:
    return spawner.name_template.format(**namespace(spawner, user_name))


_MARK = "\x00"


def static_head(template: str, ns: dict[str, str]) -> str:
    """The part of a rendered name that comes before the user name.

    Labels are not unique to one hub: two hubs on one engine both have a user
    id 2. Objects found by owner labels are only ours if their name starts
    with this (e.g. ``jupyterhub-user-`` or ``{prefix}-``).
    """
    marked = {**ns, "username": _MARK, "safe_username": _MARK, "raw_username": _MARK}
    return template.format(**marked).split(_MARK, 1)[0]


@dataclass
class Plan:
    """What a rename moves; ``to_json`` goes into the journal."""

    moves: list[dict[str, Any]] = field(default_factory=list)
    containers: list[str] = field(default_factory=list)
    left: list[dict[str, str]] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "planned": True,
            "moves": self.moves,
            "containers": self.containers,
            "left": self.left,
            "note": self.note,
        }


def plan_moves_pure(
    template_moves: Iterable[dict[str, Any]],
    labelled: Iterable[dict[str, Any]],
    resolve_label: Callable[[dict[str, str]], tuple[str, str, str] | None],
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Combine moves from the name templates with volumes found by owner labels.

    ``template_moves``: ``{key, server, old, new}`` from rendering the volume
    set for both names. ``labelled``: Docker volume records owned by the user
    under the old name. ``resolve_label(labels)`` gives ``(key, server, new
    name)`` for a labelled volume, or None when its key is not in the set.
    Returns (moves, volumes left in place with the reason).
    """
    moves: dict[str, dict[str, Any]] = {}
    for m in template_moves:
        if m["old"] != m["new"]:
            moves.setdefault(m["old"], dict(m))
    left: list[dict[str, str]] = []
    for vol in labelled:
        name = vol["Name"]
        if name in moves:
            continue
        resolved = resolve_label(vol.get("Labels") or {})
        if resolved is None:
            key = (vol.get("Labels") or {}).get(LABEL_KEY, "?")
            left.append({"name": name, "reason": f"key {key!r} is not in the volume set"})
            continue
        key, server, new = resolved
        if new != name:
            moves[name] = {"key": key, "server": server, "old": name, "new": new}
    return sorted(moves.values(), key=lambda m: (m["key"], m["server"], m["old"])), left


def _spawners(user: Any) -> list[Any]:
    if not user.orm_spawners:
        return [user.spawner]  # creates the default server's record, as the home page does
    return [user.spawners[name] for name in sorted(user.orm_spawners)]


async def plan_moves(user: Any, old_name: str, new_name: str, job_key: str = "") -> Plan:
    """Every volume and container of ``user`` that the rename old -> new touches.

    Conflicts (a new name already used by something that is not this job's)
    are listed in ``plan.conflicts``; nothing is changed here.
    """
    plan = Plan()
    spawners = [sp for sp in _spawners(user) if _is_ext_spawner(sp)]
    if not spawners:
        plan.note = "the spawner is not ExtDockerSpawner: no volumes are moved"
        return plan
    api = spawners[0].volume_engine()
    ours = await _labelled_volumes(api, user, spawners, old_name)
    moves, plan.left = plan_moves_pure(
        _template_moves(spawners, old_name, new_name), ours, _resolver(spawners, new_name)
    )
    checks = {
        "owner": ownership.Owner.of(user),
        "unfinished_jobs": (
            unfinished_job_keys(user.db) - {job_key} if getattr(user, "db", None) else set()
        ),
        "adopt_unlabelled": any(getattr(sp, "adopt_unlabelled", False) for sp in spawners),
    }
    for move in moves:
        old = await calls.volume_or_none(api, move["old"])
        if old is None:
            continue  # never created: nothing to move
        plan.conflicts += await _move_conflicts(api, move, old, job_key, checks)
        move.update(state=PLANNED, bytes=None, driver=old.get("Driver") or "local")
        move["labels"] = dict(old.get("Labels") or {})
        # Driver options are NOT journalled: Docker reports them resolved
        # (passwords of secret driver options included). The copy reads them
        # from the source volume when it creates the target.
        plan.moves.append(move)
    await _plan_containers(api, user, spawners, old_name, new_name, plan)
    return plan


def _template_moves(spawners: list[Any], old_name: str, new_name: str) -> list[dict[str, str]]:
    """Old and new name of each per-user volume of the users' volume sets."""
    return [
        {
            "key": spec.key,
            "server": sp.name if "{servername}" in spec.name else "",
            "old": spec.render_name(namespace(sp, old_name)),
            "new": spec.render_name(namespace(sp, new_name)),
        }
        for sp in spawners
        for spec in sp.volume_specs
        if spec.per_user
    ]


def _resolver(spawners: list[Any], new_name: str) -> Any:
    """(key, server, new volume name) for a labelled volume of ours, or None."""
    by_server = {sp.name: sp for sp in spawners}

    def resolve(labels: dict[str, str]) -> tuple[str, str, str] | None:
        server = labels.get(LABEL_SERVER_NAME, "")
        sp = by_server.get(server, spawners[0])
        spec = next((s for s in sp.volume_specs if s.key == labels.get(LABEL_KEY)), None)
        if spec is None or not spec.per_user:
            return None
        return spec.key, server, spec.render_name(namespace(sp, new_name, server))

    return resolve


async def _labelled_volumes(
    api: Any, user: Any, spawners: list[Any], old_name: str
) -> list[dict[str, Any]]:
    """Volumes labelled for this user, of this hub only (named like one of our templates)."""
    heads = {
        static_head(spec.name, namespace(sp, old_name))
        for sp in spawners
        for spec in sp.volume_specs
        if spec.per_user
    }
    found = await calls.call(
        api,
        "volumes",
        filters={"label": [f"{LABEL_OWNER_ID}={user.id}", f"{LABEL_OWNER_NAME}={old_name}"]},
    )
    return [v for v in found.get("Volumes") or [] if any(v["Name"].startswith(h) for h in heads)]


async def _move_conflicts(
    api: Any, move: dict[str, Any], old: dict[str, Any], job_key: str, checks: dict[str, Any]
) -> list[str]:
    """Why this volume cannot move: external storage, not this user's, target taken."""
    conflicts = []
    if "device" in (old.get("Options") or {}):
        conflicts.append(
            f"volume {move['old']} is bound to external storage; "
            "copying it would not move the data. Move it by hand."
        )
    # only this user's own volumes are moved (one rule: ownership.py)
    why = ownership.volume_refusal(move["old"], old.get("Labels"), scope="user", **checks)
    if why:
        conflicts.append(why)
    new = await calls.volume_or_none(api, move["new"])
    if new is not None and (new.get("Labels") or {}).get(LABEL_RENAME_JOB) != job_key:
        conflicts.append(f"a volume named {move['new']} already exists")
    return conflicts


async def _plan_containers(
    api: Any, user: Any, spawners: list[Any], old_name: str, new_name: str, plan: Plan
) -> None:
    """The user's stopped containers (renamed with them); running ones and taken names conflict."""
    names = {container_name(sp, old_name) for sp in spawners}
    for name in sorted(names):
        if await calls.container_or_none(api, name) is not None:
            plan.containers.append(name)
    labelled = await calls.call(
        api,
        "containers",
        all=True,
        filters={"label": [f"{LABEL_OWNER_ID}={user.id}", f"{LABEL_OWNER_NAME}={old_name}"]},
    )
    container_heads = {static_head(sp.name_template, namespace(sp, old_name)) for sp in spawners}
    for c in labelled:
        name = c["Names"][0].lstrip("/")
        if name not in plan.containers and any(name.startswith(h) for h in container_heads):
            plan.containers.append(name)
    for name in plan.containers:
        info = await calls.container_or_none(api, name)
        if info and info["State"].get("Running"):
            plan.conflicts.append(f"container {name} of {old_name} is running")
    for sp in spawners:
        new_container = container_name(sp, new_name)
        if await calls.container_or_none(api, new_container) is not None:
            plan.conflicts.append(f"a container named {new_container} already exists")


# -- checks the API makes before it starts ------------------------------------------


def active_servers(user: Any, except_spawner: Any = None) -> list[str]:
    """Names of the user's servers that run or have something pending."""
    out = []
    for name, orm_sp in user.orm_spawners.items():
        if except_spawner is not None and name == except_spawner.name:
            continue
        sp = hubcompat.cached_spawner(user, name)
        if orm_sp.server is not None or (sp is not None and (sp.active or sp.pending)):
            out.append(name or "(default)")
    return out


def _filter_names_user(scope: str, name: str) -> bool:
    """Whether a scope string's filter names the user ``name`` (``!user=`` / ``!server=``)."""
    _, sep, filt = scope.partition("!")
    if not sep:
        return False
    kind, _, value = filt.partition("=")
    return (kind == "user" and value == name) or (
        kind == "server" and value.split("/", 1)[0] == name
    )


def privileged_settings(
    db: Session, name: str, authenticator: Any = None, app: Any = None
) -> list[str]:
    """Settings that grant something to the user NAME ``name`` (not to the user id).

    Renaming the user away from such a name would hand the grant to whoever
    next signs up or logs in under it: NativeAuthenticator pre-authorizes
    ``admin_users`` and ``allowed_users`` names and JupyterHub makes an
    ``admin_users`` name admin; ``load_roles`` / ``load_groups`` re-assign
    by name at every start; a scope filter ``!user=<name>`` is by name.
    Role and group membership in the database is by id and moves with the
    user: it is not listed.
    """
    from jupyterhub import orm

    if app is None:
        from jupyterhub.app import JupyterHub

        app = JupyterHub.instance() if JupyterHub.initialized() else None
    if authenticator is None and app is not None:
        authenticator = getattr(app, "authenticator", None)
    found = []
    for setting in ("admin_users", "allowed_users"):
        if name in (getattr(authenticator, setting, None) or ()):
            found.append(f"c.Authenticator.{setting} lists {name}")
    for role in getattr(app, "load_roles", None) or []:
        if name in (role.get("users") or ()):
            found.append(f"the role {role.get('name')!r} in c.JupyterHub.load_roles lists {name}")
    for group, spec in (getattr(app, "load_groups", None) or {}).items():
        members = spec if isinstance(spec, list) else (spec or {}).get("users") or ()
        if name in members:
            found.append(f"the group {group!r} in c.JupyterHub.load_groups lists {name}")
    with db.no_autoflush:
        for role in db.query(orm.Role):
            hits = [sc for sc in role.scopes or () if _filter_names_user(sc, name)]
            if hits:
                found.append(f"the role {role.name!r} has scope(s) {', '.join(hits)}")
    return found


def privilege_refusal(db: Session, name: str, authenticator: Any = None) -> str | None:
    """Why the user called ``name`` must not be renamed, or None (see privileged_settings)."""
    found = privileged_settings(db, name, authenticator)
    if not found:
        return None
    return (
        f"{'; '.join(found)}. Renaming {name} would hand that to whoever next signs up "
        f"or logs in as {name}. Take {name} out of the setting(s) first (and add the new "
        "name there after the rename, if it should keep them)."
    )


def rename_refusal(db: Session, old: str, new: str, authenticator: Any = None) -> str | None:
    """Why renaming ``old`` to ``new`` is refused by a grant by name, or None.

    Both directions: leaving a granted name hands the grant to the next
    person to claim it; taking one hands it to the renamed user, so a
    delegated ``admin:users`` role could make someone admin by a rename.
    Used by our rename API and by JupyterHub's own ``PATCH /users/{name}``.
    """
    why = privilege_refusal(db, old, authenticator)
    if why:
        return f"Cannot rename {old}: {why}"
    granted = privileged_settings(db, new, authenticator)
    if granted:
        return (
            f"Cannot rename {old} to {new}: {'; '.join(granted)}, so the rename "
            f"would hand that to {old}. Grant it explicitly instead."
        )
    return None


def check_new_name(db: Session, authenticator: Any, user: Any, raw: Any) -> str:
    """The normalized new name, or RenameError 400/409 saying what is wrong."""
    if not isinstance(raw, str) or not raw.strip():
        raise RenameError(
            "invalid", 'Give the new name as {"new_name": "..."} (a non-empty string).'
        )
    new_name = authenticator.normalize_username(raw)
    if new_name == user.name:
        raise RenameError("invalid", f"{user.name} is already called {new_name!r}.")
    try:
        usernames.check(new_name)
    except ValueError as e:
        raise RenameError("invalid", str(e)) from None
    if not authenticator.validate_username(new_name):
        raise RenameError(
            "invalid", f"{new_name!r} is not a valid user name for this hub's authenticator."
        )
    from jupyterhub import orm

    if orm.User.find(db, new_name) is not None:
        raise RenameError("conflict", f"A user named {new_name} already exists.")
    if native_row_taken(db, new_name):
        raise RenameError(
            "conflict",
            f"NativeAuthenticator already has a sign-up for {new_name}; "
            "discard it on /hub/authorize first.",
        )
    job = reserved(db, new_name)
    if job is not None:
        raise RenameError("conflict", reserved_message(new_name, job))
    why = rename_refusal(db, user.name, new_name, authenticator)
    if why:
        raise RenameError("conflict", why)
    return new_name


def unfinished_job_keys(db: Session) -> set[str]:
    """Keys of every rename job not finished yet (volumes with these labels are never mounted)."""
    ensure_schema(db)
    rows = db.query(RenameJob.key).filter(RenameJob.state.in_(UNFINISHED)).all()
    return {key for (key,) in rows}


def reserved(db: Session, name: str) -> RenameJob | None:
    """The unfinished rename that holds ``name`` (its new name, or its old one), or None."""
    return journal.reserved(db, name)


# -- live progress and running jobs ------------------------------------------------------

_tasks: dict[str, asyncio.Task] = {}
_progress: dict[str, dict[str, Any]] = {}
# jobs reserved by a request that is still planning them (no task yet)
_planning: set[str] = set()
# why a job's task was cancelled (by an admin), read by the task itself
_cancelled: dict[str, str] = {}


def running(key: str) -> bool:
    if key in _planning:
        return True
    task = _tasks.get(key)
    return task is not None and not task.done()


def api_job_running(db: Session, user_id: int, created: str | None = None) -> RenameJob | None:
    """An API rename of this user that is copying right now, in this process."""
    for job in unfinished_jobs(db, user_id, created):
        if job.state == COPYING and running(job.key):
            return job
    return None


def jobs_of(db: Session, user: Any) -> list[RenameJob]:
    """Unfinished jobs made for this very user (not an earlier user with the same id)."""
    return unfinished_jobs(db, user.id, user_stamp(user))


def progress(key: str) -> dict[str, Any]:
    return dict(_progress.get(key, {}))


def job_model(job: RenameJob) -> dict[str, Any]:
    model = job.model()
    model["running"] = running(job.key)
    model["progress"] = progress(job.key)
    return model


def _spawn(key: str, user_id: int, coro: Any) -> asyncio.Task:
    task = asyncio.ensure_future(coro)
    _tasks[key] = task

    def done(t: asyncio.Task) -> None:
        if _tasks.get(key) is t:
            _tasks.pop(key, None)
        if not t.cancelled() and t.exception() is not None:
            log.error("rename job %s ended with an error", key, exc_info=t.exception())

    task.add_done_callback(done)
    return task


def _faults() -> set[str]:
    path = os.environ.get(FAULTS_ENV)
    if not path:
        return set()
    try:
        with open(path) as f:
            return {line.strip() for line in f if line.strip()}
    except OSError:
        return set()


def _crash_point(point: str) -> None:
    if point in _faults():
        log.warning("fault injection: killing the hub at %s", point)
        os.kill(os.getpid(), signal.SIGKILL)


# -- the steps ----------------------------------------------------------------------------


def _set_plan(job: RenameJob, **changes: Any) -> None:
    plan = dict(job.plan or {})
    plan.update(changes)
    job.plan = plan  # a new dict, so SQLAlchemy sees the change


def _set_move(job: RenameJob, index: int, **changes: Any) -> None:
    moves = [dict(m) for m in (job.plan or {}).get("moves", [])]
    moves[index].update(changes)
    _set_plan(job, moves=moves)


def _helper_name(spawner_prefix: str, key: str, index: int, step: str) -> str:
    return f"{spawner_prefix}-rename-{key}-{index}-{step}"


@dataclass
class _Ctx:
    db: Session
    api: APIClient
    image: str
    prefix: str
    timeout: float = DEFAULT_TIMEOUT


def _context(db: Session, user: Any) -> _Ctx:
    spawners = [sp for sp in _spawners(user) if _is_ext_spawner(sp)] if user is not None else []
    if spawners:
        sp = spawners[0]
        return _Ctx(
            db,
            sp.volume_engine(),
            getattr(sp, "helper_image", "") or sp.image,
            sp.prefix,
            float(getattr(sp, "rename_timeout", DEFAULT_TIMEOUT) or DEFAULT_TIMEOUT),
        )
    return _Ctx(db, dockerpool.client(), "", "jupyter")


async def _create_target(ctx: _Ctx, job: RenameJob, move: dict[str, Any]) -> None:
    """Create the empty target volume and prove it is this job's own.

    Docker's create returns an existing volume of the same name without a
    word, so a volume someone made between our check and our create would be
    copied into (and later handed over). After creating, its job label must
    be ours, or the move stops with nothing of theirs touched.
    """
    source = await calls.volume_or_none(ctx.api, move["old"])
    if source is None:
        raise RenameError("failed", f"volume {move['old']} disappeared before it was copied")
    labels = dict(move.get("labels") or {})
    if LABEL_OWNER_NAME in labels or LABEL_OWNER_ID in labels:
        labels[LABEL_OWNER_NAME] = job.new_name
        labels[LABEL_OWNER_ID] = str(job.user_id)
    labels[LABEL_RENAME_JOB] = job.key
    if hasattr(ctx.api, "node_labels"):
        # a Swarm node's volume: say which node holds it (older volumes lack it)
        labels.update(await calls.call(ctx.api, "node_labels"))
    created = await calls.call(
        ctx.api,
        "create_volume",
        name=move["new"],
        driver=move.get("driver") or "local",
        # read from the source now, never from the journal (see plan_moves)
        driver_opts=source.get("Options") or None,
        labels=labels,
    )
    got = (created or {}).get("Labels") or {}
    if got.get(LABEL_RENAME_JOB) != job.key:
        raise RenameError(
            "conflict",
            f"a volume named {move['new']} appeared while the rename was starting "
            f"(rename job label {got.get(LABEL_RENAME_JOB)!r}); it was left untouched",
        )


async def _copy_one(ctx: _Ctx, job: RenameJob, index: int) -> None:
    """Make move ``index`` verified: fresh destination, copy, check (idempotent)."""
    move = job.plan["moves"][index]
    key = job.key
    live = _progress.setdefault(key, {"moves": {}})
    live["phase"] = "copying"
    live["volume"] = move["old"]
    mp = live["moves"].setdefault(move["old"], {"total": move.get("bytes"), "copied": 0})

    if await calls.volume_or_none(ctx.api, move["old"]) is None:
        raise RenameError("failed", f"volume {move['old']} disappeared before it was copied")
    existing = await calls.volume_or_none(ctx.api, move["new"])
    if existing is not None:
        if (existing.get("Labels") or {}).get(LABEL_RENAME_JOB) != key:
            raise RenameError("conflict", f"a volume named {move['new']} already exists")
        # a partial copy from an interrupted attempt: start from empty again
        await volcopy.remove_helpers(ctx.api, key)
        await calls.call(ctx.api, "remove_volume", move["new"])
    await _create_target(ctx, job, move)

    def on_progress(total: int | None, copied: int | None) -> None:
        if total is not None:
            mp["total"] = total
        if copied is not None:
            mp["copied"] = copied

    async def on_started(cid: str) -> None:
        _crash_point("crash-after-copy-start")

    size = await volcopy.copy_volume(
        ctx.api,
        image=ctx.image,
        source=move["old"],
        dest=move["new"],
        helper_name=_helper_name(ctx.prefix, key, index, "copy"),
        labels={LABEL_RENAME_JOB: key},
        progress=on_progress,
        started=on_started,
        hold_after_copy="hold-copy" in _faults(),
    )
    live["phase"] = "verifying"
    summary = await volcopy.verify_copy(
        ctx.api,
        image=ctx.image,
        source=move["old"],
        dest=move["new"],
        helper_name=_helper_name(ctx.prefix, key, index, "verify"),
        labels={LABEL_RENAME_JOB: key},
    )
    _set_move(job, index, state=VERIFIED, bytes=size, files=summary["files"])
    ctx.db.commit()
    log.info("rename %s: %s copied to %s and verified (%d B)", key, move["old"], move["new"], size)


async def _remove_old(ctx: _Ctx, job: RenameJob) -> None:
    """Remove the old containers, then each old volume whose copy is verified."""
    _progress.setdefault(job.key, {"moves": {}})["phase"] = "removing"
    for name in (job.plan or {}).get("containers", []):
        info = await calls.container_or_none(ctx.api, name)
        if info is None:
            continue
        if info["State"].get("Running"):
            raise RenameError(
                "conflict", f"container {name} is running; stop it and re-run the rename"
            )
        await calls.call(ctx.api, "remove_container", info["Id"], v=True)
        log.info("rename %s: removed old container %s", job.key, name)
    for index, move in enumerate((job.plan or {}).get("moves", [])):
        if move.get("state") == REMOVED:
            continue
        if move.get("state") != VERIFIED:
            raise RenameError("failed", f"volume {move['old']} was not verified; not removing it")
        new = await calls.volume_or_none(ctx.api, move["new"])
        if new is None or (new.get("Labels") or {}).get(LABEL_RENAME_JOB) != job.key:
            raise RenameError(
                "failed", f"the copy {move['new']} is missing; keeping the original {move['old']}"
            )
        await volcopy.wait_until_unused(ctx.api, move["old"])
        try:
            await calls.call(ctx.api, "remove_volume", move["old"])
        except NotFound:
            pass
        _set_move(job, index, state=REMOVED)
        ctx.db.commit()
        log.info("rename %s: removed old volume %s", job.key, move["old"])


async def _rollback(ctx: _Ctx, job: RenameJob, reason: str) -> None:
    """Undo a rename that never reached its commit: only this job's copies go."""
    await volcopy.remove_helpers(ctx.api, job.key)
    for move in (job.plan or {}).get("moves", []):
        vol = await calls.volume_or_none(ctx.api, move["new"])
        if vol is not None and (vol.get("Labels") or {}).get(LABEL_RENAME_JOB) == job.key:
            await volcopy.wait_until_unused(ctx.api, move["new"])
            await calls.call(ctx.api, "remove_volume", move["new"])
    job.state = ROLLED_BACK
    job.error = reason
    ctx.db.commit()
    _progress.pop(job.key, None)
    audit(
        job.actor or "jupyterhub",
        "rename-user",
        job.old_name,
        "rolled-back",
        new_name=job.new_name,
        job=job.key,
        error=reason,
    )


def _pop_stale_spawners(user: Any) -> None:
    """Forget spawner objects built for the old name (their names and URLs are cached)."""
    from jupyterhub.utils import url_path_join

    user.base_url = user.prefix = (
        url_path_join(user.settings.get("base_url", "/"), "user", user.escaped_name) + "/"
    )
    for name, sp in list(user.spawners.items()):
        if not sp.active:
            hubcompat.drop_spawner(user, name)


def _clear_spawner_state(user: Any) -> None:
    # what says where the data lives (a Swarm node) moves with the user
    for orm_sp in user.orm_spawners.values():
        kept = {k: v for k, v in (orm_sp.state or {}).items() if k in hooks.persistent_state}
        orm_sp.state = kept or None


def _commit_names(ctx: _Ctx, job: RenameJob, user: Any) -> None:
    """The commit point: user row, NativeAuthenticator row, spawner state, journal."""
    own = ctx.db.info.setdefault(OWN_RENAME, {})
    own[user.id] = job.key
    try:
        user.name = job.new_name
        _clear_spawner_state(user)
        job.state = COMMITTED
        job.error = None
        ctx.db.commit()
    except BaseException:
        ctx.db.rollback()
        raise
    finally:
        own.pop(user.id, None)
    _pop_stale_spawners(user)
    log.info("rename %s: %s is now %s in the database", job.key, job.old_name, job.new_name)


async def _finish(ctx: _Ctx, job: RenameJob, user: Any, except_spawner: Any = None) -> None:
    """Take a committed rename to done: copy what is not verified yet, then remove."""
    if user is None:
        job.error = "the user no longer exists; volumes left as they are"
        ctx.db.commit()
        raise RenameError("not-found", job.error)
    if not (job.plan or {}).get("planned"):
        plan = await plan_moves(user, job.old_name, job.new_name, job.key)
        job.plan = plan.to_json()
        if plan.conflicts:
            job.error = "; ".join(plan.conflicts)
            ctx.db.commit()
            raise RenameError("conflict", job.error)
        ctx.db.commit()
    busy = active_servers(user, except_spawner)
    if busy:
        raise ServersRunning(
            "conflict",
            f"stop the server(s) {', '.join(busy)} of {user.name} first; they use the data",
        )
    for index, move in enumerate(job.plan.get("moves", [])):
        if move.get("state") in (VERIFIED, REMOVED):
            continue
        if await calls.volume_or_none(ctx.api, move["old"]) is None:
            new = await calls.volume_or_none(ctx.api, move["new"])
            if new is not None and (new.get("Labels") or {}).get(LABEL_RENAME_JOB) == job.key:
                _set_move(job, index, state=REMOVED)  # removed in a run that then died
                continue
            raise RenameError("failed", f"volume {move['old']} is gone and was never copied")
        await _copy_one(ctx, job, index)
    if job.source == "core":
        _clear_spawner_state(user)
        ctx.db.commit()
    await _remove_old(ctx, job)
    job.state = DONE
    job.error = None
    ctx.db.commit()
    _progress.setdefault(job.key, {"moves": {}})["phase"] = "done"
    audit(
        job.actor or "jupyterhub",
        "rename-user",
        job.old_name,
        "ok",
        new_name=job.new_name,
        job=job.key,
        source=job.source,
        volumes=[m["new"] for m in job.plan.get("moves", [])],
    )


# -- entry points ----------------------------------------------------------------------------


def reserve(db: Session, user: Any, new_name: str, actor: str) -> RenameJob:
    """Journal an API rename now, before anything is awaited: it holds ``new_name``.

    Called right after ``check_new_name`` with no ``await`` in between, so two
    requests for one new name cannot both pass: the second sees this row.
    The job counts as running until ``start_rename`` or ``release``.
    """
    ensure_schema(db)
    job = RenameJob(
        key=new_key(),
        user_id=user.id,
        user_created=user_stamp(user),
        old_name=user.name,
        new_name=new_name,
        source="api",
        actor=actor,
        state=COPYING,
        plan={},
    )
    db.add(job)
    db.commit()
    _planning.add(job.key)
    return job


def release(db: Session, job: RenameJob) -> None:
    """Drop a reservation whose rename was refused before anything was created."""
    _planning.discard(job.key)
    db.delete(job)
    db.commit()


async def start_rename(db: Session, user: Any, job: RenameJob, plan: Plan) -> RenameJob:
    """Run a reserved API rename in the background with its plan; returns the job."""
    job.plan = plan.to_json()
    db.commit()
    _progress[job.key] = {
        "phase": "queued",
        "moves": {m["old"]: {"total": None, "copied": 0} for m in plan.moves},
    }
    _spawn(job.key, user.id, _run_api_job(db, user, job.key))
    _planning.discard(job.key)
    return job


async def _copy_all(ctx: _Ctx, job: RenameJob, user: Any) -> None:
    """The copy phase of an API rename, within its deadline."""
    async with asyncio.timeout(ctx.timeout):
        busy = active_servers(user)
        if busy:
            raise RenameError("conflict", f"server(s) {', '.join(busy)} started meanwhile")
        for index in range(len(job.plan.get("moves", []))):
            await _copy_one(ctx, job, index)


async def _run_api_job(db: Session, user: Any, key: str) -> None:
    job = db.query(RenameJob).filter(RenameJob.key == key).one()
    ctx = _context(db, user)
    try:
        async with user_lock(user.id):
            try:
                await _copy_all(ctx, job, user)
            except (Exception, asyncio.CancelledError) as e:
                if isinstance(e, asyncio.CancelledError):
                    message = _cancelled.pop(key, "cancelled (the hub is shutting down?)")
                elif isinstance(e, TimeoutError):
                    message = (
                        f"the copy did not finish within {ctx.timeout:g} s "
                        "(ExtDockerSpawner.rename_timeout)"
                    )
                else:
                    message = describe(e)
                if isinstance(e, SQLAlchemyError):
                    db.rollback()
                log.warning("rename %s failed before its commit, rolling back: %s", key, message)
                await _rollback(ctx, job, message)
                return
            _progress[key]["phase"] = "committing"
            _commit_names(ctx, job, user)
            _crash_point("crash-after-commit")
            try:
                await _finish(ctx, job, user)
            except Exception as e:
                message = describe(e)
                if isinstance(e, SQLAlchemyError):
                    db.rollback()
                # past the commit point: keep going forward on re-run / hub start / spawn
                job.error = message
                db.commit()
                audit(job.actor, "rename-user", job.old_name, "incomplete", error=message)
                log.error("rename %s committed but not finished: %s", key, message)
    except asyncio.CancelledError:
        # cancelled while waiting for the user's lock: nothing was copied yet
        if job.state == COPYING:
            await _rollback(ctx, job, _cancelled.pop(key, "cancelled"))


async def cancel(db: Session, user: Any, actor: str, key: str | None = None) -> RenameJob:
    """Stop an API rename that has not reached its commit point and roll it back.

    Nothing is lost: the old volumes were never changed, and only the copies
    carrying this job's label are removed. Raises RenameError 404 when there
    is nothing to cancel, 409 past the commit point (the names have changed;
    the data moves forward to the end).
    """
    jobs = [j for j in jobs_of(db, user) if key is None or j.key == key]
    if not jobs:
        raise RenameError("not-found", f"{user.name} has no unfinished rename to cancel.")
    job = jobs[-1]
    if job.state != COPYING:
        raise RenameError(
            "conflict",
            f"The rename of {job.old_name} to {job.new_name} (job {job.key}) is past its "
            "commit point: the names have changed and it can only go forward.",
        )
    reason = f"cancelled by {actor}"
    task = _tasks.get(job.key)
    if task is not None and not task.done():
        _cancelled[job.key] = reason
        task.cancel()
        # the task rolls itself back; wait for that (shielded: our own caller
        # going away must not interrupt the rollback)
        await asyncio.wait({asyncio.shield(task)}, timeout=120)
    elif job.key not in _planning:
        async with user_lock(user.id):
            db.refresh(job)
            if job.state == COPYING:
                await _rollback(_context(db, user), job, reason)
    db.refresh(job)
    return job


async def settle_locked(db: Session, user: Any, *, except_spawner: Any = None) -> None:
    """Finish or roll back every interrupted rename of ``user`` (lock held by the caller).

    Raises RenameError when a committed rename cannot finish yet: the data is
    not under the new names, so a spawn must not go ahead.
    """
    for job in jobs_of(db, user):
        if running(job.key) and job.key not in _settling:
            continue  # its own task runs it once it gets the lock
        ctx = _context(db, user)
        if job.state == COPYING:
            await _rollback(ctx, job, "interrupted before the names changed (hub restart?)")
        else:
            try:
                async with asyncio.timeout(ctx.timeout):
                    await _finish(ctx, job, user, except_spawner)
            except Exception as e:
                message = describe(e)
                if isinstance(e, SQLAlchemyError):
                    db.rollback()
                if not isinstance(e, ServersRunning):
                    job.error = message
                    db.commit()
                raise RenameError(
                    getattr(e, "kind", "failed"),
                    f"{user.name} was renamed from {job.old_name}, but their data could "
                    f"not be moved yet: {message}",
                ) from e


_settling: set[str] = set()


async def settle(db: Session, user: Any, attempts: int = 5, pause: float = 2.0) -> None:
    """``settle_locked`` under the user's lock; errors are logged and kept in the journal.

    While a server of the user is still stopping, try again a few times; the
    next spawn finishes the job at the latest.
    """
    for attempt in range(attempts):
        async with user_lock(user.id):
            try:
                await settle_locked(db, user)
                return
            except RenameError as e:
                if not isinstance(e.__cause__, ServersRunning):
                    log.warning("rename of user %s not finished: %s", user.id, e.message)
                    return
                if attempt == attempts - 1:
                    log.info("%s: data moves at the next spawn (%s)", user.name, e.message)
                    return
        await asyncio.sleep(pause)


def resume(db: Session, user: Any, job: RenameJob) -> None:
    """Re-run an interrupted rename in the background (re-issued request)."""
    if running(job.key):
        return

    async def run() -> None:
        _settling.add(job.key)
        try:
            await settle(db, user)
        finally:
            _settling.discard(job.key)

    _spawn(job.key, user.id, run())


def abandon(db: Session, job: RenameJob) -> None:
    """A committed rename whose user is gone: its old volumes stay for an admin."""
    job.state = ABANDONED
    left = [m["old"] for m in (job.plan or {}).get("moves", []) if m.get("state") != REMOVED]
    job.error = (
        "the user was deleted (or the id reused) before the data moved; volumes "
        f"{', '.join(left) or '(none)'} left for an administrator"
    )
    db.commit()
    log.warning("rename %s abandoned: %s", job.key, job.error)


async def rollback_orphan(db: Session, job: RenameJob) -> None:
    """Roll back a ``copying`` job whose user no longer exists."""
    async with user_lock(job.user_id):
        await _rollback(_context(db, None), job, "interrupted; the user no longer exists")


def recover_all(db: Session, users: Any) -> int:
    """At hub start: resume every unfinished rename in the background. Returns how many."""
    ensure_schema(db)
    jobs = unfinished_jobs(db)
    for job in jobs:
        user = users.get(job.user_id)
        if user is not None and not belongs_to(job, user.id, user_stamp(user)):
            user = None  # the id now belongs to someone else: never theirs to finish
        if user is None:
            if job.state == COPYING:
                _spawn(job.key, job.user_id, rollback_orphan(db, job))
            else:
                abandon(db, job)
            continue
        resume(db, user, job)
    if jobs:
        log.info("Resuming %d interrupted rename(s)", len(jobs))
    return len(jobs)


def forget_spawner(spawner: Any) -> None:
    """A server started under an old name has stopped: drop its spawner object.

    Its proxy path, OAuth client and container name were made for the old
    name; the next start gets a fresh spawner. Data of a rename made while it
    ran moves now, in the background (or at the next spawn at the latest).
    """
    user = spawner.user
    if hubcompat.cached_spawner(user, spawner.name) is spawner:
        hubcompat.drop_spawner(user, spawner.name)
    if active_servers(user, except_spawner=spawner):
        return
    _pop_stale_spawners(user)
    jobs = jobs_of(user.db, user)
    if jobs:
        resume(user.db, user, jobs[-1])


def on_core_rename(user_ids: list[int]) -> None:
    """After a commit that renamed users outside our API (called by the listener).

    SQLAlchemy's after_commit may not touch the database, so the work is
    scheduled on the hub's loop.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    loop.call_soon(_after_core_rename, list(user_ids))


def _after_core_rename(user_ids: list[int]) -> None:
    from jupyterhub.app import JupyterHub

    if not JupyterHub.initialized():
        return
    app = JupyterHub.instance()
    for uid in user_ids:
        user = app.users.get(uid)
        if user is None:
            continue
        if active_servers(user):
            # its URL and proxy route stay until it stops (see forget_spawner)
            log.info("%s has a running server: data moves once it stops", user.name)
            continue
        _pop_stale_spawners(user)
        jobs = jobs_of(app.db, user)
        if jobs:
            resume(app.db, user, jobs[-1])


async def recover_when_started(give_up_after: float = 600) -> None:
    """Wait for the hub to be up, then resume interrupted renames (scheduled by setup)."""
    from jupyterhub.app import JupyterHub

    deadline = time.monotonic() + give_up_after
    while time.monotonic() < deadline:
        if JupyterHub.initialized():
            app = JupyterHub.instance()
            if getattr(app, "http_server", None) is not None and getattr(app, "db", None):
                try:
                    recover_all(app.db, app.users)
                except Exception:
                    log.exception("resuming interrupted renames failed")
                return
        await asyncio.sleep(0.5)


def schedule_recovery() -> None:
    """Called from ``jupyterhub_ext.setup`` while JupyterHub loads its config."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return  # config loaded outside a running hub (tests, --generate-config)
    global _recovery_task
    _recovery_task = loop.create_task(recover_when_started())


_recovery_task: asyncio.Task | None = None


# -- around a server's start and stop (hooks the spawner calls) --------------


def refuse_start_while_renaming(spawner: Any) -> None:
    """Before the lock: no start while a rename of this user runs or holds the name."""
    user = spawner.user
    running = api_job_running(user.db, user.id, journal.user_stamp(user))
    if running is not None:
        raise RuntimeError(
            f"{user.name} is being renamed to {running.new_name}; "
            "start the server when the rename has finished."
        )
    held = reserved(user.db, user.name)
    if held is not None and held.user_id != user.id:
        # a user made under a name a rename holds (should be impossible)
        raise RuntimeError(journal.reserved_message(user.name, held))


async def settle_before_start(spawner: Any) -> None:
    """With the user's lock held: finish a rename whose data has not moved yet."""
    await settle_locked(spawner.user.db, spawner.user, except_spawner=spawner)


def forget_if_renamed(spawner: Any) -> None:
    """After a stop: a user renamed (JupyterHub's own API) while the server ran."""
    if spawner.started_as is not None and spawner.started_as != spawner.user.name:
        forget_spawner(spawner)


def install_spawner_hooks() -> None:
    """Register the three hooks above with the spawner (at ``setup(c)``)."""
    hooks.register(
        before=refuse_start_while_renaming, locked=settle_before_start, stopped=forget_if_renamed
    )
