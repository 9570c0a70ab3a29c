"""A line of text with a Copy button (a curl line, a token): shown whole, wrapped, copied
with one click."""

from __future__ import annotations

import anywidget
import traitlets

ESM = """
function render({ model, el }) {
  el.classList.add("hubforge-copy");
  const label = document.createElement("div");
  label.className = "hubforge-copy-label";
  const pre = document.createElement("pre");
  pre.className = "hubforge-copy-text";
  pre.style.cssText = "white-space:pre-wrap;word-break:break-all;margin:4px 0;padding:6px;" +
    "background:var(--jp-layout-color2);border-radius:3px;user-select:all";
  const button = document.createElement("button");
  button.className = "jp-Button hubforge-copy-button";
  button.type = "button";
  button.textContent = "Copy";
  const show = () => {
    label.textContent = model.get("label");
    pre.textContent = model.get("value");
    button.disabled = !model.get("value");
    el.style.display = model.get("value") ? "" : "none";
  };
  button.addEventListener("click", async () => {
    const text = model.get("value");
    let copied = false;
    try {
      await navigator.clipboard.writeText(text);
      copied = true;
    } catch {
      // no clipboard API outside secure contexts: select the text and copy the old way
      const range = document.createRange();
      range.selectNodeContents(pre);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      copied = document.execCommand && document.execCommand("copy");
    }
    button.textContent = copied ? "Copied" : "Select and copy";
    model.set("copies", model.get("copies") + 1);
    model.save_changes();
    setTimeout(() => (button.textContent = "Copy"), 2000);
  });
  model.on("change:value", show);
  model.on("change:label", show);
  show();
  el.append(label, pre, button);
}
export default { render };
"""


class CopyField(anywidget.AnyWidget):
    _esm = ESM
    value = traitlets.Unicode("").tag(sync=True)
    label = traitlets.Unicode("").tag(sync=True)
    copies = traitlets.Int(0).tag(sync=True)  # how often the button was pressed
