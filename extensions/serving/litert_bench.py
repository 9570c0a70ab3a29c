"""Latency and peak memory of a ``.tflite`` file with LiteRT's interpreter, as on a device.

Run in a process of its own (``python -m hubforge.serving.litert_bench FILE``), so that what
it measures is the interpreter's alone: the peak resident memory the run added to a process
that imported only LiteRT, and the time of ``runs`` single-sample invocations after
``warmup`` ones (TFLite's benchmark tool does the same), on ``threads`` CPU threads. It
prints one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import sys
import time
from pathlib import Path


def _status(key: str) -> int:
    """VmRSS or VmHWM (the peak) of this process, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reset_peak() -> None:
    """The peak starts again from what the process holds now (Linux: clear_refs 5)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def measure(path: str, runs: int = 200, threads: int = 1, warmup: int = 10) -> dict:
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    _reset_peak()  # (the imports' own peak is not the model's)
    before = _status("VmRSS")
    interpreter = Interpreter(model_path=path, num_threads=threads)
    interpreter.allocate_tensors()
    rng = np.random.default_rng(0)
    for detail in interpreter.get_input_details():
        shape = [d if d > 0 else 1 for d in detail["shape"]]
        shape[0] = 1
        kind = np.dtype(detail["dtype"])
        value = rng.standard_normal(shape) if kind.kind == "f" else np.zeros(shape)
        interpreter.resize_tensor_input(detail["index"], shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(detail["index"], value.astype(kind))
    for _ in range(warmup):
        interpreter.invoke()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        interpreter.invoke()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {
        "threads": threads,
        "runs": runs,
        "p50_ms": times[len(times) // 2],
        "p90_ms": times[min(len(times) - 1, int(len(times) * 0.9))],
        "peak_memory_bytes": max(0, _status("VmHWM") - before),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    json.dump(measure(args.model, args.runs, args.threads), sys.stdout)


if __name__ == "__main__":
    main()
