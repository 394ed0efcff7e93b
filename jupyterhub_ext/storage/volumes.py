"""Per-user volume sets: declaration, validation, naming and labels.

Pure functions only; the spawner turns these into Docker objects.
A volume set is declared as a dict keyed by volume key, or as a list of dicts
each carrying its ``key`` (the list form lets us catch a key used twice).
"""

from __future__ import annotations

import posixpath
import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jupyterhub_ext.engine.labels import (  # noqa: F401 - re-exported for the builders
    LABEL_DESCRIPTION,
    LABEL_KEY,
    LABEL_MANAGED,
    LABEL_OWNER_CREATED,
    LABEL_OWNER_ID,
    LABEL_OWNER_NAME,
    LABEL_PREFIX,
    LABEL_SCOPE,
    LABEL_SERVER_NAME,
)
from jupyterhub_ext.storage import archive, secretopts

USER_FIELDS = ("{username}", "{safe_username}")
_KEY_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
# Docker's own rule for volume names
_DOCKER_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
_SCOPES = ("user", "shared", "archive")
# The Docker name of an archive volume when the admin gives none.
DEFAULT_ARCHIVE_NAME = "jupyterhub-archive-{key}"
_KNOWN_FIELDS = {
    "key",
    "name",
    "mount",
    "description",
    "resettable",
    "scope",
    "read_only",
    "driver",
    "driver_opts",
    "union",
    "owner",
    "group",
    "mode",
    "soft_limit",
    "hard_limit",
    "on_hard_limit",
}
# Who owns a fresh plain local shared volume when the entry says nothing: the
# single-user image's user and group (jovyan, users), group-writable with
# setgid so files made in it keep the group. Docker would make it root:root 755.
DEFAULT_SHARED_OWNER = "1000"
DEFAULT_SHARED_GROUP = "100"
DEFAULT_SHARED_MODE = 0o2775
_ID_RE = re.compile(r"^(?:[0-9]{1,10}|[a-z_][a-z0-9_-]{0,31})$")
# A namespace with every field DockerSpawner offers, used to check templates.
_SAMPLE_NS = {
    "username": "sample-2euser",
    "safe_username": "sample-2euser",
    "raw_username": "sample.user",
    "servername": "lab",
    "raw_servername": "lab",
    "imagename": "image",
    "prefix": "jupyter",
}


class VolumeSetError(ValueError):
    """A volume set that cannot work; the message names the entry."""


@dataclass(frozen=True)
class VolumeSpec:
    key: str
    name: str
    mount: str
    description: str = ""
    resettable: bool = False
    scope: str = "user"
    read_only: bool = False
    driver: str = "local"
    driver_opts: Mapping[str, str] = field(default_factory=dict)
    # archive volumes: host directories, highest priority first
    union: tuple[str, ...] = ()
    # applied by a helper container right after the volume is created
    # (plain local volumes only; see ``permissions``)
    owner: str = ""
    group: str = ""
    mode: int | None = None
    # quotas (bytes; None: none), measured by the periodic usage scan (quota.py)
    soft_limit: int | None = None
    hard_limit: int | None = None
    on_hard_limit: str = "warn"  # or "refuse": the next start is refused

    @property
    def plain_local(self) -> bool:
        """A volume whose data lives in Docker's own storage (not a share or a bind)."""
        return self.driver == "local" and not self.driver_opts

    def permissions(self) -> tuple[str, str, int] | None:
        """(owner, group, mode) to set on a freshly created volume, or None to leave it.

        Plain local shared volumes get the image user's defaults; per-user
        volumes only what the entry says (Docker already copies the image's
        ownership when the mount path exists there).
        """
        if not self.plain_local:
            return None
        if self.scope == "shared":
            return (
                self.owner or DEFAULT_SHARED_OWNER,
                self.group or DEFAULT_SHARED_GROUP,
                DEFAULT_SHARED_MODE if self.mode is None else self.mode,
            )
        if self.scope == "user" and (self.owner or self.group or self.mode is not None):
            return (self.owner, self.group, -1 if self.mode is None else self.mode)
        return None

    @property
    def per_user(self) -> bool:
        return self.scope == "user"

    @property
    def per_server(self) -> bool:
        """Each named server has its own copy (the name contains ``{servername}``)."""
        return self.per_user and "servername" in _template_fields(self.name)

    @property
    def is_archive(self) -> bool:
        return self.scope == "archive"

    def render_name(self, namespace: Mapping[str, str]) -> str:
        """The Docker volume name for one spawner's template namespace."""
        name = self.name.format(**namespace)
        if self.is_archive:
            # a new directory list must give a new volume: Docker keeps old options
            name = f"{name}-{archive.digest(self.driver_opts)}"
        return name

    def public(self) -> dict[str, Any]:
        """What may be shown to a user: never driver options (they hold secrets)."""
        return {
            "key": self.key,
            "mount": self.mount,
            "description": self.description,
            "resettable": self.resettable,
            "scope": self.scope,
            "read_only": self.read_only,
        }


