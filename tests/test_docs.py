"""The documentation site: it builds with warnings as errors, its configuration
reference lists every option of ours with its help (compared with the classes
themselves), and its API reference lists every route the package serves.
"""

from __future__ import annotations

import html
import importlib
import inspect
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest
from tornado.web import RequestHandler
from traitlets import HasTraits, TraitType
from traitlets.config import Configurable

import jupyterhub_ext
from jupyterhub_ext.handlers import default_handlers

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture(scope="module")
def built_docs(tmp_path_factory) -> Path:
    """`sphinx-build -W` of docs/, once for the module."""
    pytest.importorskip("sphinx", reason="sphinx is not installed (pip install -e '.[docs]')")
    pytest.importorskip("myst_parser", reason="myst-parser is not installed")
    out = tmp_path_factory.mktemp("html")
    r = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", str(DOCS), str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode == 0, f"sphinx-build -W failed:\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}"
    return out


def page_text(path: Path) -> str:
    """The visible text of a built page, whitespace collapsed."""
    raw = path.read_text(encoding="utf-8")
    body = raw[raw.find("<article") : raw.rfind("</article>")]
    text = html.unescape(re.sub(r"<[^>]+>", " ", body))
    return re.sub(r"\s+", " ", text)


def test_sphinx_build_has_no_warnings(built_docs):
    for page in (
        "index",
        "getting-started",
        "install",
        "configuration",
        "authentication",
        "api",
        "security",
        "scaling",
        "deployment/compose",
        "deployment/swarm",
        "deployment/hub-image",
        "deployment/singleuser-image",
        "deployment/gpu-host",
        "operations/upgrade",
        "operations/backup-restore",
        "operations/incident-response",
        "operations/rotate-secrets",
        "operations/audit-log",
    ):
        assert (built_docs / f"{page}.html").is_file(), page


def test_feature_pages_join_by_glob(built_docs):
    """Pages dropped into docs/features/ are built and in the navigation, unlisted."""
    index = (DOCS / "index.md").read_text()
    assert ":glob:" in index and "features/*" in index
    nav = (built_docs / "index.html").read_text()
    pages = sorted(DOCS.glob("features/*.md"))
    assert pages, "docs/features/ is empty"
    for page in pages:
        assert (built_docs / "features" / f"{page.stem}.html").is_file(), page
        assert f'features/{page.stem}.html"' in nav, f"{page.name} is not in the navigation"


# -- the configuration reference ------------------------------------------------


def our_modules() -> list:
    mods = [jupyterhub_ext]
    for info in pkgutil.walk_packages(jupyterhub_ext.__path__, prefix="jupyterhub_ext."):
        mods.append(importlib.import_module(info.name))
    return mods


def ours(cls: type) -> bool:
    return cls.__module__.split(".")[0] == "jupyterhub_ext"


def our_config_traits() -> list[tuple[type, str, TraitType]]:
    """(defining class, name, trait) of every configurable trait our classes define."""
    seen: dict[tuple[str, str], tuple[type, str, TraitType]] = {}
    for mod in our_modules():
        for _, cls in inspect.getmembers(mod, inspect.isclass):
            if not (issubclass(cls, HasTraits) and ours(cls)):
                continue
            for name, trait in vars(cls).items():
                if isinstance(trait, TraitType) and trait.metadata.get("config"):
                    seen[(f"{cls.__module__}.{cls.__qualname__}", name)] = (cls, name, trait)
    return list(seen.values())


def our_configurables() -> list[type]:
    found = {}
    for mod in our_modules():
        for _, cls in inspect.getmembers(mod, inspect.isclass):
            if issubclass(cls, Configurable) and ours(cls):
                found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return list(found.values())


def plain(rst: str) -> str:
    """Help text without reST inline markup, whitespace collapsed."""
    text = re.sub(r":[a-z:]+:`~?([^`]+)`", r"\1", rst)
    text = text.replace("``", "").replace("`", "").replace("**", "").replace("*", "")
    # what Sphinx's smart quotes make of plain punctuation
    for fancy, ascii_ in (("\u201c", '"'), ("\u201d", '"'), ("\u2018", "'"), ("\u2019", "'")):
        text = text.replace(fancy, ascii_)
    text = text.replace("\u2026", "...").replace("\u2014", "---").replace("\u2013", "--")
    return re.sub(r"\s+", " ", text).strip()


