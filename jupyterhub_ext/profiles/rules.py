"""Spawn profiles chosen per group, free GPUs per server, and an admission check.

Pure functions on plain values (the spawner does the Docker calls):

- ``parse_profiles``: check ``c.ExtDockerSpawner.profiles`` at hub start,
  with messages naming the entry.
- ``choose``: which profile a spawn gets, from the user's groups and the
  requested slug (403 not allowed, 400 unknown slug listing the valid ones).
- ``pick_devices``: the least-loaded GPUs with room, from what the running
  containers' labels say they hold.
- ``admission_refusal``: whether the engine has memory left for one more
  server's ``mem_guarantee``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jupyterhub_ext.engine.labels import LABEL_GPU_DEVICES

# on containers we create: the chosen profile, the GPUs held, the memory promised

PROFILE_KEYS = (
    "slug",
    "display_name",
    "description",
    "image",
    "mem_limit",
    "mem_guarantee",
    "cpu_limit",
    "gpus",
    "environment",
    "groups",
    "default",
)
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_MEM_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)


class ProfileError(ValueError):
    """An invalid ``profiles`` setting (raised at hub start)."""


class ProfileChoiceError(Exception):
    """A spawn's profile request that cannot be honoured; ``status`` is the HTTP code."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def parse_mem(value: Any, *, where: str = "memory") -> int | None:
    """Bytes from ``1073741824``, ``"512M"``, ``"2G"``, ``"1.5GiB"``; None stays None.

    Units are powers of 1024, as JupyterHub's ``mem_limit`` reads them.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ProfileError(f"{where}: {value!r} is not a size")
    if isinstance(value, (int, float)):
        if value <= 0:
            raise ProfileError(f"{where}: {value!r} must be positive")
        return int(value)
    m = _MEM_RE.match(str(value))
    if not m:
        raise ProfileError(
            f"{where}: {value!r} is not a size; use bytes or a number with K, M, G or T "
            "(e.g. '512M', '4G')"
        )
    n = int(float(m.group(1)) * _UNITS[m.group(2).upper()])
    if n <= 0:
        raise ProfileError(f"{where}: {value!r} must be positive")
    return n


def format_bytes(n: int | None) -> str:
    """``4294967296`` -> ``4 GiB`` (for people)."""
    if n is None:
        return "-"
    for unit, size in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            v = n / size
            return f"{v:.0f} {unit}" if v == int(v) else f"{v:.1f} {unit}"
    return f"{n} B"


@dataclass(frozen=True)
class Profile:
    """One validated entry of ``profiles``."""

    slug: str
    display_name: str
    description: str = ""
    image: str | None = None
    mem_limit: int | None = None
    mem_guarantee: int | None = None
    cpu_limit: float | None = None
    gpus: int | str = 0  # 0, a number of whole GPUs, or "all"
    environment: Mapping[str, str] = field(default_factory=dict)
    groups: tuple[str, ...] = ()
    default: bool = False

    @property
    def needs_gpu(self) -> bool:
        return self.gpus == "all" or bool(self.gpus)

    def allowed_for(self, user_groups: Iterable[str]) -> bool:
        return not self.groups or bool(set(self.groups) & set(user_groups))

    def granted_by(self, user_groups: Iterable[str]) -> list[str]:
        """The user's groups that allow this profile (empty: open to everyone)."""
        return [g for g in self.groups if g in set(user_groups)]

    def resources(self) -> list[str]:
        """Short lines for the spawn page and the home page."""
        out = []
        if self.cpu_limit is not None:
            out.append(f"{self.cpu_limit:g} CPU")
        if self.mem_limit is not None:
            line = f"{format_bytes(self.mem_limit)} memory"
            if self.mem_guarantee is not None:
                line += f" ({format_bytes(self.mem_guarantee)} guaranteed)"
            out.append(line)
        elif self.mem_guarantee is not None:
            out.append(f"{format_bytes(self.mem_guarantee)} memory guaranteed")
        if self.gpus == "all":
            out.append("all GPUs")
        elif self.gpus:
            out.append(f"{self.gpus} GPU" + ("s" if self.gpus != 1 else ""))
        return out

    def model(self) -> dict[str, Any]:
        """JSON for the API."""
        return {
            "slug": self.slug,
            "display_name": self.display_name,
            "description": self.description,
            "image": self.image,
            "mem_limit": self.mem_limit,
            "mem_guarantee": self.mem_guarantee,
            "cpu_limit": self.cpu_limit,
            "gpus": self.gpus,
            "groups": list(self.groups),
            "default": self.default,
        }


