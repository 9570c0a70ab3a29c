"""Benchmark: our endpoint server against a peer, MLflow's model server, on the same model.

MLflow serves the same SavedModel through a pyfunc wrapper (``mlflow models serve
--env-manager local``, one worker); our server serves it directly, batching off and on.
Reports p50/p99 of a one-row predict and requests per second at 1, 8 and 32 clients.

MLflow goes into an overlay environment, ``.venvs/bench-mlflow``, that sees this project's
packages (TensorFlow) through a .pth file, so the workbench's own environment stays as
declared. The first run installs it (a minute or two).

    .venv/bin/python tests/bench/bench_serving_peer.py [--requests 300] [--seconds 4]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from hubforge.processes import free_port  # noqa: E402
from tests.bench.bench_serving import ROW, pct, throughput, timed  # noqa: E402
from tests.models import keras_model, start_serving  # noqa: E402

OVERLAY = ROOT / ".venvs" / "bench-mlflow"

SAVE = """
import sys, mlflow.pyfunc

class SavedModelPredictor(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        import tensorflow as tf
        loaded = tf.saved_model.load(context.artifacts["saved_model"])
        self.fn = loaded.signatures["serving_default"]

    def predict(self, context, model_input, params=None):
        import numpy as np, tensorflow as tf
        out = self.fn(tf.constant(np.asarray(model_input, dtype="float32")))
        return next(iter(out.values())).numpy()

mlflow.pyfunc.save_model(
    sys.argv[2], python_model=SavedModelPredictor(), artifacts={"saved_model": sys.argv[1]}
)
"""


def ensure_mlflow() -> Path:
    python = OVERLAY / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(OVERLAY)], check=True)
        site = subprocess.check_output(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            text=True,
        ).strip()
        Path(site, "hubforge-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    if subprocess.run([str(python), "-c", "import mlflow"], capture_output=True).returncode:
        subprocess.run([str(python), "-m", "pip", "install", "-q", "mlflow"], check=True)
    return python


def serve_mlflow(python: Path, model: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3")
    env["PATH"] = f"{python.parent}{os.pathsep}{env['PATH']}"
    cmd = [str(python.parent / "mlflow"), "models", "serve", "-m", str(model)]
    cmd += ["-p", str(port), "-h", "127.0.0.1", "--env-manager", "local", "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/ping", timeout=2).status_code == 200:
                return proc, url + "/invocations"
        except requests.ConnectionError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow models serve exited: {log.read_text()[-2000:]}")
        time.sleep(0.5)
    raise RuntimeError("mlflow models serve did not answer /ping within 180 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    python = ensure_mlflow()
    with tempfile.TemporaryDirectory(prefix="hubforge-peer-") as tmp:
        base = Path(tmp) / "m"
        saved = keras_model(base, 1)
        env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3")
        subprocess.run(
            [str(python), "-c", SAVE, str(saved), str(Path(tmp) / "pyfunc")],
            check=True,
            capture_output=True,
            env=env,
        )
        servers = {
            "mlflow models serve": serve_mlflow(
                python, Path(tmp) / "pyfunc", Path(tmp) / "mlflow.log"
            ),
            "hubforge": None,
            "hubforge, batching": None,
        }
        proc, url = start_serving("m", base)
        servers["hubforge"] = (proc, url + "/v1/models/m:predict")
        proc, url = start_serving("m", base, "--max-batch-size", "32", "--batch-timeout-ms", "2")
        servers["hubforge, batching"] = (proc, url + "/v1/models/m:predict")
        results = {}
        try:
            for label, (_, url) in servers.items():
                session = requests.Session()
                answer = session.post(url, json=ROW, timeout=30).json()
                latency = timed(
                    lambda s=session, u=url: s.post(u, json=ROW).raise_for_status(),
                    args.requests,
                )
                rates = [throughput(url, c, args.seconds) for c in (1, 8, 32)]
                results[label] = (answer, latency, rates)
        finally:
            for proc, _ in servers.values():
                proc.terminate()
                proc.wait(timeout=30)
    for label, (answer, latency, rates) in results.items():
        print(
            f"{label:20} p50 {pct(latency, 50):6.2f} ms  p99 {pct(latency, 99):6.2f} ms  "
            f"req/s at 1/8/32 clients: {rates[0]:.0f} / {rates[1]:.0f} / {rates[2]:.0f}  "
            f"answer {answer}"
        )


if __name__ == "__main__":
    main()