def test_every_trait_of_ours_has_help():
    missing = [
        f"{cls.__name__}.{name}" for cls, name, trait in our_config_traits() if not trait.help
    ]
    assert not missing, f"configurable traits without help text: {missing}"


def test_config_reference_lists_every_trait(built_docs):
    raw = (built_docs / "configuration.html").read_text(encoding="utf-8")
    text = page_text(built_docs / "configuration.html")
    traits = our_config_traits()
    assert traits, "found no configurable traits in jupyterhub_ext"
    configurables = our_configurables()
    problems = []
    for cls, name, trait in traits:
        # admins write c.<Class>.<name> for the class that uses the trait
        # (the class itself, or one of ours built on it, e.g. a mixin's user)
        users = [c for c in configurables if issubclass(c, cls)]
        listed = [c for c in users if f'id="{c.__module__}.{c.__name__}.{name}"' in raw]
        if not listed:
            problems.append(f"{cls.__name__}.{name}: no entry")
            continue
        if not any(f"c.{c.__name__}.{name}" in text for c in listed):
            problems.append(f"{cls.__name__}.{name}: no c.{listed[0].__name__}.{name} line")
        first_paragraph = plain(inspect.cleandoc(trait.help).split("\n\n")[0])
        # compared without whitespace: markup boundaries add or drop spaces
        if re.sub(r"\s", "", first_paragraph[:60]) not in re.sub(r"\s", "", plain(text)):
            shown = first_paragraph[:60]
            problems.append(f"{cls.__name__}.{name}: help text not shown ({shown!r})")
    assert not problems, "configuration reference is missing:\n" + "\n".join(problems)


def test_config_reference_leaves_inherited_options_to_their_docs(built_docs):
    raw = (built_docs / "configuration.html").read_text(encoding="utf-8")
    # DockerSpawner's own options are linked, not copied
    assert 'id="jupyterhub_ext.spawner.ExtDockerSpawner.image"' not in raw
    assert 'id="jupyterhub_ext.spawner.ExtDockerSpawner.volume_set"' in raw
    assert "jupyterhub-dockerspawner.readthedocs.io" in raw
    # and the defaults we change are named
    assert "remove" in page_text(built_docs / "configuration.html")
    # the page's source holds no copy of any help text
    source = (DOCS / "configuration.md").read_text()
    for _, name, _trait in our_config_traits():
        assert f".{name}" not in source, f"{name} is hand-written in configuration.md"


# -- the API reference --------------------------------------------------------------


def route_template(pattern: str) -> str:
    """A tornado route pattern as a documented path: groups become {}."""
    p = pattern.removeprefix("^").removesuffix("$").removesuffix("/?")
    out, i, depth, start = [], 0, 0, 0
    while i < len(p):
        ch = p[i]
        if ch == "\\" and depth == 0:
            out.append(p[i + 1])
            i += 2
            continue
        if ch == "(":
            if depth == 0:
                start = i
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                if p[start:].startswith("(?:"):
                    raise ValueError(f"cannot document the optional part of {pattern!r}")
                out.append("{}")
        elif depth == 0:
            if ch in "[]*+?|{}":
                raise ValueError(f"cannot turn {pattern!r} into a path (at {ch!r})")
            out.append(ch)
        i += 1
    return "".join(out)


def test_route_template():
    assert route_template(r"/api/users/([^/]+)/restart-server") == "/api/users/{}/restart-server"
    assert (
        route_template(r"/api/users/(?P<name>[^/]+)/servers/([^/]*)/manage-volumes")
        == "/api/users/{}/servers/{}/manage-volumes"
    )
    assert route_template(r"/notifications/?") == "/notifications"
    assert route_template(r"/api/x\.json") == "/api/x.json"
    with pytest.raises(ValueError):
        route_template(r"/api/users/([^/]+)(?:/servers/([^/]+))?/restart")


def documented_routes() -> set[tuple[str, str]]:
    """(METHOD, path template) pairs written as `METHOD /hub/...` in docs/api.md."""
    text = (DOCS / "api.md").read_text()
    found = set()
    for method, path in re.findall(r"`(GET|POST|PUT|PATCH|DELETE) (/hub/[^`\s?]*)", text):
        found.add((method, re.sub(r"\{[^}]*\}", "{}", path.removeprefix("/hub"))))
    return found