def _parse_one(i: int, raw: Any) -> Profile:
    where = _check_entry(i, raw)
    display, description, image = _text_fields(where, raw)
    mem_limit, mem_guarantee = _memory_fields(where, raw)
    # keyword arguments are evaluated in order, so the checks run in the order written
    return Profile(
        slug=raw["slug"],
        display_name=display,
        description=description,
        image=image,
        mem_limit=mem_limit,
        mem_guarantee=mem_guarantee,
        cpu_limit=_cpu_limit(where, raw),
        gpus=_gpus(where, raw),
        environment=_environment(where, raw),
        groups=_groups(where, raw),
        default=_default(where, raw),
    )


def _check_entry(i: int, raw: Any) -> str:
    """Check an entry's shape, keys and slug; return how messages name it."""
    if not isinstance(raw, Mapping):
        raise ProfileError(f"profiles[{i}] must be a dict, not {type(raw).__name__}")
    slug = raw.get("slug")
    where = f"profiles[{i}]" + (f" ({slug!r})" if isinstance(slug, str) else "")
    unknown = sorted(set(raw) - set(PROFILE_KEYS))
    if unknown:
        raise ProfileError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; "
            f"known keys: {', '.join(PROFILE_KEYS)}"
        )
    if not isinstance(slug, str) or not SLUG_RE.match(slug):
        raise ProfileError(
            f"{where}: 'slug' must be lower-case letters, digits, '-' or '_' "
            f"(at most 63, starting with a letter or digit), not {slug!r}"
        )
    return where


def _text_fields(where: str, raw: Mapping[str, Any]) -> tuple[str, str, str | None]:
    """(display_name, description, image)."""
    display = raw.get("display_name") or raw["slug"]
    if not isinstance(display, str):
        raise ProfileError(f"{where}: 'display_name' must be a string")
    description = raw.get("description") or ""
    if not isinstance(description, str):
        raise ProfileError(f"{where}: 'description' must be a string")
    image = raw.get("image")
    if image is not None and (not isinstance(image, str) or not image.strip()):
        raise ProfileError(f"{where}: 'image' must be a non-empty string")
    return display, description, image


def _memory_fields(where: str, raw: Mapping[str, Any]) -> tuple[int | None, int | None]:
    """(mem_limit, mem_guarantee) in bytes; the guarantee may not exceed the limit."""
    mem_limit = parse_mem(raw.get("mem_limit"), where=f"{where} mem_limit")
    mem_guarantee = parse_mem(raw.get("mem_guarantee"), where=f"{where} mem_guarantee")
    if mem_limit is not None and mem_guarantee is not None and mem_guarantee > mem_limit:
        raise ProfileError(
            f"{where}: mem_guarantee ({format_bytes(mem_guarantee)}) is more than "
            f"mem_limit ({format_bytes(mem_limit)})"
        )
    return mem_limit, mem_guarantee


def _cpu_limit(where: str, raw: Mapping[str, Any]) -> float | None:
    cpu = raw.get("cpu_limit")
    if cpu is not None:
        if isinstance(cpu, bool) or not isinstance(cpu, (int, float)) or cpu <= 0:
            raise ProfileError(f"{where}: 'cpu_limit' must be a positive number, not {cpu!r}")
        cpu = float(cpu)
    return cpu


