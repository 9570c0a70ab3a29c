"""The Deploy widget: serve a model or a finished job, try it, copy a curl line, export to
mobile with a size/accuracy report. Every button has a Python method (tests, scripts)."""

from __future__ import annotations

import base64
import html
import json
import os
import re
import threading
from pathlib import Path
from typing import Any

import ipywidgets as w

from hubforge import serving
from hubforge.serving.mobile_variants import DEFAULT_VARIANTS, VARIANTS

from .copy import CopyField

ERROR = '<span style="color:#c00">{}</span>'


def _default_name(source: Any) -> str:
    raw = getattr(source, "name", None) or Path(os.fspath(source)).name
    if raw.isdigit():  # a version folder: use its parent's name
        raw = Path(os.fspath(source)).parent.name
    name = re.sub(r"[^a-z0-9-]+", "-", str(raw).lower()).strip("-")[:40].strip("-")
    return name or "model"


class DeployWidget(w.VBox):
    def __init__(self, source: Any, name: str | None = None):
        self.source = source
        self.endpoint: serving.Endpoint | None = None
        self.report: serving.TFLiteReport | None = None
        self.name = w.Text(value=name or _default_name(source), description="Endpoint")
        self.batch = w.BoundedIntText(
            value=0, min=0, max=4096, description="Batch rows", tooltip="0: no batching"
        )
        self.deploy_button = w.Button(description="Deploy", button_style="primary", icon="upload")
        self.undeploy_button = w.Button(description="Undeploy", icon="trash", disabled=True)
        self.status = w.HTML(f"Not deployed: <code>{html.escape(self._source_text())}</code>")
        # shown only while deploying (loading the model, starting the server)
        hidden = {"width": "40%", "display": "none"}
        self.progress = w.IntProgress(value=0, min=0, max=3, description="Deploying", layout=hidden)
        self.curl_line = CopyField(label="Call it from a terminal ($TOKEN: a token of yours):")
        self.request = w.Textarea(description="Request", layout={"width": "100%", "height": "70px"})
        self.send_button = w.Button(description="Send", icon="paper-plane", disabled=True)
        self.response = w.HTML()
        self.quantize = w.Dropdown(
            options=["none", "dynamic", "float16"], value="dynamic", description="Quantize"
        )
        self.export_button = w.Button(description="Export to mobile", icon="mobile")
        self.export_result = w.HTML()
        self.variants = w.SelectMultiple(
            options=VARIANTS, value=DEFAULT_VARIANTS, description="Variants", rows=4
        )
        self.data = w.Text(
            description="Data",
            placeholder="the job's training data, or data.npz / a folder of class folders",
        )
        self.optimize_button = w.Button(description="Optimize for mobile", icon="compress")
        self.optimize_result = w.HTML()
        self.optimization: serving.OptimizationReport | None = None
        self.deploy_button.on_click(lambda _: self._in_thread(self.deploy))
        self.undeploy_button.on_click(lambda _: self.undeploy())
        self.send_button.on_click(lambda _: self.try_it())
        self.export_button.on_click(lambda _: self._in_thread(self.export))
        self.optimize_button.on_click(lambda _: self._in_thread(self.optimize))
        super().__init__(
            [
                w.HBox([self.name, self.batch, self.deploy_button, self.undeploy_button]),
                w.HBox([self.status, self.progress]),
                w.HTML("<b>Try it</b>"),
                self.request,
                w.HBox([self.send_button]),
                self.response,
                self.curl_line,
                w.HTML("<b>Mobile (TFLite)</b>"),
                w.HBox([self.quantize, self.export_button]),
                self.export_result,
                w.HBox([self.variants, w.VBox([self.data, self.optimize_button])]),
                self.optimize_result,
            ]
        )
        self.add_class("hubforge-deploy")
        self._attach_existing()

    def _source_text(self) -> str:
        return getattr(self.source, "id", None) or os.fspath(self.source)

    def _in_thread(self, action: Any) -> None:
        threading.Thread(target=action, name="hubforge-deploy", daemon=True).start()

    def _attach_existing(self) -> None:
        """Show an endpoint of this name that is already running (e.g. after a restart)."""
        try:
            self.endpoint = serving.get(self.name.value)
        except serving.ServingError:
            return
        self._show_endpoint()

    # -- actions ------------------------------------------------------------------------
    def deploy(self) -> serving.Endpoint | None:
        """Deploy (or add a version); errors show in the status line."""
        self.deploy_button.disabled = True
        self.progress.value = 1
        self.progress.layout.display = "flex"
        self.status.value = f"Deploying <b>{html.escape(self.name.value)}</b>… (loading the model)"
        batching = {"max_batch_size": self.batch.value} if self.batch.value > 1 else None
        try:
            self.endpoint = serving.deploy(self.source, self.name.value, batching=batching)
        except serving.ServingError as e:
            self.status.value = ERROR.format("Not deployed: " + html.escape(str(e)))
            return None
        finally:
            self.deploy_button.disabled = False
            self.progress.layout.display = "none"
            self.progress.value = 0
        self._show_endpoint()
        return self.endpoint

    def _show_endpoint(self) -> None:
        ep = self.endpoint
        state = ep.status
        color = "#080" if state == "running" else "#c60"
        self.status.value = (
            f'<b>{html.escape(ep.name)}</b>: <span class="hubforge-state" style="color:{color}">'
            f"{state}</span>, versions {ep.versions} — "
            f'<a href="{html.escape(ep.url, quote=True)}/metadata" target="_blank">metadata</a>'
        )
        try:
            example = ep.example_instances()
        except serving.ServingError:
            example = [[0]]
        if not self.request.value.strip():
            self.request.value = json.dumps({"instances": example})
        self.curl_line.value = ep.curl(example)
        self.send_button.disabled = False
        self.undeploy_button.disabled = False

    def try_it(self, instances: list | None = None) -> Any:
        """Send the request (``instances``, or the form's JSON) and show the response."""
        if self.endpoint is None:
            self.response.value = ERROR.format("Deploy first.")
            return None
        try:
            body = (
                {"instances": instances}
                if instances is not None
                else json.loads(self.request.value)
            )
            if not isinstance(body, dict) or "instances" not in body:
                raise ValueError('write {"instances": [...]}')
            result = self.endpoint.predict(
                body["instances"], signature_name=body.get("signature_name")
            )
        except (ValueError, serving.ServingError) as e:
            self.response.value = ERROR.format(html.escape(f"{type(e).__name__}: {e}"))
            return None
        self.response.value = (
            f"<pre class='hubforge-response'>{html.escape(json.dumps(result))}</pre>"
        )
        return result

    def export(
        self, quantize: str | None = None, representative_data: Any = None
    ) -> serving.TFLiteReport | None:
        """Export to TFLite and show the size/accuracy report."""
        quantize = quantize or self.quantize.value
        self.export_result.value = f"Converting ({html.escape(quantize)})…"
        try:
            model_dir = serving.model_dir_of(self.source)
            self.report = serving.export_tflite(
                model_dir, quantize=quantize, representative_data=representative_data
            )
        except serving.ServingError as e:
            self.export_result.value = ERROR.format(html.escape(str(e)))
            return None
        self.export_result.value = self.report._repr_html_()
        return self.report

    def optimize(
        self, variants: list[str] | None = None, data: Any = None
    ) -> serving.OptimizationReport | None:
        """Build and compare variants for phones (serving.optimize; in a workbench, as a job
        of yours) and show the report's table and plot."""
        variants = list(variants or self.variants.value)
        data = data if data is not None else (self.data.value.strip() or None)
        self.optimize_button.disabled = True
        self.optimize_result.value = (
            f"Optimizing ({html.escape(', '.join(variants))})… in a workbench this runs as a "
            "job of yours: the Hubforge panel's <i>For phones</i> section shows its progress."
        )
        try:
            report = serving.optimize(self.source, variants=variants, data=data)
        except serving.ServingError as e:
            self.optimize_result.value = ERROR.format(html.escape(str(e)))
            return None
        finally:
            self.optimize_button.disabled = False
        self.optimization = report
        self.optimize_result.value = report._repr_html_() + _png(
            Path(report.folder) / "accuracy-vs-size.png"
        )
        return report

    def undeploy(self) -> None:
        if self.endpoint is not None:
            self.endpoint.undeploy()
        self.status.value = f"<b>{html.escape(self.name.value)}</b>: undeployed"
        self.send_button.disabled = self.undeploy_button.disabled = True
        self.progress.value = 0


def _png(path: Path) -> str:
    try:
        data = base64.b64encode(path.read_bytes()).decode()
    except OSError:
        return ""
    return f'<img class="hubforge-mobile-plot" src="data:image/png;base64,{data}" width="420">'


def deploy(model_or_job: Any, name: str | None = None) -> DeployWidget:
    """The Deploy widget for a SavedModel folder or a finished training job."""
    return DeployWidget(model_or_job, name=name)
