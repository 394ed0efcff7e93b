"""Docker access by hub group: the host's Docker socket, and privileged containers.

Admins grant these by adding people to groups on the admin page; the groups are
read from the hub database at every spawn, so adding someone and restarting
their server applies it and removing them and restarting takes it away. The
groups are (re)created when missing, so deleting one on the admin page does not
silently turn the feature into "nobody, forever" without the group showing up.

Security model: a member of the docker-sock group controls the Docker engine,
which is root on the Docker host (``docker run -v /:/host --privileged ...``).
A member of the docker-privileged group runs with every capability and every
host device. Only grant these to people you would give root.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from jupyterhub import orm

DEFAULT_SOCK_GROUP = "docker-sock"
DEFAULT_PRIVILEGED_GROUP = "docker-privileged"
DEFAULT_SOCK_PATH = "/var/run/docker.sock"
# on every container we create: what it was granted, e.g. "docker-sock,privileged"


# -- groups in the hub database --------------------------------------------------


def ensure_groups(db: Any, names: Iterable[str]) -> list[str]:
    """Create the named groups that do not exist; return the names created."""
    created = []
    for name in dict.fromkeys(n for n in names if n):
        # the name column only: Group.find would load the group's members,
        # roles and properties, on the event loop, at every spawn
        if db.query(orm.Group.id).filter(orm.Group.name == name).first() is None:
            db.add(orm.Group(name=name))
            created.append(name)
    if created:
        db.commit()
    return created


def user_group_names(db: Any, user_id: int) -> set[str]:
    """The user's groups as the database has them now.

    A query, not ``user.groups``: a relationship loaded earlier in the hub's
    session could be stale if another process (a second hub replica, a script)
    changed the membership.
    """
    rows = db.query(orm.Group.name).filter(orm.Group.users.any(orm.User.id == user_id)).all()
    return {name for (name,) in rows}


# -- the decision ---------------------------------------------------------------------


@dataclass(frozen=True)
class AccessDecision:
    """Which group granted what (``None``: not granted)."""

    docker_sock: str | None = None
    privileged: str | None = None

    def summary(self) -> str:
        parts = []
        parts.append(
            f"docker-sock via group {self.docker_sock!r}" if self.docker_sock else "docker-sock no"
        )
        parts.append(
            f"privileged via group {self.privileged!r}" if self.privileged else "privileged no"
        )
        return ", ".join(parts)


def decide_access(
    user_groups: Iterable[str], *, sock_group: str, privileged_group: str
) -> AccessDecision:
    """Grants from group membership only; an empty group name turns the grant off."""
    groups = set(user_groups)
    return AccessDecision(
        docker_sock=sock_group if sock_group and sock_group in groups else None,
        privileged=privileged_group if privileged_group and privileged_group in groups else None,
    )


def socket_gid(host_path: str, configured: int | str | None) -> int | None:
    """The group id that may use the socket, added to the container's groups.

    Single-user images run as an unprivileged user; without the socket's group
    it cannot connect. ``"auto"`` reads the owner group of ``host_path`` when
    the hub sees the same file (same host, or the socket mounted at the same
    path); an int is used as given; ``None`` adds nothing.
    """
    if configured is None or isinstance(configured, int):
        return configured
    if str(configured).strip().isdigit():
        return int(str(configured).strip())
    try:
        return os.stat(host_path).st_gid
    except OSError:
        return None


def access_host_config(
    decision: AccessDecision,
    *,
    sock_host_path: str,
    sock_container_path: str,
    sock_gid: int | None,
) -> dict[str, Any]:
    """Host-config fragment for the grants (merged with everything else, lists extend)."""
    frag: dict[str, Any] = {}
    if decision.docker_sock:
        frag["binds"] = [f"{sock_host_path}:{sock_container_path}:rw"]
        if sock_gid is not None:
            frag["group_add"] = [str(sock_gid)]
    if decision.privileged:
        frag["privileged"] = True
    return frag


def access_environment(decision: AccessDecision, *, sock_container_path: str) -> dict[str, str]:
    """Point Docker clients inside at the socket (it may not be at the default path)."""
    if decision.docker_sock:
        return {"DOCKER_HOST": f"unix://{sock_container_path}"}
    return {}


# -- what user_options must not be able to do --------------------------------------------


def escalations(host_config: Mapping[str, Any] | None, sock_host_path: str) -> list[str]:
    """What a host-config dict grants that only our groups may grant."""
    if not host_config or not isinstance(host_config, Mapping):
        return []
    found = []
    if host_config.get("privileged"):
        found.append("privileged")
    sources: list[str] = []
    binds = host_config.get("binds") or ()
    if isinstance(binds, Mapping):
        sources += [str(k) for k in binds]
    else:
        sources += [str(b).split(":", 1)[0] for b in binds]
    for m in host_config.get("mounts") or ():
        if isinstance(m, Mapping):
            sources.append(str(m.get("Source") or m.get("source") or ""))
    if any(_is_socket(s, sock_host_path) for s in sources):
        found.append("docker socket")
    return found


def volume_escalations(volumes: Mapping[str, Any] | None, sock_host_path: str) -> list[str]:
    """DockerSpawner's ``volumes`` trait (host path -> container path) binding the socket."""
    if not volumes or not isinstance(volumes, Mapping):
        return []
    return ["docker socket"] if any(_is_socket(str(k), sock_host_path) for k in volumes) else []


def _is_socket(source: str, sock_host_path: str) -> bool:
    source = source.rstrip("/")
    return bool(source) and (
        source == sock_host_path.rstrip("/") or source.endswith("/docker.sock")
    )
