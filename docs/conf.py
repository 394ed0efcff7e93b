"""Sphinx configuration for the jupyterhub_ext documentation.

Build: ``sphinx-build -W -b html docs docs/_build/html`` (warnings are errors).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Document the code in this checkout, not some other installed copy.
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE / "_ext"))

import jupyterhub_ext  # noqa: E402

# accessible-pygments (a theme dependency) configures the root logger when
# imported; keep alembic's start-up chatter (imported with JupyterHub) out of
# the build output.
logging.getLogger("alembic").setLevel(logging.WARNING)

project = "jupyterhub_ext"
author = "jupyterhub_ext contributors"
copyright = "jupyterhub_ext contributors"
version = release = jupyterhub_ext.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "jhext_configref",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build"]

myst_enable_extensions = ["colon_fence", "deflist", "fieldlist"]
# Allow links like [text](page.md#a-heading)
myst_heading_anchors = 3

# Furo shows the whole table of contents, with the index's captions as
# sections, in the sidebar of every page.
html_theme = "furo"
html_title = f"jupyterhub_ext {release}"
html_static_path: list[str] = []
html_show_sourcelink = False
