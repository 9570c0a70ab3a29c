"""The labeling widget's own render() in Chromium, fed what a project owner controls (a
prediction's choice, box labels, label names, status text) as HTML: it shows as text and
nothing runs (N10)."""

from __future__ import annotations

import importlib
import json

import pytest

label = importlib.import_module("hubforge.widgets.label")
pytestmark = pytest.mark.browser

XSS = '<img src=x onerror="window.__xss=(window.__xss||0)+1">'
PAGE = """<!doctype html><div id="root"></div><script type="module">
const state = %s;
const model = { get: (k) => state[k], set: (k, v) => { state[k] = v; }, save_changes() {},
  send() {}, on() {} };
const mod = await import("data:text/javascript;charset=utf-8," + encodeURIComponent(%s));
mod.default.render({ model, el: document.getElementById("root") });
window.__rendered = true;
</script>"""


def state(**item):
    return {
        "item": {"id": 7, "name": XSS, "score": 0.4, **item},
        "labels": [XSS, "square"],
        "progress": {"labeled": 1, "total": 4},
        "status": XSS,
        "link": "javascript:window.__xss=1",
        "detection": bool(item.get("preboxes")),
        "boxes": [],
        "current": XSS,
        "zoom": False,
        "help": False,
    }


@pytest.mark.parametrize(
    "item",
    [
        {"kind": "text", "text": XSS, "prelabel": XSS},
        {"kind": "image", "src": "data:image/png;base64,", "prelabel": XSS},
        {
            "kind": "image",
            "src": "data:image/png;base64,",
            "preboxes": [{"label": XSS, "x": 1, "y": 2, "width": 30, "height": 40}],
        },
    ],
)
def test_what_the_owner_writes_is_shown_as_text(page, item):
    page.set_content(PAGE % (json.dumps(state(**item)), json.dumps(label.ESM)))
    page.wait_for_function("window.__rendered === true")
    # every image of the page has loaded or failed (an injected one's onerror has run)
    page.wait_for_function("Array.from(document.images).every(i => i.complete)")
    assert page.evaluate("window.__xss") is None
    assert page.locator("#root img[src='x']").count() == 0
    if item.get("prelabel"):
        assert page.inner_text(".hf-pre b") == XSS
    if item.get("preboxes"):
        assert page.inner_text(".hf-box.hf-guess span") == XSS
    assert XSS in page.inner_text("button[data-i='0']")
    assert page.inner_text(".hf-status") == XSS and page.inner_text(".hf-name") == XSS
    assert page.get_attribute(".hf-link", "href") is None
