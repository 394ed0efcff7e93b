"""Shared and archive storage for ExtDockerSpawner: volume creation with secret
driver options, redaction of secrets from errors, and clean-up on delete.

Kept apart from spawner.py as a mixin so the spawner's lifecycle stays
readable; ExtDockerSpawner lists it first among its bases.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from traitlets import Bool, HasTraits

from jupyterhub_ext.audit import audit
from jupyterhub_ext.engine import calls, dockerpool, ownership
from jupyterhub_ext.engine.errors import APIError, ImageNotFound, NotFound, explain
from jupyterhub_ext.locks import user_lock
from jupyterhub_ext.rename import journal
from jupyterhub_ext.storage import archive, secretopts, volperms
from jupyterhub_ext.storage.volumes import VolumeSetError, VolumeSpec, volume_labels

if TYPE_CHECKING:
    from jupyterhub_ext.spawner.lifecycle import ExtDockerSpawner

# How long a volume may stay "in use" after its server stopped: with
# remove=True Docker removes the container asynchronously.
IN_USE_GRACE_SECONDS = 20.0


class StorageError(RuntimeError):
    """A storage problem shown to the user; its message never holds a secret."""


class QuotaExceeded(StorageError):
    """A start refused: a volume is over its hard limit with ``on_hard_limit = "refuse"``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        from jupyterhub_ext.usage import metrics

        metrics.count_refused_spawn("quota")
        self.jupyterhub_message = message


