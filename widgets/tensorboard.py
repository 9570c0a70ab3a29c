"""The TensorBoard widget: the dashboard embedded in the output, a new-tab link, a stop button."""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as w

from hubforge import tensorboard as tb_api


class TensorBoardWidget(w.VBox):
    def __init__(self, logdir_or_job: Any, name: str | None = None, height: int = 600):
        self.instance: tb_api.TensorBoard | None = None
        self.status = w.HTML()
        self.link = w.HTML()
        self.frame = w.HTML(layout={"width": "100%"})
        self.stop_button = w.Button(description="Stop", icon="stop", disabled=True)
        self.stop_button.on_click(lambda _: self.stop())
        self.height = height
        super().__init__([w.HBox([self.status, self.link, self.stop_button]), self.frame])
        self.add_class("hubforge-tensorboard")
        self.start(logdir_or_job, name)

    def start(self, logdir_or_job: Any, name: str | None = None) -> tb_api.TensorBoard | None:
        """Start (or reuse) the instance and show it; errors show in the status line."""
        try:
            self.instance = tb_api.open(logdir_or_job, name=name)
        except tb_api.TensorBoardError as e:
            self.status.value = f'<span style="color:#c00">{html.escape(str(e))}</span>'
            return None
        url = html.escape(self.instance.url, quote=True)
        self.status.value = f"<b>TensorBoard</b> {html.escape(self.instance.name)}"
        self.link.value = (
            f'<a href="{url}" target="_blank" rel="noopener" '
            'style="margin:0 1em;text-decoration:underline">Open in a new tab</a>'
        )
        # CSS `resize` lets the user drag the frame taller or shorter.
        self.frame.value = (
            f'<div style="resize:vertical;overflow:hidden;height:{self.height}px;'
            f'border:1px solid #ddd"><iframe class="hubforge-tensorboard-frame" src="{url}" '
            'style="width:100%;height:100%;border:0"></iframe></div>'
        )
        self.stop_button.disabled = False
        return self.instance

    def stop(self) -> None:
        if self.instance is not None:
            self.instance.stop()
        self.frame.value = ""
        self.status.value = "TensorBoard stopped."
        self.stop_button.disabled = True


def tensorboard(
    logdir_or_job: Any, name: str | None = None, height: int = 600
) -> TensorBoardWidget:
    """TensorBoard for a log dir, a job (or job id), or a list of them to compare."""
    return TensorBoardWidget(logdir_or_job, name=name, height=height)
