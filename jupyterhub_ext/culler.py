"""Idle culling with a warning: stop servers nobody used for a while, after telling their users.

The decision is jupyterhub-idle-culler's: a server is idle since the hub's
``last_activity`` of it (fed by the proxy and by the server's own activity
reports), and is stopped once idle for longer than the timeout. What we add:

- ``warning`` seconds before that deadline the user gets one notification in
  JupyterLab (the broadcast delivery, to that server alone, with a credential
  for that server only) and a note on the home page;
- "Keep running" (``POST /hub/api/users/{name}/keep-running``) moves the
  deadline by ``extension`` seconds, at most ``max_extensions`` times per start;
- per-profile timeouts (e.g. GPU servers shorter);
- a culled server leaves an audit line (``cull-server``) and a note the user
  sees on the home page at the next visit;
- extensions and notes are kept in one file (``state_path``, written in a
  thread of its own), so a hub restart changes no deadline.

It runs inside the hub (like the usage scan): it reads activity and stops
servers through the hub's own objects, so no API token with stop rights over
every server exists anywhere. The pure decision (:func:`decide`) is unit-tested.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from traitlets import Bool, Dict, Int, Unicode, observe
from traitlets.config import Configurable

from jupyterhub_ext import hubcompat
from jupyterhub_ext.audit import audit
from jupyterhub_ext.handlers._common import target_label

log = logging.getLogger("jupyterhub_ext.culler")

ACTION = "cull-server"
ACTOR = "service:jupyterhub-ext-culler"
KEEP = "keep"
WARN = "warn"
CULL = "cull"


class CullerConfig(Configurable):
    """Idle culling with a warning (``c.CullerConfig.<name>``)."""

    enabled = Bool(
        False,
        help="""
        Stop servers that were idle (no activity seen by the hub) for
        ``timeout`` seconds, after warning their users ``warning`` seconds
        before. Use it instead of jupyterhub-idle-culler, not beside it.
        """,
    ).tag(config=True)

    timeout = Int(
        3600,
        min=0,
        help="""
        Seconds of inactivity after which a server is stopped (0: never).
        Activity is the hub's ``last_activity`` of the server, as the idle
        culler uses; how fresh it is depends on
        ``c.JupyterHub.last_activity_interval`` and the servers'
        ``JUPYTERHUB_ACTIVITY_INTERVAL`` (both 300 s by default).
        """,
    ).tag(config=True)

    profile_timeouts = Dict(
        value_trait=Int(min=0),
        help="""
        Timeouts per spawn profile slug, e.g. ``{"gpu": 1800}``: GPU servers
        are freed sooner. Servers of other profiles (or without profiles) use
        ``timeout``; 0 never culls servers of that profile.
        """,
    ).tag(config=True)

    warning = Int(
        600,
        min=0,
        help="""
        Seconds before the stop at which the user is warned: one
        notification in JupyterLab (the server alone receives it) and a note
        with a Keep running button on the hub's home page. 0: no warning.
        """,
    ).tag(config=True)

    extension = Int(
        3600,
        min=1,
        help="""
        Seconds one "Keep running" adds to the server's deadline (counted
        from the current deadline, or from now if that is later).
        """,
    ).tag(config=True)

    max_extensions = Int(
        2,
        min=0,
        help="""
        How many times a user may press "Keep running" per start of a server.
        Past that the API answers 409 and the server stops when idle.
        """,
    ).tag(config=True)

    interval = Int(
        60,
        min=1,
        help="""
        Seconds between two checks. A server is warned and stopped at most
        this late; keep it well below ``warning``.
        """,
    ).tag(config=True)

    concurrency = Int(
        10,
        min=1,
        help="""
        How many warnings and stops a check runs at the same time (a stop
        takes seconds; many servers can come due together).
        """,
    ).tag(config=True)

    state_path = Unicode(
        "jupyterhub_ext_culler.json",
        help="""
        File keeping the culler's state across hub restarts (relative paths:
        the hub's working directory): the Keep-running extensions of running
        servers (each for one start of a server: a new start begins afresh)
        and the "your server was stopped for inactivity" notes, kept until
        the user starts that server again. Written in a thread of its own,
        never on the hub's event loop. An unreadable file is set aside as
        ``<file>.unreadable`` with a warning in the hub's log.
        """,
    ).tag(config=True)

    notes_path = Unicode(
        None,
        allow_none=True,
        help="""
        Deprecated: the old name of ``state_path`` (when only the notes were
        kept). Setting it sets ``state_path``; a notes file of the old format
        is read, and written back in the new one.
        """,
    ).tag(config=True)

    @observe("notes_path")
    def _notes_path_renamed(self, change: Any) -> None:
        if change.new:
            log.warning("c.CullerConfig.notes_path is deprecated: use c.CullerConfig.state_path")
            self.state_path = change.new

    def timeout_for(self, profile: str | None) -> int:
        """The timeout of a server started with this profile slug."""
        if profile and profile in self.profile_timeouts:
            return int(self.profile_timeouts[profile])
        return int(self.timeout)


# -- the pure decision ---------------------------------------------------------------


@dataclass
class Extension:
    """Keep-running state of one start of one server."""

    started: float  # the start it belongs to: a new start forgets it
    used: int = 0
    extended_until: float = 0.0
    warned_for: float = 0.0  # the deadline the user was warned about


def deadline(last_activity: float, timeout: int, ext: Extension | None) -> float | None:
    """When the server stops if nothing happens (None: never, timeout 0)."""
    if timeout <= 0:
        return None
    idle_deadline = last_activity + timeout
    return max(idle_deadline, ext.extended_until) if ext else idle_deadline


def decide(
    now: float, last_activity: float, timeout: int, warning: int, ext: Extension | None
) -> str:
    """``keep``, ``warn`` (once per deadline) or ``cull``."""
    when = deadline(last_activity, timeout, ext)
    if when is None:
        return KEEP
    if now >= when:
        return CULL
    if warning > 0 and now >= when - warning and not (ext and ext.warned_for == when):
        return WARN
    return KEEP


class NoExtensionsLeft(Exception):
    pass


def extend(ext: Extension, now: float, current_deadline: float, cfg: CullerConfig) -> float:
    """Count one "Keep running"; the new deadline. Raises NoExtensionsLeft."""
    if ext.used >= cfg.max_extensions:
        raise NoExtensionsLeft(
            f"This server was already kept running {ext.used} time(s), the most allowed "
            f"({cfg.max_extensions}). Use it (any activity resets the idle timer), "
            "or save your work: it stops when idle."
        )
    ext.used += 1
    ext.extended_until = max(current_deadline, now) + cfg.extension
    return ext.extended_until


# -- state in the hub ---------------------------------------------------------------


STATE_VERSION = 1
_EXT_FIELDS = ("started", "used", "extended_until", "warned_for")


def encode_state(
    extensions: dict[tuple[str, str], Extension], notes: dict[str, dict[str, dict]]
) -> dict[str, Any]:
    """The state file's content (JSON-ready)."""
    return {
        "version": STATE_VERSION,
        "extensions": [
            {"user": user, "server": server, **{k: getattr(ext, k) for k in _EXT_FIELDS}}
            for (user, server), ext in sorted(extensions.items())
        ],
        "notes": notes,
    }