class NotOwnedError(StorageError):
    """A volume or container of this name exists but is not this user's (ownership.py)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        from jupyterhub_ext.usage import metrics

        metrics.count_refused_spawn("not-owned")
        # what JupyterHub shows on the spawn page and in the API instead of "Unhandled error"
        self.jupyterhub_message = message


# volume names we already warned about (options differ from the declaration)
_warned_options: set[str] = set()


def check_at_hub_start(specs: list[VolumeSpec]) -> None:
    """What parsing cannot check: archive directories exist, secrets can be read.

    Runs in the hub process at start-up (``jupyterhub_ext.setup``). Paths are
    checked in the hub's filesystem, which must match the Docker host's (mount
    them at the same paths if the hub runs in a container).
    """
    for spec in specs:
        where = f"volume_set[{spec.key!r}]"
        missing = archive.missing_directories(spec.union)
        if missing:
            raise VolumeSetError(
                f"{where}: union director{'y' if len(missing) == 1 else 'ies'} "
                f"{', '.join(repr(d) for d in missing)} not found on this host "
                "(create, mount, or remove from the list)"
            )
        for opt, value in spec.driver_opts.items():
            try:
                secretopts.check({opt: value})
            except secretopts.SecretError as e:
                raise VolumeSetError(f"{where}: driver_opts[{opt!r}]: {e}") from None


def _chain_text(exc: BaseException) -> str:
    """The messages of an exception and everything it was raised from or during."""
    parts, seen = [], set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        parts.append(f"{e!s} {e!r}")
        e = e.__cause__ or e.__context__
    return "\n".join(parts)


class StorageMixin(HasTraits):
    """Volume creation, secret handling and ``delete_forever`` for ExtDockerSpawner."""

    remove_volumes_on_delete = Bool(
        False,
        help="""
        Remove a user's per-user volumes when the user is deleted in JupyterHub,
        and a named server's own volumes (those whose name contains
        ``{servername}``) when that server is deleted.

        Off by default: deleting a user then loses their data for good.
        Only volumes of the current volume set whose name matches AND whose
        owner-id label is the deleted user's id are removed; shared and archive
        volumes never. A stopped container of the deleted server, which would
        hold its volumes, is removed first. Every removal is logged.
        """,
    ).tag(config=True)

    adopt_unlabelled = Bool(
        False,
        help="""
        Let a user's server use an existing volume (or, with ``remove =
        False``, an existing container) of the expected name that carries no
        jupyterhub_ext owner labels, e.g. one made by plain DockerSpawner
        before you switched.

        Off by default: a volume's name alone does not prove whose it is (a
        user deleted with her volumes kept leaves them to whoever signs up
        next under that name), so such a spawn is refused with a message
        naming the volume and this setting. Turn it on when switching over
        if every unlabelled volume of that naming really is its user's
        (Docker cannot add labels to an existing volume, so keep it on while
        such volumes are in use). Volumes with owner labels are never handed
        to another user either way.
        """,
    ).tag(config=True)

    # -- ownership ------------------------------------------------------------

    def owner(self: ExtDockerSpawner) -> ownership.Owner:
        """This server's owner as recorded in labels."""
        return ownership.Owner.of(self.user)

    def labels_for(self: ExtDockerSpawner, spec: VolumeSpec) -> dict[str, str]:
        """The labels a volume of this server's set is created with (owner, key, scope)."""
        owner = self.owner()
        return volume_labels(
            spec,
            owner_id=owner.id,
            owner_name=owner.name,
            server_name=self.name,
            owner_created=owner.created,
        )

    def volume_refusal(
        self: ExtDockerSpawner, name: str, labels: dict | None, scope: str | None
    ) -> str | None:
        """Why this user must not get volume ``name`` (the one rule: ownership.py)."""
        unfinished = {job.key for job in journal.unfinished_jobs(self.user.db)}
        return ownership.volume_refusal(
            name,
            labels,
            owner=self.owner(),
            scope=scope,
            unfinished_jobs=unfinished,
            adopt_unlabelled=self.adopt_unlabelled,
        )

    def _refuse_volume(self: ExtDockerSpawner, why: str, name: str) -> None:
        self.log.error("Refused volume for %s: %s", self._log_name, why)
        audit(self._requester(), "mount-volume", self._log_name, "refused", volume=name, reason=why)
        raise NotOwnedError(
            f"Cannot start: {why}. Nothing was mounted. " + ownership.ADMIN_HINT.format(name=name)
        )

    # -- creation -----------------------------------------------------------

    async def _resolved_opts(self: ExtDockerSpawner, spec: VolumeSpec) -> tuple[dict, list[str]]:
        if not spec.driver_opts:
            return {}, []
        try:
            # secret files are read in the pool: no file I/O on the event loop
            return await dockerpool.run(secretopts.resolve, spec.driver_opts)
        except secretopts.SecretError as e:
            # the message names the variable or file, never a value
            raise StorageError(f"Volume {spec.key!r} cannot be created: {e}") from None

    async def ensure_volume(self: ExtDockerSpawner, spec: VolumeSpec, name: str) -> None:
        """Create one volume of the set if missing, resolving secret options only now."""
        if spec.on_hard_limit == "refuse":
            self._check_quota(spec)
        try:
            info = await self.docker("inspect_volume", name)
        except NotFound:
            info = None
        if info is not None:
            why = self.volume_refusal(name, info.get("Labels"), spec.scope)
            if why:
                self._refuse_volume(why, name)
            if spec.driver_opts and name not in _warned_options:
                await self._warn_if_options_differ(spec, name, info)
            return
        opts, secrets = await self._resolved_opts(spec)
        labels = self.labels_for(spec)
        try:
            # Docker's create returns an existing volume of that name unchanged
            # (a create racing ours): its labels, not our request, say whose it is
            created = await self.docker(
                "create_volume",
                name=name,
                driver=spec.driver,
                driver_opts=opts or None,
                labels=labels,
            )
        except APIError as e:
            msg = secretopts.redact(str(e), secrets)
            raise StorageError(f"Could not create volume {name} ({spec.key}): {msg}") from None
        finally:
            del opts
        why = self.volume_refusal(name, (created or {}).get("Labels"), spec.scope)
        if why:
            self._refuse_volume(why, name)
        self.log.info("Created volume %s (%s) for %s", name, spec.key, self._log_name)
        perms = spec.permissions()
        if perms is not None:
            await self._set_volume_permissions(spec, name, *perms)

    def _check_quota(self: ExtDockerSpawner, spec: VolumeSpec) -> None:
        """Refuse the start when the last scan measured this volume over its hard limit."""
        from jupyterhub_ext.usage import quota, scan

        size = scan.volume_size(self.user.name, spec.key)
        if not quota.refuses(spec, size):
            return
        text = quota.message(spec, size, quota.cleanup_hint(spec))
        audit(
            self._requester(),
            "start",
            self._log_name,
            "refused",
            reason="quota",
            volume=spec.key,
            size=size,
            hard_limit=spec.hard_limit,
        )
        raise QuotaExceeded(text)

    async def _set_volume_permissions(
        self: ExtDockerSpawner,
        spec: VolumeSpec,
        name: str,
        owner: str,
        group: str,
        mode: int,
        engine: Any = None,
    ) -> None:
        """Owner/group/mode of a volume just created (volperms.py), or remove it and fail.

        Only at creation: a volume whose ownership could not be set is removed
        (it is new and empty), so the next start tries again. ``engine``: the
        engine that holds the volume (a Swarm node, which has the image: the
        server's task just ran it there); default the spawner's own.
        """
        try:
            if engine is None:
                try:
                    await self.docker("inspect_image", self.image)
                except ImageNotFound:
                    await self.pull_image(self.image)  # the helper runs the single-user image
            await volperms.apply(
                engine if engine is not None else await self.docker_client(),
                name,
                image=self.image,
                owner=owner,
                group=group,
                mode=mode,
            )
        except (volperms.PermissionsError, APIError) as e:
            self.log.error("Volume %s (%s): %s", name, spec.key, e)
            try:
                if engine is None:
                    await self.docker("remove_volume", name)
                else:
                    await calls.call(engine, "remove_volume", name)
            except APIError:
                pass  # in use by a server that raced us: it keeps the volume as it is
            raise StorageError(f"Could not prepare volume {name} ({spec.key}): {e}") from None
        self.log.info(
            "Set volume %s (%s) to owner %s, group %s, mode %s",
            name,
            spec.key,
            owner or "-",
            group or "-",
            oct(mode) if mode >= 0 else "-",
        )

    async def _warn_if_options_differ(
        self: ExtDockerSpawner, spec: VolumeSpec, name: str, info: dict
    ) -> None:
        # Docker keeps the options a volume was created with; an admin who
        # fixes a share's options must be told the old ones are still used.
        try:
            wanted, _ = await self._resolved_opts(spec)
        except StorageError as e:
            self.log.warning("%s", e)
            return
        have = info.get("Options") or {}
        differ = sorted(k for k in set(wanted) | set(have) if wanted.get(k) != have.get(k))
        if info.get("Driver") != spec.driver:
            differ.insert(0, "driver")
        if differ:
            _warned_options.add(name)
            # option names only: values may be secrets
            self.log.warning(
                "Volume %s exists with other settings (%s) than volume_set[%r] declares. "
                "Docker keeps a volume's creation options: remove it (docker volume rm %s) "
                "while no server uses it to apply the new ones.",
                name,
                ", ".join(differ),
                spec.key,
                name,
            )

    async def _secret_values(self: ExtDockerSpawner) -> list[str]:
        values: list[str] = []
        for spec in self.volume_specs:
            if secretopts.has_secrets(spec.driver_opts):
                try:
                    values += (await dockerpool.run(secretopts.resolve, spec.driver_opts))[1]
                except secretopts.SecretError:
                    pass
        return values

    async def start(self: ExtDockerSpawner) -> Any:
        # Docker repeats a volume's mount options (a CIFS password...) in mount
        # errors; JupyterHub logs start errors and shows them to the user.
        try:
            return await super().start()
        except Exception as e:
            secrets = await self._secret_values()
            text = _chain_text(e)
            if any(s in text for s in secrets):
                raise StorageError(secretopts.redact(str(e), secrets)) from None
            raise

    # -- clean-up on delete -------------------------------------------------

    async def delete_forever(self: ExtDockerSpawner) -> None:
        """Called by JupyterHub when a user (every server) or a named server is deleted.

        JupyterHub calls it once per server of a deleted user, and the default
        server ('') is only ever deleted with its user: so the default server
        removes the user's volumes, a named server only its ``{servername}`` ones.
        """
        whole_user = not self.name
        target = self.user.name if whole_user else f"{self.user.name}/{self.name}"
        names = self.volume_names()
        specs = [s for s in self.volume_specs if s.per_user and (whole_user or s.per_server)]
        wanted = [names[s.key] for s in specs]
        if not self.remove_volumes_on_delete:
            if wanted:
                self.log.info(
                    "Keeping volumes %s of deleted %s (remove_volumes_on_delete is off)",
                    ", ".join(wanted),
                    target,
                )
                audit("jupyterhub", "delete-volumes", target, "kept", volumes=wanted)
            return

        outcomes: dict[str, dict[str, str]] = {
            "removed": {},
            "absent": {},
            "not-owned": {},
            "failed": {},
        }
        async with user_lock(self.user.id):
            try:
                await self._remove_stopped_container()
            except APIError as e:
                # the volume removal below then reports the volumes in use
                self.log.error("Could not remove the container of %s: %s", target, e)
            for name in wanted:
                outcome, reason = await self._remove_owned_volume(name)
                outcomes[outcome][name] = reason
        removed = list(outcomes["removed"])
        self.log.info(
            "Deleted %s %s: removed volumes [%s]%s%s%s",
            "user" if whole_user else "server",
            target,
            ", ".join(removed),
            f"; already gone [{', '.join(outcomes['absent'])}]" if outcomes["absent"] else "",
            f"; kept, not theirs: {outcomes['not-owned']}" if outcomes["not-owned"] else "",
            f"; FAILED: {outcomes['failed']}" if outcomes["failed"] else "",
        )
        audit(
            "jupyterhub",
            "delete-volumes",
            target,
            "failed" if outcomes["failed"] else "ok",
            removed=removed,
            kept_not_owned=sorted(outcomes["not-owned"]),
            failed=outcomes["failed"],
        )

    async def _remove_stopped_container(self: ExtDockerSpawner) -> None:
        # with remove=False the stopped container still holds the volumes
        try:
            info = await self.docker("inspect_container", self.container_name)
        except NotFound:
            return
        why = ownership.container_refusal(
            info["Name"].lstrip("/"),
            info.get("Config", {}).get("Labels"),
            owner=self.owner(),
            server_name=self.name,
        )
        if why:
            self.log.warning("Not removing container: %s", why)
            return
        if info.get("State", {}).get("Running"):
            self.log.warning("Not removing container %s: it is running", info["Name"])
            return
        try:
            await self.docker("remove_container", info["Id"], v=True)
            self.log.info("Removed stopped container %s of %s", info["Name"], self._log_name)
        except APIError as e:
            if e.status_code not in (404, 409):  # gone, or removal already in progress
                raise

    async def _remove_owned_volume(self: ExtDockerSpawner, name: str) -> tuple[str, str]:
        """(outcome, reason): removed, absent, not-owned or failed.

        On the engine that holds the volumes (a Swarm worker: a job on it).
        """
        engine = self.volume_engine()
        try:
            info = await calls.call(engine, "inspect_volume", name)
        except NotFound:
            return "absent", ""
        # same name, other owner (or made by hand): not ours to delete
        why = ownership.volume_refusal(name, info.get("Labels"), owner=self.owner(), scope="user")
        if why:
            self.log.warning("Not removing volume %s: %s", name, why)
            return "not-owned", why
        deadline = time.monotonic() + IN_USE_GRACE_SECONDS
        while True:
            try:
                await calls.call(engine, "remove_volume", name)
                return "removed", ""
            except NotFound:
                return "absent", ""
            except APIError as e:
                # 409: still in use, e.g. by a container Docker is auto-removing
                if e.status_code != 409 or time.monotonic() > deadline:
                    self.log.error("Could not remove volume %s: %s", name, explain(e))
                    return "failed", explain(e)
            await asyncio.sleep(0.5)
