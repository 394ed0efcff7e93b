"""Sphinx configuration for the jupyterhub_ext documentation.

Build: ``sphinx-build -W -b html docs docs/_build/html`` (warnings are errors).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Document the code in this checkout, not some other installed copy.
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE / "_ext"))

import jupyterhub_ext  # noqa: E402

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
exclude_patterns = ["_build", "recipes/README.md"]

myst_enable_extensions = ["colon_fence", "deflist", "fieldlist"]
# Allow links like [text](page.md#a-heading)
myst_heading_anchors = 3

# Feature pages are written by the engineer who builds the feature; they may
# reference screenshots saved by browser tests.
html_theme = "pydata_sphinx_theme"
html_title = f"jupyterhub_ext {release}"
html_static_path: list[str] = []
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
}
html_show_sourcelink = False
