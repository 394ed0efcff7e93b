"""The database side of renames: the journal table and the listeners on the user's name.

- ``RenameJob`` is the journal: one row per rename, written in the same
  transaction as the name change, so after any crash the row and the hub's
  user row agree on whether the rename happened.
- Whenever a hub user's ``name`` changes - through our rename API, JupyterHub's
  own ``PATCH /hub/api/users/{name}`` or its admin page - NativeAuthenticator's
  ``users_info`` row follows in the same flush, and a rename made outside our
  API gets a journal row so its volumes are moved before the next spawn.
- JupyterHub 6.1.1 sets the name to NULL when a PATCH repeats the current name
  (the admin page's "Edit User" does that); a NULL assignment over a real name
  is refused here and the name is kept.

The listeners are installed once per process by ``install()`` (from
``jupyterhub_ext.setup``).
"""

from __future__ import annotations

import logging
import secrets
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from jupyterhub import orm
from jupyterhub.orm import JSONDict
from sqlalchemy import Column, DateTime, Integer, Text, Unicode, event
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from tornado import web

# a child of the hub's own logger, so lines show up formatted in the hub log
log = logging.getLogger("jupyterhub_ext.rename.runner")

# session.info key: {user_id: job_key} for renames our engine commits itself
OWN_RENAME = "jupyterhub_ext.own_rename"
# session.info key: user ids renamed by someone else in this transaction
_CORE_RENAMED = "jupyterhub_ext.core_renamed"

# Journal states
COPYING = "copying"  # our API: data being copied, names not changed yet
COMMITTED = "committed"  # names changed in the database; data must follow
DONE = "done"
ROLLED_BACK = "rolled_back"
# its user was deleted (or the id now belongs to someone else) before the
# data moved: nothing more is done; the old volumes stay for an admin
ABANDONED = "abandoned"
UNFINISHED = (COPYING, COMMITTED)


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class RenameJob(orm.Base):
    """One rename of one hub user, and how far its data has moved.

    ``plan`` holds the volume moves (old name, new name, key, per-move state)
    and the containers to remove; it is replaced, never mutated in place.
    """

    __tablename__ = "jupyterhub_ext_rename_jobs"

    id = Column(Integer, primary_key=True, autoincrement=True)
    key = Column(Unicode(32), unique=True, nullable=False)
    user_id = Column(Integer, index=True, nullable=False)
    old_name = Column(Unicode(255), nullable=False)
    new_name = Column(Unicode(255), nullable=False)
    source = Column(Unicode(16), nullable=False)  # "api" or "core"
    actor = Column(Unicode(255), nullable=False, default="")
    state = Column(Unicode(16), nullable=False)
    plan = Column(JSONDict, nullable=True)
    error = Column(Text, nullable=True)
    # the user's creation time (ownership.created_stamp): ids can be reused
    # (SQLite hands a deleted last user's id to the next one), so a job is
    # only ever resumed for the user it was made for
    user_created = Column(Unicode(32), nullable=True)
    created = Column(DateTime, nullable=False, default=utcnow)
    updated = Column(DateTime, nullable=False, default=utcnow, onupdate=utcnow)

    def model(self) -> dict[str, Any]:
        """The JSON form the API and the page show."""
        return {
            "id": self.key,
            "user_id": self.user_id,
            "old_name": self.old_name,
            "new_name": self.new_name,
            "source": self.source,
            "actor": self.actor,
            "state": self.state,
            "error": self.error,
            "plan": public_plan(self.plan),
            "created": self.created.isoformat() + "Z",
            "updated": self.updated.isoformat() + "Z",
        }


def public_plan(plan: dict[str, Any] | None) -> dict[str, Any]:
    """The plan as the API shows it: never driver options (Docker reports them
    resolved, secrets included; rows from older versions may hold them)."""
    out = dict(plan or {})
    if "moves" in out:
        out["moves"] = [{k: v for k, v in m.items() if k != "options"} for m in out["moves"]]
    return out


def new_key() -> str:
    return secrets.token_hex(8)


def ensure_schema(session: Session) -> None:
    """Create the journal table if this database does not have it yet.

    JupyterHub creates every table of ``orm.Base`` at start-up, ours included
    when ``jupyterhub_ext.setup`` imported this module first; this covers a
    module imported later.
    """
    url = str(session.get_bind().url)
    if url in _schema_ready:
        return
    # on the session's own connection: inside its transaction, no second
    # connection waiting for a SQLite lock the first one holds
    conn = session.connection()
    RenameJob.__table__.create(conn, checkfirst=True)
    columns = {c["name"] for c in sa_inspect(conn).get_columns(RenameJob.__tablename__)}
    if "user_created" not in columns:
        # journal made by an older version: add the column (NULL = unknown)
        conn.exec_driver_sql(
            f"ALTER TABLE {RenameJob.__tablename__} ADD COLUMN user_created VARCHAR(32)"
        )
    _schema_ready.add(url)