def implemented_methods(handler: type) -> list[str]:
    """HTTP methods a handler of ours answers (not tornado's 405 defaults)."""
    from tornado.web import StaticFileHandler

    if issubclass(handler, StaticFileHandler):
        return ["GET"]  # files served as they are: the route is ours, the verbs tornado's
    out = []
    for m in METHODS:
        fn = getattr(handler, m, None)
        if fn is None or fn is getattr(RequestHandler, m):
            continue
        owner = next(c for c in handler.__mro__ if m in vars(c))
        if ours(owner):
            out.append(m.upper())
    return out


def test_api_reference_lists_every_route():
    documented = documented_routes()
    assert ("POST", "/api/users/{}/restart-server") in documented  # the parser works
    missing = []
    for route in default_handlers():
        pattern, handler = route[0], route[1]
        path = route_template(pattern)
        methods = implemented_methods(handler)
        assert methods, f"{handler.__name__} ({pattern}) answers no method"
        for method in methods:
            if (method, path) not in documented:
                missing.append(f"{method} /hub{path}  ({handler.__module__}.{handler.__name__})")
    assert not missing, "routes served but not in docs/api.md:\n" + "\n".join(missing)


def test_security_page_has_every_documented_route():
    """The security model's scope table covers what the API page lists."""
    security = (DOCS / "security.md").read_text()
    table = {re.sub(r"\{[^}]*\}", "{}", p) for p in re.findall(r"(/hub/[^`\s,]*)", security)}
    for _, path in documented_routes():
        assert f"/hub{path}" in table, f"/hub{path} is not in security.md's scope table"


# -- recipes ----------------------------------------------------------------------


def test_every_recipe_is_on_the_authentication_page():
    page = (DOCS / "authentication.md").read_text()
    for recipe in sorted((DOCS / "recipes").glob("*.py")):
        assert "literalinclude} recipes/" + recipe.name in page, recipe.name


# -- what the pages point at exists -------------------------------------------------

# Files the pages tell admins to create themselves, or that land from other work.
NOT_IN_REPO = {
    "deploy/auth.py",  # the admin copies a recipe there
    "deploy/wheels/jupyterhub_ext-*.whl",  # built by the admin
    "scripts/demo.sh",  # the demo command, owned by the README's author
}


def test_paths_named_in_the_pages_exist():
    pages = sorted(DOCS.glob("*.md")) + sorted(DOCS.glob("*/*.md"))
    named = set()
    for page in pages:
        named |= set(
            re.findall(r"(?:scripts|deploy|images|docs)/[A-Za-z0-9_./*-]+", page.read_text())
        )
    missing = sorted(
        p
        for p in named
        if p.rstrip("/.") not in NOT_IN_REPO and not (ROOT / p.rstrip(".")).exists()
    )
    assert not missing, f"pages name files that do not exist: {missing}"


def test_getting_started_matches_the_example_config():
    page = (DOCS / "getting-started.md").read_text()
    config = (ROOT / "jupyterhub_config.example.py").read_text()
    for var in ("JUPYTERHUB_SINGLEUSER_IMAGE", "JUPYTERHUB_BIND_URL"):
        assert var in page and var in config, var
    assert "cleanup_servers = False" in config
    assert "http://127.0.0.1:8000" in config and "http://127.0.0.1:8000" in page


# -- switching from DockerSpawner -----------------------------------------------------


def test_switching_page_lists_exactly_docker_spawners_options():
    """docs/switching.md: one line per DockerSpawner option, none missing, none extra."""
    from dockerspawner import DockerSpawner

    rows = re.findall(
        r"^\| `([A-Za-z_]+)` \| (Same|Different|Not applicable)\b",
        (DOCS / "switching.md").read_text(),
        flags=re.M,
    )
    names = [name for name, _ in rows]
    assert len(names) == len(set(names)), "an option is listed twice"
    expected = set(DockerSpawner.class_traits(config=True))
    assert set(names) == expected, (
        f"missing: {sorted(expected - set(names))}; not options: {sorted(set(names) - expected)}"
    )
    # the deliberate differences are said where switching admins look
    different = {name for name, verdict in rows if verdict == "Different"}
    assert {"remove", "extra_host_config", "network_name"} <= different