class StateFileError(ValueError):
    """A state file this version cannot use (the message says why)."""


def _extension_entry(entry: Any) -> tuple[tuple[str, str], Extension]:
    if not isinstance(entry, dict):
        raise StateFileError(f"an extension entry is not an object: {entry!r}")
    try:
        key = (entry["user"], entry["server"])
        ext = Extension(
            started=float(entry["started"]),
            used=int(entry["used"]),
            extended_until=float(entry["extended_until"]),
            warned_for=float(entry["warned_for"]),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise StateFileError(f"a bad extension entry {entry!r} ({e!r})") from None
    if not all(isinstance(k, str) for k in key):
        raise StateFileError(f"an extension entry without user and server names: {entry!r}")
    return key, ext


def decode_state(data: Any) -> tuple[dict[tuple[str, str], Extension], dict[str, dict[str, dict]]]:
    """Extensions and notes from a state file's JSON. Raises StateFileError.

    A file without ``version`` is the notes file of earlier versions
    (``{user: {server: note}}``): its notes are kept, it has no extensions.
    """
    if not isinstance(data, dict):
        raise StateFileError(f"expected a JSON object, found {type(data).__name__}")
    if "version" not in data:
        if not all(isinstance(v, dict) for v in data.values()):
            raise StateFileError("neither a state file nor an old notes file")
        return {}, data
    if data["version"] != STATE_VERSION:
        raise StateFileError(
            f"version {data['version']!r}, this hub reads version {STATE_VERSION} "
            "(written by a newer jupyterhub_ext?)"
        )
    notes = data.get("notes", {})
    if not isinstance(notes, dict) or not all(isinstance(v, dict) for v in notes.values()):
        raise StateFileError("'notes' is not an object of objects")
    entries = data.get("extensions", [])
    if not isinstance(entries, list):
        raise StateFileError("'extensions' is not a list")
    return dict(_extension_entry(e) for e in entries), notes


@dataclass
class State:
    """Extensions per running server and cull notes per user, kept in ``path``.

    Changes are made on the event loop; the file is written by one thread of
    its own (writes in order, the last one wins), so a slow disk never stalls
    the hub.
    """

    extensions: dict[tuple[str, str], Extension] = field(default_factory=dict)
    notes: dict[str, dict[str, dict]] = field(default_factory=dict)
    path: str = ""
    _writer: ThreadPoolExecutor | None = field(default=None, repr=False)

    def extension_of(self, user: str, server: str, started: float) -> Extension:
        """The extensions of this start of the server (a new start: none used)."""
        ext = self.extensions.get((user, server))
        if ext is None or ext.started != started:
            ext = self.extensions[(user, server)] = Extension(started)
        return ext

    def load(self) -> None:
        """Read ``path``; a file that cannot be used is set aside with a warning."""
        if not self.path or not os.path.exists(self.path):
            return
        try:
            with open(self.path, encoding="utf-8") as f:
                self.extensions, self.notes = decode_state(json.load(f))
        except (OSError, ValueError) as e:  # StateFileError and JSON errors are ValueErrors
            aside = self.path + ".unreadable"
            log.warning(
                "Cannot use the idle culler's state file %s (%s): starting without "
                "Keep-running extensions and cull notes; the file is moved to %s",
                self.path,
                e,
                aside,
            )
            with contextlib.suppress(OSError):
                os.replace(self.path, aside)

    def save(self) -> Future | None:
        """Write the state in the writer thread (the snapshot is taken now)."""
        if not self.path:
            return None
        text = json.dumps(encode_state(self.extensions, self.notes))
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="jhext-culler-state")
        return self._writer.submit(self._write, text)

    def _write(self, text: str) -> None:
        tmp = self.path + ".tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, self.path)
        except OSError as e:
            log.warning("Cannot write the idle culler's state to %s: %s", self.path, e)

    def keep_running(
        self, user: str, server: str, started: float, now: float, when: float, cfg: CullerConfig
    ) -> Extension:
        """One "Keep running" of this start of the server, saved. Raises NoExtensionsLeft."""
        ext = self.extension_of(user, server, started)
        extend(ext, now, when, cfg)
        self.save()
        return ext

    def forget(self, keys: set[tuple[str, str]]) -> None:
        """Drop the extensions of servers that stopped."""
        if keys & set(self.extensions):
            for key in keys:
                self.extensions.pop(key, None)
            self.save()

    def add_note(self, user: str, server: str, note: dict) -> None:
        self.notes.setdefault(user, {})[server] = note
        self.save()

    def drop_note(self, user: str, server: str) -> None:
        if self.notes.get(user, {}).pop(server, None) is not None:
            if not self.notes[user]:
                del self.notes[user]
            self.save()


