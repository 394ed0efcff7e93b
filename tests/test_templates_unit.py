"""Our templates lay out markup; the behaviour lives in one script, share/static/jhext.js."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = sorted((ROOT / "share" / "templates").rglob("*.html"))
SCRIPT = ROOT / "share" / "static" / "jhext.js"
# <script ...>body</script>, except JSON settings blocks
INLINE = re.compile(r"<script(?![^>]*application/json)([^>]*)>(.*?)</script>", re.S)


def test_templates_hold_only_a_few_lines_of_script():
    assert TEMPLATES, "no templates found"
    for path in TEMPLATES:
        for attrs, body in INLINE.findall(path.read_text()):
            lines = [line for line in body.splitlines() if line.strip()]
            assert len(lines) <= 3, f"{path.name}: {len(lines)} lines of inline script"
            if lines:  # what is inline only imports our module and calls a page's entry
                assert 'type="module"' in attrs, path.name
                assert "jupyterhub-ext/static/jhext.js" in body, path.name


def test_every_page_entry_called_by_a_template_is_exported():
    exported = set(re.findall(r"^export (?:async )?function (\w+)", SCRIPT.read_text(), re.M))
    called = set()
    for path in TEMPLATES:
        called |= set(re.findall(r"import \{ (\w+) \} from", path.read_text()))
    assert called, "no template imports the script"
    assert called <= exported, called - exported


def test_one_fetch_wrapper_sends_the_xsrf_token():
    sources = [SCRIPT.read_text()] + [p.read_text() for p in TEMPLATES]
    assert sum(s.count("fetch(") for s in sources) == 1  # HubAPI.request, nothing else
    assert sum(s.count("X-XSRFToken") for s in sources) == 1
    # people's text reaches the page as text, never as HTML
    assert "innerHTML" not in SCRIPT.read_text()
