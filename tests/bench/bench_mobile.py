"""Benchmark: the examples' digits model made ready for phones (#37).

The model of examples/02-train.ipynb (16x16 RGB -> Flatten -> Dense 64 -> 5 classes),
trained on the digits the examples label (sklearn's digits 0-4, drawn as the examples draw
them), then every variant serving.optimize builds: size, gzipped size, accuracy on the
held-out fifth, and LiteRT latency (p50 of 200 one-sample calls, 1 thread and all threads),
peak memory.

    .venv/bin/python tests/bench/bench_mobile.py [--runs 200] [--epochs 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def digits():
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    found = load_digits(n_class=5)
    xs = []
    for pixels in found.images:
        image = Image.fromarray((pixels * 255 / 16).astype("uint8")).convert("RGB")
        image = image.resize((64, 64), Image.NEAREST).resize((16, 16))
        xs.append(np.asarray(image, dtype="float32") / 255.0)
    return np.stack(xs), found.target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    import tf_keras

    from hubforge.serving.mobile import _split, optimize
    from hubforge.serving.mobile_variants import VARIANTS

    x, y = digits()
    (x_train, y_train), _ = _split(x, y, 0.2)  # the fifth optimize holds out: never trained on
    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential(
        [
            tf_keras.layers.Input((16, 16, 3)),
            tf_keras.layers.Flatten(),
            tf_keras.layers.Dense(64, activation="relu"),
            tf_keras.layers.Dense(5, activation="softmax"),
        ]
    )
    model.compile(tf_keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    model.fit(x_train, y_train, epochs=15, batch_size=16, verbose=0)
    with tempfile.TemporaryDirectory(prefix="hubforge-bench-") as tmp:
        model.save(f"{tmp}/digits/1")
        started = time.perf_counter()
        report = optimize(
            f"{tmp}/digits",
            variants=list(VARIANTS),
            data=(x, y),
            epochs=args.epochs,
            runs=args.runs,
            progress=lambda step, total, what: print(f"[{step}/{total}] {what}", flush=True),
        )
        took = time.perf_counter() - started
    print(f"{os.cpu_count()} CPUs; {len(x)} digits, {report.samples} held out; {took:.0f} s")
    print(report.table())


if __name__ == "__main__":
    main()
