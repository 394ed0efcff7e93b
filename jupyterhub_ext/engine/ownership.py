"""The one ownership rule for Docker volumes and containers.

A Docker name alone never proves whose object it is: names come from
templates, an admin may have made a volume by hand, a user deleted with her
volumes kept leaves them for whoever signs up next under that name, and a
database may hand a new user a deleted user's id. So every volume or
container we are about to mount, start, reset, move or remove is checked
here, against its labels, before it is used:

- a per-user volume must carry this user's owner id, and this user's
  creation time where the volume records one (ids can be reused);
- no volume that a rename job is still writing is ever mounted;
- a shared or archive entry never mounts a volume that carries an owner
  (it is someone's private volume that happens to have that name);
- a container must carry this user's owner id and this server's name.

Pure functions on labels; the callers (spawner, reset, delete, rename) do
the Docker calls and turn a refusal into their own error.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jupyterhub_ext.engine.labels import (
    LABEL_MANAGED,
    LABEL_OWNER_CREATED,
    LABEL_OWNER_ID,
    LABEL_OWNER_NAME,
    LABEL_RENAME_JOB,
    LABEL_SERVER_NAME,
)

ADMIN_HINT = (
    "An administrator can inspect it (docker volume inspect {name}), then remove or "
    "rename it, or change the volume_set name template."
)


@dataclass(frozen=True)
class Owner:
    """Who a per-user object belongs to: the hub user's id, name and creation time."""

    id: int
    name: str
    created: str = ""

    @classmethod
    def of(cls, user: Any) -> Owner:
        """The owner record of a JupyterHub ``User`` (or orm.User)."""
        return cls(int(user.id), str(user.name), created_stamp(getattr(user, "created", None)))


def created_stamp(created: datetime | None) -> str:
    """A user's creation time as stored in labels (UTC, to the second)."""
    if created is None:
        return ""
    return created.replace(tzinfo=None).isoformat(timespec="seconds")


def owner_labels(owner: Owner) -> dict[str, str]:
    """The owner labels put on every per-user volume and container we create."""
    labels = {LABEL_OWNER_ID: str(owner.id), LABEL_OWNER_NAME: owner.name}
    if owner.created:
        labels[LABEL_OWNER_CREATED] = owner.created
    return labels


def _owner_refusal(kind: str, name: str, labels: Mapping[str, str], owner: Owner) -> str | None:
    label_id = labels.get(LABEL_OWNER_ID)
    if label_id != str(owner.id):
        who = labels.get(LABEL_OWNER_NAME) or "nobody recorded"
        return (
            f"{kind} {name} belongs to another user (owner id {label_id or 'none'}, "
            f"name {who!r}), not to {owner.name!r}"
        )
    label_created = labels.get(LABEL_OWNER_CREATED)
    # volumes made before this label existed carry only the id
    if label_created and owner.created and label_created != owner.created:
        return (
            f"{kind} {name} belongs to an earlier user with the same id "
            f"(created {label_created}; {owner.name!r} was created {owner.created})"
        )
    return None


def volume_refusal(
    name: str,
    labels: Mapping[str, str] | None,
    *,
    owner: Owner,
    scope: str | None,
    unfinished_jobs: Container[str] = (),
    adopt_unlabelled: bool = False,
) -> str | None:
    """Why volume ``name`` must not be handed to ``owner``; None when it may.

    ``scope``: the volume-set entry's scope (``user``, ``shared``,
    ``archive``), or None for a volume the admin named in DockerSpawner's own
    ``volumes`` (unlabelled volumes are then allowed, as DockerSpawner does).
    ``unfinished_jobs``: keys of rename jobs still running.
    ``adopt_unlabelled``: let a per-user entry mount a volume with no labels
    (made by plain DockerSpawner before switching).
    """
    labels = labels or {}
    job = labels.get(LABEL_RENAME_JOB)
    if job and job in unfinished_jobs:
        return f"volume {name} is being written by rename job {job}; wait until it ends"
    if scope in ("shared", "archive"):
        if LABEL_OWNER_ID in labels:
            return (
                f"volume {name} is declared {scope} but is labelled as the private "
                f"volume of user {labels.get(LABEL_OWNER_NAME)!r}"
            )
        return None
    if scope is None and LABEL_OWNER_ID not in labels:
        return None
    if LABEL_MANAGED not in labels and LABEL_OWNER_ID not in labels:
        if adopt_unlabelled:
            return None
        return (
            f"volume {name} exists without owner labels (made outside jupyterhub_ext, "
            "e.g. by plain DockerSpawner), so it cannot be told whose it is; an "
            "administrator can allow it with c.ExtDockerSpawner.adopt_unlabelled"
        )
    return _owner_refusal("volume", name, labels, owner)


def container_refusal(
    name: str,
    labels: Mapping[str, str] | None,
    *,
    owner: Owner,
    server_name: str,
    adopt_unlabelled: bool = False,
) -> str | None:
    """Why container ``name`` is not this owner's server ``server_name``; None when it is."""
    labels = labels or {}
    if LABEL_OWNER_ID not in labels:
        if adopt_unlabelled:
            return None
        return (
            f"container {name} has no jupyterhub_ext owner labels (made by someone else, "
            "or by plain DockerSpawner: see c.ExtDockerSpawner.adopt_unlabelled)"
        )
    why = _owner_refusal("container", name, labels, owner)
    if why:
        return why
    if labels.get(LABEL_SERVER_NAME, "") != server_name:
        return (
            f"container {name} is the server {labels.get(LABEL_SERVER_NAME)!r} of "
            f"{owner.name!r}, not {server_name!r}"
        )
    return None
