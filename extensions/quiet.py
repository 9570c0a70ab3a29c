"""TensorFlow's start-up noise out of notebooks and job logs, kept in a debug log.

On a machine without CUDA, ``import tensorflow`` writes C++ log lines straight to file
descriptor 2 ("Could not find cuda drivers", "failed call to cuInit", the CPU feature
notice): red text in every CPU notebook and job log that asks nothing of the user.
:func:`filter_stderr` puts a pipe in front of fd 2 and a thread that passes every other line
through unchanged and appends those lines to a debug log instead.

Jobs call it in the runner; kernels load it as an IPython extension
(``IPKernelApp.extensions``, set in ``{prefix}/etc/ipython/ipython_kernel_config.json``),
after ipykernel has connected fd 2 to the notebook.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
import sys
import threading
from pathlib import Path

NOISE = re.compile(
    r"cudart_stub\.cc.*Could not find cuda drivers"
    r"|cuda_(?:platform|driver|executor)\.cc.*failed call to cuInit"
    r"|cpu_feature_guard\.cc"
    r"|^To enable the following instructions:.*rebuild TensorFlow"
    r"|All log messages before absl::InitializeLog\(\) is called"
    r"|Unable to register cu(?:DNN|FFT|BLAS) factory"
    r"|computation placer already registered"
    r"|TF-TRT Warning: Could not find TensorRT"
    r"|oneDNN custom operations are on"
    # the TFLite converter reading a SavedModel (hubforge.serving.export_tflite)
    r"|tf_tfl_flatbuffer_helpers\.cc:\d+\] Ignored"
    r"|reader\.cc:\d+\] Reading (?:SavedModel|meta graph)"
    r"|loader\.cc:\d+\] (?:Restoring SavedModel bundle|Running initialization op|SavedModel load)"
    r"|mlir_graph_optimization_pass\.cc:\d+\] MLIR V1 optimization pass is not enabled"
    r"|dump_mlir_util\.cc:\d+\] disabling MLIR crash reproducer"
    r"|^INFO: Created TensorFlow Lite XNNPACK delegate for CPU"
    # tf.keras saving a model (in jobs, where Python's stderr is fd 2 too)
    r"|^INFO:tensorflow:Assets written to: "
)

# TensorFlow's own logger, when it thinks it runs interactively (IPython, a job of a notebook
# with magics), writes INFO records to sys.stdout: past the fd 2 filter, and in a kernel
# straight to the notebook. These records go to the debug log instead.
LOG_NOISE = re.compile(r"^Assets written to: ")

_installed: _Filter | None = None


class _QuietLogger(logging.Filter):
    """Keeps the ``tensorflow`` logger's routine records (LOG_NOISE) out of what users see."""

    def __init__(self, debug_log: Path):
        super().__init__()
        self.debug_log = debug_log

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not LOG_NOISE.search(message):
            return True
        with contextlib.suppress(OSError):
            self.debug_log.parent.mkdir(parents=True, exist_ok=True)
            with self.debug_log.open("a", encoding="utf-8") as f:
                f.write(f"{record.levelname}:{record.name}:{message}\n")
        return False


class _Filter:
    def __init__(self, debug_log: Path):
        self.debug_log = debug_log
        self.original = os.dup(2)
        read, write = os.pipe()
        self.read = read
        os.dup2(write, 2)
        os.close(write)
        self.thread = threading.Thread(target=self._pump, name="hubforge-quiet", daemon=True)
        self.thread.start()
        atexit.register(self.close)

    def _pump(self) -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(self.read, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            self._route([line + b"\n" for line in lines])
        if pending:
            self._route([pending])
        os.close(self.read)

    def _route(self, lines: list[bytes]) -> None:
        shown, noise = [], []
        for line in lines:
            text = line.decode("utf-8", errors="replace")
            (noise if NOISE.search(text) else shown).append(line)
        if shown:
            _write_all(self.original, b"".join(shown))
        if noise:
            try:
                self.debug_log.parent.mkdir(parents=True, exist_ok=True)
                with self.debug_log.open("ab") as f:
                    f.write(b"".join(noise))
            except OSError:
                pass  # a debug log that cannot be written is no reason to lose the job

    def close(self) -> None:
        """Give fd 2 back and wait until everything written so far is through."""
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        os.dup2(self.original, 2)  # the pipe's last write end closes: the thread ends
        self.thread.join(timeout=5)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        try:
            data = data[os.write(fd, data) :]
        except OSError:
            return


def filter_stderr(debug_log: str | os.PathLike | None = None) -> Path | None:
    """Drop TensorFlow's CPU start-up noise from fd 2 from now on (once per process);
    returns the debug log those lines go to."""
    global _installed
    if os.environ.get("HUBFORGE_TF_NOISE") == "show":  # to see everything, as before
        return None
    if _installed is None:
        default = Path.home() / ".cache" / "hubforge" / "tensorflow-startup.log"
        _installed = _Filter(Path(debug_log) if debug_log else default)
        # the logger TensorFlow will use (made now if TensorFlow is not imported yet)
        logging.getLogger("tensorflow").addFilter(_QuietLogger(_installed.debug_log))
    return _installed.debug_log


def load_ipython_extension(ipython: object) -> None:
    """In a kernel: the notebook shows what the user's code writes, not TensorFlow's noise."""
    filter_stderr()