def _template_fields(template: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(template) if f}


def _entries(raw: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> list[tuple[str, dict]]:
    if isinstance(raw, Mapping):
        out = []
        for key, entry in raw.items():
            if not isinstance(entry, Mapping):
                raise VolumeSetError(
                    f"volume_set[{key!r}] must be a dict, got {type(entry).__name__}"
                )
            if "key" in entry and entry["key"] != key:
                raise VolumeSetError(
                    f"volume_set[{key!r}] has key={entry['key']!r}; drop it or make them equal"
                )
            out.append((str(key), dict(entry)))
        return out
    out = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, Mapping) or "key" not in entry:
            raise VolumeSetError(f"volume_set entry #{i} must be a dict with a 'key'")
        out.append((str(entry["key"]), dict(entry)))
    return out


def parse_volume_set(raw: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> list[VolumeSpec]:
    """Validate a declared volume set and return its entries in order.

    Raises VolumeSetError naming the offending entry.
    """
    specs: list[VolumeSpec] = []
    seen_keys: set[str] = set()
    seen_mounts: dict[str, str] = {}
    for key, entry in _entries(raw):
        where = f"volume_set[{key!r}]"
        _check_key(where, key, seen_keys)
        seen_keys.add(key)
        scope = _scope(where, entry)
        if scope == "archive":
            entry = _archive_entry(where, key, entry)
        for required in ("name", "mount"):
            if not isinstance(entry.get(required), str) or not entry[required]:
                raise VolumeSetError(f"{where}: {required!r} is required (a string)")
        _check_name_template(where, entry["name"], scope)
        mount = _mount_path(where, entry["mount"], seen_mounts)
        seen_mounts[mount] = key
        specs.append(_build_spec(where, key, entry, scope, mount))
    return specs


def _check_key(where: str, key: str, seen_keys: set[str]) -> None:
    if not _KEY_RE.match(key):
        raise VolumeSetError(
            f"{where}: key must be lowercase letters, digits, '-' or '_' and start with a letter"
        )
    if key in seen_keys:
        raise VolumeSetError(f"{where}: key {key!r} is used twice")


def _scope(where: str, entry: Mapping[str, Any]) -> str:
    """The entry's scope, after checking its fields are all known."""
    unknown = set(entry) - _KNOWN_FIELDS
    if unknown:
        raise VolumeSetError(
            f"{where}: unknown field(s) {sorted(unknown)}; known: {sorted(_KNOWN_FIELDS)}"
        )
    scope = entry.get("scope", "archive" if "union" in entry else "user")
    if scope not in _SCOPES:
        raise VolumeSetError(f"{where}: scope must be one of {_SCOPES}, got {scope!r}")
    if "union" in entry and scope != "archive":
        raise VolumeSetError(f"{where}: 'union' makes an archive; drop scope {scope!r}")
    return scope


def _check_name_template(where: str, name: str, scope: str) -> None:
    fields = _template_fields(name)
    unknown_fields = fields - set(_SAMPLE_NS)
    if unknown_fields:
        raise VolumeSetError(
            f"{where}: name template {name!r} uses unknown field(s) "
            f"{sorted(unknown_fields)}; available: {sorted(_SAMPLE_NS)}"
        )
    if "raw_username" in fields or "raw_servername" in fields:
        raise VolumeSetError(
            f"{where}: use {{username}}/{{servername}} (escaped), not raw names, "
            "in Docker volume names"
        )
    has_user = any(f.strip("{}") in fields for f in USER_FIELDS)
    if scope == "user" and not has_user:
        raise VolumeSetError(
            f"{where}: per-user name template {name!r} must contain {{username}}, "
            "or every user would share one volume (use scope='shared' for that)"
        )
    if scope != "user" and fields & {"username", "safe_username", "raw_username"}:
        raise VolumeSetError(
            f"{where}: a {scope} volume's name {name!r} must not depend on the user"
        )
    rendered = name.format(**_SAMPLE_NS)
    if not _DOCKER_NAME_RE.match(rendered):
        raise VolumeSetError(
            f"{where}: name template {name!r} does not give a valid Docker volume "
            f"name (got {rendered!r})"
        )


def _mount_path(where: str, mount: str, seen_mounts: Mapping[str, str]) -> str:
    """The normalized mount path, refused if relative or already taken."""
    if not posixpath.isabs(mount):
        raise VolumeSetError(f"{where}: mount {mount!r} must be an absolute path")
    norm = posixpath.normpath(mount)
    if norm in seen_mounts:
        raise VolumeSetError(
            f"{where}: mount path {norm!r} is already used by volume_set[{seen_mounts[norm]!r}]"
        )
    return norm


def _resettable(where: str, entry: Mapping[str, Any], scope: str) -> bool:
    resettable = entry.get("resettable", scope == "user")
    if scope != "user" and resettable:
        raise VolumeSetError(f"{where}: {scope} volumes cannot be resettable by users")
    for flag in ("resettable", "read_only"):
        if flag in entry and not isinstance(entry[flag], bool):
            raise VolumeSetError(f"{where}: {flag!r} must be true or false")
    return bool(resettable)


def _driver_opts(where: str, entry: Mapping[str, Any]) -> dict[str, str]:
    """The entry's driver options: strings only, secret references well formed."""
    driver_opts = entry.get("driver_opts", {})
    if not isinstance(driver_opts, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in driver_opts.items()
    ):
        raise VolumeSetError(f"{where}: driver_opts must map strings to strings")
    for opt, value in driver_opts.items():
        try:
            secretopts.references(value)
        except secretopts.SecretError as e:
            raise VolumeSetError(f"{where}: driver_opts[{opt!r}]: {e}") from None
    return driver_opts


def _build_spec(
    where: str, key: str, entry: Mapping[str, Any], scope: str, mount: str
) -> VolumeSpec:
    """The entry's remaining fields checked, in order, and the spec built."""
    resettable = _resettable(where, entry, scope)
    driver_opts = _driver_opts(where, entry)
    owner, group, mode = _permission_fields(where, entry, scope, driver_opts)
    soft, hard, on_hard = _quota_fields(where, entry, scope)
    return VolumeSpec(
        key=key,
        name=entry["name"],
        mount=mount,
        description=str(entry.get("description", "")),
        resettable=resettable,
        scope=scope,
        read_only=bool(entry.get("read_only", False)),
        driver=str(entry.get("driver", "local")),
        driver_opts=dict(driver_opts),
        union=tuple(entry.get("union", ())),
        owner=owner,
        group=group,
        mode=mode,
        soft_limit=soft,
        hard_limit=hard,
        on_hard_limit=on_hard,
    )


def parse_mode(value: Any) -> int:
    """A permission mode from an int (``0o2775``) or an octal string (``"2775"``)."""
    if isinstance(value, bool):
        raise ValueError("a mode is a number")
    if isinstance(value, int):
        mode = value
    elif isinstance(value, str) and re.fullmatch(r"0?o?[0-7]{3,4}", value.strip()):
        mode = int(value.strip().replace("o", ""), 8)
    else:
        raise ValueError(f"{value!r} is not an octal mode like '2775' or 0o2775")
    if not 0 <= mode <= 0o7777:
        raise ValueError(f"mode {oct(mode)} is out of range (0 to 0o7777)")
    return mode


def _permission_fields(
    where: str, entry: Mapping[str, Any], scope: str, driver_opts: Mapping[str, str]
) -> tuple[str, str, int | None]:
    given = [f for f in ("owner", "group", "mode") if f in entry]
    if not given:
        return "", "", None
    if scope == "archive":
        raise VolumeSetError(f"{where}: an archive is read-only; drop {given}")
    if entry.get("driver", "local") != "local" or driver_opts:
        raise VolumeSetError(
            f"{where}: {given} apply only to plain local volumes. A network share's "
            "ownership is the file server's (set it there, or with the mount options, "
            "e.g. CIFS uid=1000,gid=100); a bind mount's is the host directory's"
        )
    ids = []
    for f in ("owner", "group"):
        v = entry.get(f, "")
        v = str(v) if isinstance(v, int) and not isinstance(v, bool) else v
        if not isinstance(v, str) or (v and not _ID_RE.match(v)):
            raise VolumeSetError(f"{where}: {f!r} must be a numeric id or a name, got {v!r}")
        ids.append(v)
    mode = None
    if "mode" in entry:
        try:
            mode = parse_mode(entry["mode"])
        except ValueError as e:
            raise VolumeSetError(f"{where}: 'mode': {e}") from None
    return ids[0], ids[1], mode


_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgtp]?)(i?)b?\s*$", re.IGNORECASE)


