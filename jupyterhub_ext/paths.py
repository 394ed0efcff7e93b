"""Where our templates and static files are, in a wheel or in a source checkout."""

from __future__ import annotations

from pathlib import Path


def template_path() -> str:
    """The directory of our page templates, for ``c.JupyterHub.template_paths``.

    In a wheel the templates ship inside the package; in a source checkout
    they live in ``share/templates`` at the top of the repository.
    """
    here = Path(__file__).resolve().parent
    for candidate in (here / "templates", here.parent / "share" / "templates"):
        if (candidate / "home.html").is_file():
            return str(candidate)
    raise FileNotFoundError(f"jupyterhub_ext templates not found next to {here}")


def static_path() -> str:
    """Our pages' script (``jhext.js``), served under ``/hub/jupyterhub-ext/static/``."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "static", here.parent / "share" / "static"):
        if (candidate / "jhext.js").is_file():
            return str(candidate)
    raise FileNotFoundError(f"jupyterhub_ext static files not found next to {here}")
