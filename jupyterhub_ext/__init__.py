"""jupyterhub_ext: a JupyterHub plugin library for hubs that run every user in Docker."""

from __future__ import annotations

from pathlib import Path

__version__ = "0.1.0"


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


# Import the submodule ``jupyterhub_ext.setup`` now, before the function of
# the same name is defined: the first import of a submodule binds it as an
# attribute of the package, which would otherwise replace ``setup()`` with the
# module the first time anything imports ``jupyterhub_ext.setup`` (and a
# second ``jupyterhub_ext.setup(c)`` in one process would fail).
from . import setup as _setup_module  # noqa: E402


def setup(c) -> None:  # noqa: ANN001 - a traitlets Config
    """Wire jupyterhub_ext into a hub: call it at the end of jupyterhub_config.py.

    Registers our handlers and templates, and checks our configuration now,
    so a mistake stops the hub at start-up with a message naming the entry,
    not at someone's first spawn.
    """
    _setup_module.apply(c)


__all__ = ["__version__", "setup", "template_path"]
