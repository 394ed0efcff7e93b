"""Sphinx extension: the configuration reference, generated from our traits.

``.. jhext-config-reference::`` (inside an ``{eval-rst}`` block of a MyST page)
imports every module of ``jupyterhub_ext``, finds each configurable class we
define and writes one entry per configurable trait of ours: the
``c.Class.name`` line to put in ``jupyterhub_config.py``, its type, its default
and its help text. Inherited options of other projects (DockerSpawner,
JupyterHub's Spawner, traitlets) are not repeated; the page links to their
documentation instead. Nothing here is written by hand, so the page cannot
drift from the code: a trait added in a feature branch shows up at the next
build.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import pprint
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective
from traitlets import HasTraits, TraitType
from traitlets import traitlets as tt
from traitlets.config import Configurable

PACKAGE = "jupyterhub_ext"

# Where to read about options we inherit instead of defining them.
EXTERNAL_DOCS = {
    "dockerspawner.dockerspawner.DockerSpawner": (
        "https://jupyterhub-dockerspawner.readthedocs.io/en/latest/api/index.html"
    ),
    "jupyterhub.spawner.Spawner": (
        "https://jupyterhub.readthedocs.io/en/stable/reference/api/spawner.html"
    ),
    "jupyterhub.spawner.LocalProcessSpawner": (
        "https://jupyterhub.readthedocs.io/en/stable/reference/api/spawner.html"
    ),
    "jupyterhub.auth.Authenticator": (
        "https://jupyterhub.readthedocs.io/en/stable/reference/api/auth.html"
    ),
    "traitlets.config.configurable.Configurable": (
        "https://traitlets.readthedocs.io/en/stable/config-api.html"
    ),
    "traitlets.config.configurable.LoggingConfigurable": (
        "https://traitlets.readthedocs.io/en/stable/config-api.html"
    ),
    "traitlets.config.configurable.SingletonConfigurable": (
        "https://traitlets.readthedocs.io/en/stable/config-api.html"
    ),
    "traitlets.config.application.Application": (
        "https://traitlets.readthedocs.io/en/stable/config-api.html"
    ),
}


def is_ours(cls: type) -> bool:
    return cls.__module__ == PACKAGE or cls.__module__.startswith(PACKAGE + ".")


def iter_modules() -> Iterator[Any]:
    """Every module of the package, imported (an import error fails the build)."""
    pkg = importlib.import_module(PACKAGE)
    yield pkg
    for info in pkgutil.walk_packages(pkg.__path__, prefix=PACKAGE + "."):
        yield importlib.import_module(info.name)


def our_trait_classes() -> list[type]:
    """Every HasTraits class defined in the package (including mixins)."""
    found: dict[str, type] = {}
    for module in iter_modules():
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, HasTraits) and is_ours(obj):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return [found[k] for k in sorted(found)]


def documented_classes() -> list[type]:
    """The classes an admin names in config.

    Our configurable classes, except private ones and mixins (a mixin's
    options are listed under the class that uses it, since that is the name
    admins write).
    """
    classes = our_trait_classes()
    out = []
    for cls in classes:
        if not issubclass(cls, Configurable) or cls.__name__.startswith("_"):
            continue
        # a mixin's options are listed under the class that uses it
        if cls.__name__.endswith("Mixin"):
            continue
        out.append(cls)
    return sorted(out, key=lambda c: (c.__module__, c.__name__))


@dataclass
class TraitDoc:
    section: str  # the config section admins write: c.<section>.<name>
    name: str
    trait: TraitType
    owner: type  # the class of ours that defines it
    dynamic_default: bool

    @property
    def config_line(self) -> str:
        return f"c.{self.section}.{self.name}"

    @property
    def help(self) -> str:
        return inspect.cleandoc(self.trait.help or "")


def _dynamic_default(cls: type, name: str) -> bool:
    """Whether the default is computed (an ``@default`` method), not a constant."""
    for c in cls.mro():
        if f"_{name}_default" in vars(c) or name in vars(c).get("_trait_default_generators", {}):
            return True
        if name in vars(c):
            return False
    return False


def own_traits(cls: type) -> list[TraitDoc]:
    """Configurable traits of ``cls`` that one of our classes defines, in source order."""
    out: list[TraitDoc] = []
    seen: set[str] = set()
    # a documented class built on another (ExtSwarmSpawner on ExtDockerSpawner)
    # lists only what it adds; the base's options stay in the base's section
    bases = [d for d in documented_classes() if d is not cls and issubclass(cls, d)]
    for c in cls.mro():
        if not is_ours(c) or any(issubclass(d, c) for d in bases):
            continue
        for name, obj in vars(c).items():
            if name in seen or not isinstance(obj, TraitType) or not obj.metadata.get("config"):
                continue
            seen.add(name)
            # the trait the class really uses (a subclass of ours may redefine it)
            trait = cls.class_traits()[name]
            out.append(TraitDoc(cls.__name__, name, trait, c, _dynamic_default(cls, name)))
    return out


def changed_defaults(cls: type) -> list[str]:
    """Inherited options (not ours) whose default one of our classes changes."""
    ours = {t.name for t in own_traits(cls)}
    names = []
    for name in cls.class_traits(config=True):
        if name in ours:
            continue
        for c in cls.mro():
            if not is_ours(c):
                continue
            if f"_{name}_default" in vars(c) or name in vars(c).get(
                "_trait_default_generators", {}
            ):
                names.append(name)
                break
    return sorted(names)


def external_bases(cls: type) -> list[type]:
    """The nearest classes of other projects that ``cls`` builds on."""
    out: list[type] = []
    for c in cls.mro()[1:]:
        if is_ours(c) or c in (object, HasTraits) or not issubclass(c, HasTraits):
            continue
        if any(issubclass(seen, c) for seen in out):
            continue
        out.append(c)
    return out


_SIMPLE_TYPES = {
    tt.Unicode: "str",
    tt.CUnicode: "str",
    tt.Bytes: "bytes",
    tt.Int: "int",
    tt.CInt: "int",
    tt.Integer: "int",
    tt.Float: "float",
    tt.CFloat: "float",
    tt.Bool: "bool",
    tt.CBool: "bool",
    tt.Dict: "dict",
    tt.List: "list",
    tt.Set: "set",
    tt.Tuple: "tuple",
    tt.Callable: "callable",
    tt.Any: "any",
}


def type_text(trait: TraitType) -> str:
    """A short, Python-like description of what a trait accepts."""
    if isinstance(trait, tt.Union):
        text = " | ".join(type_text(t) for t in trait.trait_types)
    elif isinstance(trait, tt.Enum):
        text = " | ".join(repr(v) for v in trait.values)
    elif isinstance(trait, (tt.Instance, tt.Type)):
        klass = trait.klass
        text = klass if isinstance(klass, str) else getattr(klass, "__name__", str(klass))
    elif isinstance(trait, (tt.List, tt.Set, tt.Tuple)) and getattr(trait, "_trait", None):
        base = next(v for k, v in _SIMPLE_TYPES.items() if isinstance(trait, k))
        text = f"{base}[{type_text(trait._trait)}]"
    else:
        text = next(
            (v for k, v in _SIMPLE_TYPES.items() if type(trait) is k),
            next(
                (v for k, v in _SIMPLE_TYPES.items() if isinstance(trait, k)),
                type(trait).__name__,
            ),
        )
    if trait.allow_none:
        text += " | None"
    return text


def default_value(doc: TraitDoc) -> str | None:
    """The default as Python source, or None when it is computed at start-up."""
    if doc.dynamic_default:
        return None
    try:
        value = doc.trait.default()
    except Exception:
        return None
    if value is tt.Undefined:
        return None
    return pprint.pformat(value, width=76, sort_dicts=False)


def _indent(text: str, n: int) -> list[str]:
    pad = " " * n
    return [pad + line if line.strip() else "" for line in text.splitlines()]


def class_rst(cls: type) -> list[str]:
    """reStructuredText for one class and its traits."""
    lines = [f".. py:class:: {cls.__name__}", f"   :module: {cls.__module__}", ""]
    doc = inspect.getdoc(cls) or ""
    lines += _indent(doc, 3) + [""]

    bases = external_bases(cls)
    if bases:
        refs = []
        for b in bases:
            qual = f"{b.__module__}.{b.__qualname__}"
            url = EXTERNAL_DOCS.get(qual)
            refs.append(f"`{b.__name__} <{url}>`__" if url else f"``{qual}``")
        lines += _indent(
            f"Also accepts every option of {', '.join(refs)} "
            f"(as ``c.{cls.__name__}.<option>``); only the options jupyterhub_ext "
            "adds are listed here.",
            3,
        ) + [""]
    changed = changed_defaults(cls)
    if changed:
        names = ", ".join(f"``{n}``" for n in changed)
        lines += _indent(
            f"Inherited options whose default {cls.__name__} changes: {names} "
            "(see the feature guides for why).",
            3,
        ) + [""]

    for t in own_traits(cls):
        lines += [
            f"   .. py:attribute:: {t.name}",
            f"      :type: {type_text(t.trait)}",
            "",
            f"      :Config: ``{t.config_line}``",
        ]
        default = default_value(t)
        if default is None:
            lines.append("      :Default: computed at start-up (see below)")
        elif "\n" not in default and len(default) <= 60:
            lines.append(f"      :Default: ``{default}``")
        else:
            lines += ["      :Default:", "", "         .. code-block:: python", ""]
            lines += _indent(default, 12)
        lines.append("")
        lines += _indent(t.help or "*(no help text)*", 6) + [""]
    return lines


def reference_rst() -> list[str]:
    out: list[str] = []
    for cls in documented_classes():
        out += class_rst(cls)
    return out


class ConfigReference(SphinxDirective):
    has_content = False

    def run(self) -> list[nodes.Node]:
        lines = reference_rst()
        source = f"<{PACKAGE} configuration reference>"
        node = nodes.container(classes=["jhext-config-reference"])
        self.state.nested_parse(StringList(lines, source=source), self.content_offset, node)
        return node.children


def setup(app: Any) -> dict[str, Any]:
    app.add_directive("jhext-config-reference", ConfigReference)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