_schema_ready: set[str] = set()


def user_stamp(user: Any) -> str:
    """The user's creation time as recorded with a job (to the microsecond: two
    users made within one second may get the same id)."""
    created = getattr(user, "created", None)
    return created.replace(tzinfo=None).isoformat() if created is not None else ""


def belongs_to(job: RenameJob, user_id: int, created: str | None) -> bool:
    """Whether ``job`` was made for this user (not for an earlier user with the same id)."""
    if job.user_id != user_id:
        return False
    # rows from before the stamp was recorded, or callers that cannot tell
    return not job.user_created or not created or job.user_created == created


def unfinished_jobs(
    session: Session, user_id: int | None = None, created: str | None = None
) -> list[RenameJob]:
    """Unfinished jobs; of one user when ``user_id`` (and ``created``, see belongs_to) is given."""
    ensure_schema(session)
    q = session.query(RenameJob).filter(RenameJob.state.in_(UNFINISHED))
    if user_id is not None:
        q = q.filter(RenameJob.user_id == user_id)
    jobs = q.order_by(RenameJob.id).all()
    if user_id is None:
        return jobs
    return [j for j in jobs if belongs_to(j, user_id, created)]


def reserved(session: Session, name: str) -> RenameJob | None:
    """The unfinished rename that holds ``name``, or None.

    A rename holds its new name from the moment it is accepted (nobody may
    sign up, be created or be renamed under it while the data is copied) and
    its old name until the data has left the old volumes.
    """
    if not name:
        return None
    ensure_schema(session)
    with session.no_autoflush:
        return (
            session.query(RenameJob)
            .filter(RenameJob.state.in_(UNFINISHED))
            .filter((RenameJob.new_name == name) | (RenameJob.old_name == name))
            .order_by(RenameJob.id)
            .first()
        )


def reserved_message(name: str, job: RenameJob) -> str:
    return (
        f"The name {name} is reserved by the rename of {job.old_name} to {job.new_name} "
        f"(job {job.key}, {job.state}); choose another name, or wait until it has finished."
    )


def latest_job(session: Session, name: str, key: str | None = None) -> RenameJob | None:
    """The newest job that renamed a user from or to ``name`` (or job ``key``)."""
    q = session.query(RenameJob)
    if key:
        q = q.filter(RenameJob.key == key)
    q = q.filter((RenameJob.old_name == name) | (RenameJob.new_name == name))
    return q.order_by(RenameJob.id.desc()).first()


# -- NativeAuthenticator ------------------------------------------------------

_native_tables: set[str] = set()


def native_model(session: Session) -> Any:
    """NativeAuthenticator's UserInfo class if it is in use in this database, else None."""
    mod = sys.modules.get("nativeauthenticator.orm")
    if mod is None:
        return None
    url = str(session.get_bind().url)
    if url not in _native_tables:
        # only positive answers are cached: the table appears when the
        # authenticator starts
        if not sa_inspect(session.connection()).has_table("users_info"):
            return None
        _native_tables.add(url)
    return mod.UserInfo


def native_row_taken(session: Session, name: str) -> bool:
    """Whether NativeAuthenticator has a sign-up (or account) under ``name``."""
    model = native_model(session)
    if model is None:
        return False
    with session.no_autoflush:
        return session.query(model).filter(model.username == name).first() is not None


class RenameConflict(web.HTTPError, SQLAlchemyError):
    """A name change the database must refuse; rolls the transaction back as 409.

    It is a SQLAlchemyError so JupyterHub's error handler rolls the session
    back, and an HTTPError so the API answers 409 with this message.
    """

    def __init__(self, message: str) -> None:
        web.HTTPError.__init__(self, 409, message)
        self.reason = "Conflict"

    def __str__(self) -> str:
        return self.log_message or "rename conflict"


def _follow_native(session: Session, old: str, new: str) -> None:
    model = native_model(session)
    if model is None:
        return
    with session.no_autoflush:
        if session.query(model).filter(model.username == new).first() is not None:
            raise RenameConflict(
                f"Cannot rename {old} to {new}: NativeAuthenticator already has a "
                f"sign-up for {new}. Discard that sign-up first (/hub/authorize)."
            )
        rows = session.query(model).filter(model.username == old).all()
        for row in rows:
            row.username = new
    if rows:
        log.info("NativeAuthenticator login of %s moves to %s", old, new)


# -- listeners ------------------------------------------------------------------

# set by jupyterhub_ext.rename.runner: (session, old name, new name) -> why the rename is
# refused (a setting grants something to either name), or None
_privilege_check: Callable[[Session, str, str], str | None] | None = None