_state = State()
_config: CullerConfig | None = None
_task: asyncio.Task | None = None


def state() -> State:
    return _state


def config() -> CullerConfig | None:
    """The culler's settings when it is enabled in this hub, else None."""
    return _config


def _ts(dt: Any) -> float | None:
    if dt is None:
        return None

    if dt.tzinfo is None:  # the hub stores naive UTC
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def profile_of(spawner: Any) -> str | None:
    """The profile slug of a running server (state first, then its options)."""
    prof = getattr(spawner, "_profile", None)
    if prof is not None:
        return prof.slug
    return (getattr(spawner, "user_options", None) or {}).get("profile")


def server_info(spawner: Any, cfg: CullerConfig) -> dict[str, Any] | None:
    """Deadline and extensions of a running server (None when it is not running)."""
    if not spawner.ready or spawner.orm_spawner.server is None:
        return None
    started = _ts(spawner.orm_spawner.started) or 0.0
    last = _ts(spawner.orm_spawner.last_activity) or started
    timeout = cfg.timeout_for(profile_of(spawner))
    ext = _state.extension_of(spawner.user.name, spawner.name, started)
    when = deadline(last, timeout, ext)
    return {
        "deadline": when,
        "timeout": timeout,
        "warned": bool(when is not None and ext.warned_for == when),
        "extensions_used": ext.used,
        "extensions_left": max(0, cfg.max_extensions - ext.used),
        "extension_seconds": cfg.extension,
        "last_activity": last,
    }


def _clock(ts: float) -> str:
    return time.strftime("%H:%M UTC", time.gmtime(ts))


