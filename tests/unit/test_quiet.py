"""TensorFlow's CPU start-up noise stays out of job logs and notebooks (kept in a debug log);
everything else written to stderr passes through unchanged, tracebacks included."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = """
import os, sys
from hubforge.quiet import filter_stderr
filter_stderr(sys.argv[1])
os.write(2, b"before tensorflow\\n")
sys.ps1 = ">>> "  # TensorFlow's logger then logs INFO to stdout, as in IPython
import tensorflow as tf
print(float(tf.reduce_sum(tf.constant([1.0, 2.0]))))
module = tf.Module()
module.v = tf.Variable(1.0)
tf.saved_model.save(module, sys.argv[2])  # logs "Assets written to: ..."
os.write(2, b"after tensorflow\\n")
raise ValueError("the user's own error")
"""


def run(tmp_path, **env):
    debug = tmp_path / "debug.log"
    r = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(debug), str(tmp_path / "saved")],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": "", **env},
    )
    return r, debug


def test_noise_goes_to_the_debug_log_and_the_rest_through(tmp_path):
    r, debug = run(tmp_path)
    assert r.returncode == 1 and r.stdout.strip() == "3.0"
    assert r.stderr.startswith("before tensorflow\nafter tensorflow\nTraceback"), r.stderr
    assert r.stderr.rstrip().endswith("ValueError: the user's own error")
    kept = debug.read_text()
    assert "cuInit" in kept or "Could not find cuda drivers" in kept, kept
    assert "cuda" not in r.stderr.lower() and "cpu_feature_guard" not in r.stderr
    assert (tmp_path / "saved" / "saved_model.pb").is_file()
    assert "Assets written to" not in r.stdout + r.stderr  # TensorFlow's logger, on stdout
    assert f"INFO:tensorflow:Assets written to: {tmp_path / 'saved'}" in kept, kept


def test_show_keeps_everything(tmp_path):
    r, debug = run(tmp_path, HUBFORGE_TF_NOISE="show")
    assert "cuda" in r.stderr.lower() and not debug.exists()
    assert "Assets written to" in r.stdout


def test_a_kernel_shows_the_users_stderr_but_not_the_noise(tmp_path, monkeypatch):
    """A real kernel of this environment (its ipython_kernel_config loads hubforge.quiet)."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(
                "import os\nimport tensorflow as tf\nprint(float(tf.reduce_sum([1.0, 2.0])))\n"
                "os.write(2, b'mine\\n')"
            )
        ]
    )
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # a CPU server's kernel
    monkeypatch.setenv("HOME", str(tmp_path))
    # ipykernel connects fd 2 to the notebook except under pytest: be a kernel as users get
    monkeypatch.delenv("PYTEST_CURRENT_TEST", raising=False)
    NotebookClient(nb, kernel_name="python3", timeout=180).execute()
    streams = [o for o in nb.cells[0].outputs if o.get("output_type") == "stream"]
    stderr = "".join(o["text"] for o in streams if o["name"] == "stderr")
    stdout = "".join(o["text"] for o in streams if o["name"] == "stdout")
    assert "3.0" in stdout and "mine" in stderr, (stdout, stderr)
    assert "cuda" not in stderr.lower() and "absl" not in stderr, stderr
    assert (tmp_path / ".cache" / "hubforge" / "tensorflow-startup.log").is_file()