def set_privilege_check(check: Callable[[Session, str, str], str | None]) -> None:
    global _privilege_check
    _privilege_check = check


def _check_core_rename(session: Session, user: orm.User, old: str, new: str) -> None:
    """JupyterHub's own rename obeys our rules: the name it takes, the name it leaves."""
    job = reserved(session, new)
    if job is not None and job.user_id != user.id:
        raise RenameConflict(f"Cannot rename {old} to {new}: " + reserved_message(new, job))
    job = reserved(session, old)
    if job is not None and job.user_id == user.id and job.state == COPYING:
        raise RenameConflict(
            f"Cannot rename {old} to {new}: {old} is being renamed to {job.new_name} "
            f"(job {job.key}); wait for it or cancel it first."
        )
    if _privilege_check is not None:
        why = _privilege_check(session, old, new)
        if why:
            raise RenameConflict(why)


_core_rename_hook: Callable[[list[int]], None] | None = None


def set_core_rename_hook(hook: Callable[[list[int]], None]) -> None:
    """Called after a commit that renamed users outside our API (their ids)."""
    global _core_rename_hook
    _core_rename_hook = hook


def _keep_name(target: orm.User, value: Any, oldvalue: Any, initiator: Any) -> Any:
    if value is None and isinstance(oldvalue, str) and oldvalue:
        log.warning(
            "Refusing to set the name of user %s to NULL (JupyterHub 6.1.1 does this "
            "when a PATCH repeats the current name); keeping %r",
            target.id,
            oldvalue,
        )
        return oldvalue
    return value


def _refuse_reserved_new_rows(session: Session) -> None:
    """No hub user and no NativeAuthenticator sign-up may take a name a rename holds.

    Every way a user comes into being (sign-up form, login, ``POST
    /hub/api/users``, config at start) ends in a new row here.
    """
    native_mod = sys.modules.get("nativeauthenticator.orm")
    native = getattr(native_mod, "UserInfo", None)
    names = []
    for obj in session.new:
        if isinstance(obj, orm.User):
            names.append(obj.name)
        elif native is not None and isinstance(obj, native):
            names.append(obj.username)
    for name in names:
        job = reserved(session, name)
        if job is not None:
            log.warning("Refused to create %r: reserved by rename job %s", name, job.key)
            raise RenameConflict(reserved_message(name, job))


def _abandon_jobs_of_deleted(session: Session) -> None:
    """A deleted user's committed renames end here; nobody else may inherit them."""
    for obj in list(session.deleted):
        if not isinstance(obj, orm.User):
            continue
        for job in unfinished_jobs(session, obj.id, user_stamp(obj)):
            if job.state == COMMITTED:
                job.state = ABANDONED
                job.error = (
                    "the user was deleted before the data moved; old volumes left as they were"
                )


def _before_flush(session: Session, flush_context: Any, instances: Any) -> None:
    if session.new:
        _refuse_reserved_new_rows(session)
    if session.deleted:
        with session.no_autoflush:
            _abandon_jobs_of_deleted(session)
    own = session.info.get(OWN_RENAME, {})
    for obj in list(session.dirty):
        if not isinstance(obj, orm.User):
            continue
        hist = sa_inspect(obj).attrs.name.history
        if not hist.deleted or not hist.added:
            continue
        old, new = hist.deleted[0], hist.added[0]
        if not old or not new or old == new:
            continue
        if obj.id not in own:
            _check_core_rename(session, obj, old, new)
        _follow_native(session, old, new)
        if obj.id in own:
            continue
        ensure_schema(session)
        session.add(
            RenameJob(
                key=new_key(),
                user_id=obj.id,
                user_created=user_stamp(obj),
                old_name=old,
                new_name=new,
                source="core",
                actor="",
                state=COMMITTED,
                plan={},
            )
        )
        session.info.setdefault(_CORE_RENAMED, set()).add(obj.id)
        log.info("User %s renamed to %s outside jupyterhub_ext: data follows", old, new)


def _after_commit(session: Session) -> None:
    renamed = session.info.pop(_CORE_RENAMED, None)
    if renamed and _core_rename_hook is not None:
        _core_rename_hook(sorted(renamed))


def _after_rollback(session: Session) -> None:
    session.info.pop(_CORE_RENAMED, None)


_installed = False


def install() -> None:
    """Install the listeners (idempotent)."""
    global _installed
    if _installed:
        return
    event.listen(orm.User.name, "set", _keep_name, retval=True, active_history=True)
    event.listen(Session, "before_flush", _before_flush)
    event.listen(Session, "after_commit", _after_commit)
    event.listen(Session, "after_rollback", _after_rollback)
    _installed = True