class Culler:
    def __init__(self, app: Any, cfg: CullerConfig) -> None:
        self.app = app
        self.cfg = cfg

    def _running(self) -> tuple[list[Any], set[tuple[str, str]]]:
        """Servers ready to check, and every server the hub has as running.

        A server still being checked after a hub restart (``pending``) is not
        ready yet but keeps its extensions.
        """
        from jupyterhub import orm

        found, running = [], set()
        for orm_spawner in self.app.db.query(orm.Spawner).filter(orm.Spawner.server_id.isnot(None)):
            user = self.app.users[orm_spawner.user]
            running.add((user.name, orm_spawner.name))
            spawner = user.spawners.get(orm_spawner.name)
            if spawner is not None and spawner.ready:
                found.append(spawner)
        return found, running

    async def check_once(self) -> None:
        now = time.time()
        jobs, warned = [], False
        ready, running = self._running()
        for spawner in ready:
            user, name = spawner.user.name, spawner.name
            # running again: the note about its last cull is no longer news
            _state.drop_note(user, name)
            started = _ts(spawner.orm_spawner.started) or 0.0
            last = _ts(spawner.orm_spawner.last_activity) or started
            timeout = self.cfg.timeout_for(profile_of(spawner))
            ext = _state.extension_of(user, name, started)
            what = decide(now, last, timeout, self.cfg.warning, ext)
            if what == WARN:
                # marked before the delivery: the next check does not warn twice
                ext.warned_for = deadline(last, timeout, ext) or 0.0
                warned = True
                jobs.append(self._warn(spawner, ext.warned_for, ext))
            elif what == CULL:
                jobs.append(self._cull(spawner, now - last, timeout))
        if warned:
            _state.save()  # a warning is not sent again after a hub restart
        # servers stopped by their users: forget their extensions
        _state.forget(set(_state.extensions) - running)
        # many servers can come due at once (a class ends): a bounded number
        # of deliveries and stops at a time, none waiting for all the others
        limit = asyncio.Semaphore(self.cfg.concurrency)

        async def bounded(job: Any) -> None:
            async with limit:
                await job

        await asyncio.gather(*(bounded(j) for j in jobs))

    async def _warn(self, spawner: Any, when: float, ext: Extension) -> None:
        from jupyterhub_ext.notifications import quota_notify

        user, name = spawner.user.name, spawner.name
        left = max(0, self.cfg.max_extensions - ext.used)
        keep = (
            f"To keep it, use Keep running on the hub's home page ({left} left) or work in it."
            if left
            else "Save your work; it can no longer be extended (any activity keeps it)."
        )
        message = f"Your server stops at {_clock(when)} for inactivity. {keep}"
        try:
            n = await quota_notify.to_server(
                app=self.app, user_name=user, server_name=name, message=message, sender="culler"
            )
        except Exception as e:  # the warning is best effort; the home page shows it too
            log.warning("Idle warning to %s/%s failed: %s", user, name, e)
            n = 0
        audit(
            ACTOR,
            "cull-warning",
            target_label(user, name),
            "ok" if n else "failed",
            deadline=_clock(when),
        )

    async def _cull(self, spawner: Any, idle: float, limit: int) -> None:
        user_obj, name = spawner.user, spawner.name
        target = target_label(user_obj.name, name)
        if spawner.pending:
            return
        profile = profile_of(spawner)  # before the stop clears it
        hubcompat.set_stop_pending(spawner, True)
        try:
            await self.app.proxy.delete_user(user_obj, name)
            await user_obj.stop(name)
        except Exception as e:
            audit(ACTOR, ACTION, target, "failed", error=str(e))
            return
        finally:
            hubcompat.set_stop_pending(spawner, False)
        now = time.time()
        audit(ACTOR, ACTION, target, "ok", idle_seconds=int(idle), timeout=limit, profile=profile)
        _state.extensions.pop((user_obj.name, name), None)  # saved with the note
        _state.add_note(
            user_obj.name,
            name,
            {
                "at": now,
                "idle_seconds": int(idle),
                "timeout": limit,
                "message": f"Stopped at {_clock(now)} after {int(idle) // 60} min "
                f"({int(idle)} s) without activity (limit: {limit} s).",
            },
        )

    async def run_forever(self) -> None:
        while True:
            try:
                await self.check_once()
            except Exception:
                log.exception("Idle check failed; trying again in %s s", self.cfg.interval)
            await asyncio.sleep(self.cfg.interval)


async def start_when_hub_is_up(give_up_after: float = 600) -> None:
    from jupyterhub.app import JupyterHub

    deadline_ = time.monotonic() + give_up_after
    while time.monotonic() < deadline_:
        if JupyterHub.initialized():
            app = JupyterHub.instance()
            if getattr(app, "http_server", None) is not None and getattr(app, "db", None):
                await Culler(app, CullerConfig(config=app.config)).run_forever()
                return
        await asyncio.sleep(0.5)


def configure(c: Any) -> None:
    """Called by ``jupyterhub_ext.setup``: start the checks when enabled."""
    global _config, _task
    cfg = CullerConfig(config=c)
    if not cfg.enabled:
        return
    _config = cfg
    _state.path = cfg.state_path
    _state.load()
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return  # config loaded outside a running hub (tests, --generate-config)
    _task = loop.create_task(start_when_hub_is_up())
