"""The configuration recipes in docs/features/storage.md are valid volume sets."""

from __future__ import annotations

import re
from pathlib import Path

from traitlets.config import Config

from jupyterhub_ext.storage.volumes import parse_volume_set

DOC = Path(__file__).resolve().parent.parent / "docs" / "features" / "storage.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_every_storage_recipe_parses():
    blocks = python_blocks()
    kinds = set()
    for block in blocks:
        c = Config()
        exec(block, {"c": c})  # noqa: S102 - our own documentation
        if "volume_set" in c.ExtDockerSpawner:
            specs = parse_volume_set(c.ExtDockerSpawner.volume_set)
            kinds |= {s.scope for s in specs}
            kinds |= {"secret" for s in specs if "${" in str(s.driver_opts)}
    # NFS, CIFS with a secret, the bind example and the union archive are all there
    assert kinds == {"user", "shared", "archive", "secret"}
    assert len(blocks) >= 5