def parse_size(value: Any) -> int:
    """Bytes from an int or a human size: ``"500M"``, ``"10 GiB"``, ``"1.5G"``, ``"2TB"``.

    ``k``/``M``/``G``/``T``/``P`` are powers of 1000, with ``i`` (``GiB``)
    powers of 1024.
    """
    if isinstance(value, bool):
        raise ValueError("a size is a number of bytes or a text like '10G'")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    m = _SIZE_RE.match(value) if isinstance(value, str) else None
    if not m:
        raise ValueError(f"{value!r} is not a size like 500M, 10GiB or 2000000000")
    number, prefix, binary = m.groups()
    power = "kmgtp".find(prefix.lower()) + 1 if prefix else 0
    base = 1024 if binary else 1000
    return int(float(number) * base**power)


def _quota_fields(where: str, entry: Mapping[str, Any], scope: str) -> tuple:
    given = [f for f in ("soft_limit", "hard_limit", "on_hard_limit") if f in entry]
    if not given:
        return None, None, "warn"
    if scope != "user":
        raise VolumeSetError(f"{where}: quotas are per user; drop {given} from a {scope} volume")
    sizes = []
    for f in ("soft_limit", "hard_limit"):
        if entry.get(f) is None:
            sizes.append(None)
            continue
        try:
            sizes.append(parse_size(entry[f]))
        except ValueError as e:
            raise VolumeSetError(f"{where}: {f!r}: {e}") from None
    soft, hard = sizes
    if soft is not None and hard is not None and soft > hard:
        raise VolumeSetError(f"{where}: soft_limit ({soft} B) is above hard_limit ({hard} B)")
    on_hard = entry.get("on_hard_limit", "warn")
    if on_hard not in ("warn", "refuse"):
        raise VolumeSetError(f"{where}: on_hard_limit must be 'warn' or 'refuse', got {on_hard!r}")
    if on_hard == "refuse" and hard is None:
        raise VolumeSetError(f"{where}: on_hard_limit 'refuse' needs a hard_limit")
    return soft, hard, on_hard


