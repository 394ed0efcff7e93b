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

from . import archive, secretopts

LABEL_PREFIX = "jupyterhub-ext."
LABEL_MANAGED = LABEL_PREFIX + "managed"
LABEL_KEY = LABEL_PREFIX + "volume-key"
LABEL_DESCRIPTION = LABEL_PREFIX + "description"
LABEL_SCOPE = LABEL_PREFIX + "scope"
LABEL_OWNER_ID = LABEL_PREFIX + "owner-id"
LABEL_OWNER_NAME = LABEL_PREFIX + "owner-name"
LABEL_SERVER_NAME = LABEL_PREFIX + "server-name"
LABEL_OWNER_CREATED = LABEL_PREFIX + "owner-created"

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
}
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
        if not _KEY_RE.match(key):
            raise VolumeSetError(
                f"{where}: key must be lowercase letters, digits, '-' or '_' "
                "and start with a letter"
            )
        if key in seen_keys:
            raise VolumeSetError(f"{where}: key {key!r} is used twice")
        seen_keys.add(key)
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
        if scope == "archive":
            entry = _archive_entry(where, key, entry)
        for required in ("name", "mount"):
            if not isinstance(entry.get(required), str) or not entry[required]:
                raise VolumeSetError(f"{where}: {required!r} is required (a string)")
        name = entry["name"]
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
        mount = entry["mount"]
        if not posixpath.isabs(mount):
            raise VolumeSetError(f"{where}: mount {mount!r} must be an absolute path")
        norm = posixpath.normpath(mount)
        if norm in seen_mounts:
            raise VolumeSetError(
                f"{where}: mount path {norm!r} is already used by volume_set[{seen_mounts[norm]!r}]"
            )
        seen_mounts[norm] = key
        resettable = entry.get("resettable", scope == "user")
        if scope != "user" and resettable:
            raise VolumeSetError(f"{where}: {scope} volumes cannot be resettable by users")
        for flag in ("resettable", "read_only"):
            if flag in entry and not isinstance(entry[flag], bool):
                raise VolumeSetError(f"{where}: {flag!r} must be true or false")
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
        specs.append(
            VolumeSpec(
                key=key,
                name=name,
                mount=norm,
                description=str(entry.get("description", "")),
                resettable=bool(resettable),
                scope=scope,
                read_only=bool(entry.get("read_only", False)),
                driver=str(entry.get("driver", "local")),
                driver_opts=dict(driver_opts),
                union=tuple(entry.get("union", ())),
            )
        )
    return specs


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