def _gpus(where: str, raw: Mapping[str, Any]) -> int | str:
    gpus = raw.get("gpus", 0)
    if gpus is None:
        gpus = 0
    if isinstance(gpus, str) and gpus.strip().lower() == "all":
        gpus = "all"
    elif isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0:
        raise ProfileError(
            f"{where}: 'gpus' must be 0, a number of whole GPUs or \"all\", not {gpus!r}"
        )
    return gpus


def _environment(where: str, raw: Mapping[str, Any]) -> dict[str, str]:
    env = raw.get("environment") or {}
    if not isinstance(env, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise ProfileError(f"{where}: 'environment' must be a dict of strings to strings")
    return dict(env)


def _groups(where: str, raw: Mapping[str, Any]) -> tuple[str, ...]:
    groups = raw.get("groups") or []
    if isinstance(groups, str) or not all(isinstance(g, str) and g for g in groups):
        raise ProfileError(f"{where}: 'groups' must be a list of group names")
    return tuple(groups)


def _default(where: str, raw: Mapping[str, Any]) -> bool:
    default = raw.get("default", False)
    if not isinstance(default, bool):
        raise ProfileError(f"{where}: 'default' must be True or False")
    return default


def parse_profiles(raw: Any) -> list[Profile]:
    """Validate ``profiles``; the first problem is raised as ProfileError naming the entry."""
    if raw is None:
        return []
    if not isinstance(raw, (list, tuple)):
        raise ProfileError(f"profiles must be a list of dicts, not {type(raw).__name__}")
    out = [_parse_one(i, p) for i, p in enumerate(raw)]
    seen: dict[str, int] = {}
    for i, p in enumerate(out):
        if p.slug in seen:
            raise ProfileError(
                f"profiles[{i}]: slug {p.slug!r} is already used by profiles[{seen[p.slug]}]"
            )
        seen[p.slug] = i
    defaults = [f"profiles[{i}] ({p.slug!r})" for i, p in enumerate(out) if p.default]
    if len(defaults) > 1:
        raise ProfileError(f"two or more profiles are marked default: {', '.join(defaults)}")
    return out


def check_gpu_profiles(profiles: Sequence[Profile], devices: Sequence[str]) -> None:
    """With ``gpu_devices`` known, a profile may not ask for more GPUs than exist."""
    if not devices:
        return
    for p in profiles:
        if isinstance(p.gpus, int) and p.gpus > len(devices):
            raise ProfileError(
                f"profile {p.slug!r} asks for {p.gpus} GPUs but gpu_devices lists only "
                f"{len(devices)} ({', '.join(devices)})"
            )


# -- choosing ---------------------------------------------------------------------------


def allowed(profiles: Sequence[Profile], user_groups: Iterable[str]) -> list[Profile]:
    """The profiles these groups may choose, in configured order."""
    groups = set(user_groups)
    return [p for p in profiles if p.allowed_for(groups)]


def default_for(profiles: Sequence[Profile], user_groups: Iterable[str]) -> Profile | None:
    """The marked default if this user may choose it, else the first one they may."""
    mine = allowed(profiles, user_groups)
    for p in mine:
        if p.default:
            return p
    return mine[0] if mine else None


def choose(profiles: Sequence[Profile], user_groups: Iterable[str], requested: Any) -> Profile:
    """The profile of a spawn; ``requested`` is the ``profile`` user option (None: default).

    Raises ProfileChoiceError 400 for a slug that is not a profile (listing
    the user's valid ones) and 403 for a profile the user's groups do not allow.
    """
    groups = set(user_groups)
    mine = allowed(profiles, groups)
    valid = ", ".join(p.slug for p in mine) or "none"
    if requested is None or requested == "":
        chosen = default_for(profiles, groups)
        if chosen is None:
            raise ProfileChoiceError(
                403,
                "No server profile is open to you (each needs a group you are not in); "
                "ask an administrator to add you to one.",
            )
        return chosen
    if not isinstance(requested, str):
        raise ProfileChoiceError(400, f"'profile' must be a profile's slug; valid: {valid}")
    for p in profiles:
        if p.slug == requested:
            if p.allowed_for(groups):
                return p
            raise ProfileChoiceError(
                403,
                f"You may not choose profile {requested!r}: it is for members of "
                f"{', '.join(p.groups)}. Your profiles: {valid}.",
            )
    raise ProfileChoiceError(400, f"Unknown profile {requested!r}. Valid profiles: {valid}.")


# -- GPUs -------------------------------------------------------------------------------


LIVE_STATES = ("created", "running", "restarting", "paused")


def live_labels(containers: Iterable[Mapping[str, Any]], exclude_name: str = "") -> list[dict]:
    """Labels of the containers that hold what they were given (``docker ps -a`` rows).

    Created-but-not-started ones count (a spawn between create and start);
    ``exclude_name`` is the container this spawn replaces.
    """
    return [
        dict(c.get("Labels") or {})
        for c in containers
        if c.get("State") in LIVE_STATES and f"/{exclude_name}" not in (c.get("Names") or [])
    ]


def parse_device_label(value: str | None) -> list[str]:
    return [d for d in (value or "").split(",") if d]


def device_load(labels: Iterable[Mapping[str, str] | None]) -> Counter[str]:
    """How many live containers hold each device, from their labels."""
    load: Counter[str] = Counter()
    for lab in labels:
        for d in parse_device_label((lab or {}).get(LABEL_GPU_DEVICES)):
            load[d] += 1
    return load


def pick_devices(
    devices: Sequence[str], load: Mapping[str, int], wanted: int | str, per_device: int = 1
) -> list[str] | None:
    """The least-loaded devices with room for one more server; None if not enough.

    ``per_device`` is how many servers may share one GPU (1: exclusive).
    ``"all"`` wants every device, each with room. Ties go to the configured
    order, so allocation is deterministic.
    """
    if wanted == "all":
        return list(devices) if all(load.get(d, 0) < per_device for d in devices) else None
    n = int(wanted)
    if n <= 0:
        return []
    order = {d: i for i, d in enumerate(devices)}
    free = sorted(
        (d for d in devices if load.get(d, 0) < per_device),
        key=lambda d: (load.get(d, 0), order[d]),
    )
    if len(free) < n:
        return None
    return sorted(free[:n], key=order.__getitem__)


def no_gpu_message(
    wanted: int | str,
    devices: Sequence[str],
    load: Mapping[str, int],
    per_device: int,
    no_gpu_profiles: Sequence[Profile],
) -> str:
    held = sum(1 for d in devices if load.get(d, 0) >= per_device)
    what = "every GPU" if wanted == "all" else f"{wanted} GPU" + ("s" if wanted != 1 else "")
    share = "" if per_device == 1 else f" (up to {per_device} servers each)"
    msg = (
        f"No free GPU: this profile needs {what}, and {held} of the {len(devices)} GPUs "
        f"of this host are in use by other servers{share}. Try again later"
    )
    if no_gpu_profiles:
        names = ", ".join(f"{p.display_name} ({p.slug})" for p in no_gpu_profiles)
        msg += f", or choose a profile without GPUs: {names}"
    return msg + "."


# -- admission ---------------------------------------------------------------------------


def admission_refusal(
    total_memory: int, reserve: int, running_guarantees: Sequence[int], new_guarantee: int
) -> str | None:
    """A message if the new server's ``mem_guarantee`` does not fit, else None."""
    used = sum(running_guarantees)
    room = total_memory - reserve
    if used + new_guarantee <= room:
        return None
    return (
        f"Not enough memory on this host for this server: it needs "
        f"{format_bytes(new_guarantee)} guaranteed, running servers hold "
        f"{format_bytes(used)}, and the host has {format_bytes(total_memory)} of which "
        f"{format_bytes(reserve)} is kept in reserve ({format_bytes(max(room - used, 0))} "
        "left). Try again when other servers stop, or choose a smaller profile."
    )