def _archive_entry(where: str, key: str, entry: dict) -> dict:
    """Check an archive (union) entry and fill in what it implies."""
    if "union" not in entry:
        raise VolumeSetError(
            f"{where}: scope 'archive' needs 'union': a list of host directories, "
            "highest priority first"
        )
    for name, allowed in (("read_only", True), ("resettable", False)):
        if name in entry and entry[name] is not allowed:
            raise VolumeSetError(
                f"{where}: an archive is always read-only and never resettable; drop {name!r}"
            )
    for name in ("driver", "driver_opts"):
        if name in entry:
            raise VolumeSetError(
                f"{where}: {name!r} is set by the union; for a network share "
                "use scope 'shared' with driver_opts instead"
            )
    try:
        dirs = archive.parse_directories(entry["union"])
    except archive.ArchiveError as e:
        raise VolumeSetError(f"{where}: {e}") from None
    return {
        **entry,
        "name": entry.get("name", DEFAULT_ARCHIVE_NAME.format(key=key)),
        "union": dirs,
        "read_only": True,
        "resettable": False,
        "driver": "local",
        "driver_opts": archive.driver_opts(dirs),
    }


def volume_labels(
    spec: VolumeSpec,
    *,
    owner_id: int | None,
    owner_name: str | None,
    server_name: str = "",
    owner_created: str = "",
) -> dict[str, str]:
    """Labels a volume is created with, so it can be found without its name."""
    labels = {
        LABEL_MANAGED: "true",
        LABEL_KEY: spec.key,
        LABEL_DESCRIPTION: spec.description,
        LABEL_SCOPE: spec.scope,
    }
    if spec.per_user:
        labels[LABEL_OWNER_ID] = str(owner_id)
        labels[LABEL_OWNER_NAME] = owner_name or ""
        if owner_created:
            # user ids can be reused by the database: the creation time tells users apart
            labels[LABEL_OWNER_CREATED] = owner_created
        if spec.per_server:
            labels[LABEL_SERVER_NAME] = server_name
    return labels
