"""The built wheel carries templates and the pages' script, and registers the spawner."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHECK = """
import json
from importlib.metadata import entry_points
from pathlib import Path
import jupyterhub_ext
p = Path(jupyterhub_ext.template_path())
s = Path(jupyterhub_ext.static_path())
eps = {e.name: e.value for e in entry_points(group="jupyterhub.spawners")}
print(json.dumps({"path": str(p), "home": (p / "home.html").is_file(),
                  "files": sorted(f.name for f in p.iterdir()), "ep": eps.get("ext-docker"),
                  "static": str(s), "static_files": sorted(f.name for f in s.iterdir())}))
"""


def test_wheel_in_fresh_venv_finds_templates(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)],
        check=True,
    )
    (wheel,) = dist.glob("jupyterhub_ext-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    # --no-deps: only our package; template_path() needs nothing else
    subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True)
    out = subprocess.run(
        [py, "-c", CHECK], check=True, capture_output=True, text=True, cwd=tmp_path
    )
    info = json.loads(out.stdout)
    assert info["path"].startswith(str(venv)), info
    assert info["home"]
    expected = sorted(f.name for f in (ROOT / "share" / "templates").iterdir())
    assert info["files"] == expected
    assert info["static"].startswith(str(venv)), info
    assert info["static_files"] == sorted(f.name for f in (ROOT / "share" / "static").iterdir())
    assert info["ep"] == "jupyterhub_ext.spawner:ExtDockerSpawner"
