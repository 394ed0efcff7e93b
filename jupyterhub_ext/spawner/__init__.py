"""ExtDockerSpawner: traits and the start/stop lifecycle (``lifecycle``).

Pure builders sit beside it: ``hostconfig`` (create arguments, mounts, labels
from plain values), ``grants`` (Docker access by group), ``compat`` (plain
DockerSpawner options kept working), ``readiness`` (notice a new server
fast), ``hostnet`` (ports on the host network). Features that act around a
start or a stop (renames) register hooks in ``lifecycle`` at ``setup(c)``;
the spawner knows nothing of them.

``jupyterhub_ext.spawner.ExtDockerSpawner`` is the name configs use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DEFAULT_VOLUME_SET", "ExtDockerSpawner", "SpawnRefused"]


def __getattr__(name: str) -> Any:
    # Lazy: the builders in this package are imported by features that the
    # lifecycle itself imports; loading the lifecycle here eagerly would make
    # every such import a cycle.
    if name in __all__:
        from jupyterhub_ext.spawner import lifecycle

        return getattr(lifecycle, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
