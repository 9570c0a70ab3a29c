"""Small training notebooks for the job tests (tiny Keras models on generated data)."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

TRAIN = """\
strategy = distribute.strategy()
rng = np.random.RandomState(0)
x = rng.rand(512, 4).astype("float32")
y = (x.sum(axis=1) > 2).astype("float32")
ds = tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(distribute.global_batch_size(16))
with strategy.scope():
    model = tf.keras.Sequential([
        tf.keras.layers.Dense(8, activation="relu", input_shape=(4,)),
        tf.keras.layers.Dense(1, activation="sigmoid"),
    ])
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
slow = tf.keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: time.sleep(delay))
model.fit(ds, epochs=epochs, steps_per_epoch=steps,
          callbacks=[*distribute.callbacks(), slow], verbose=2)
model.save(distribute.export_dir())
distribute.save_training_data(x, y)  # what "Optimize for mobile" fine-tunes with
"""


def training_notebook(path: Path, *, strategy: bool = True, language_info: bool = True) -> Path:
    """A notebook with a parameters cell, a skip-job cell, magics and a Keras fit."""
    train = TRAIN if strategy else TRAIN.replace("with strategy.scope():", "if True:")
    cells = [
        new_markdown_cell("# Train a tiny classifier"),
        new_code_cell("epochs = 3\nsteps = 10\ndelay = 0.0", metadata={"tags": ["parameters"]}),
        new_code_cell(
            "import time\nimport numpy as np\nimport tensorflow as tf\n"
            "from hubforge import distribute"
        ),
        new_code_cell("print('only when exploring')", metadata={"tags": ["skip-job"]}),
        new_code_cell("!echo shell-command-ran\n%time warmup = 1"),
        new_code_cell(train),
    ]
    nb = new_notebook(cells=cells)
    if language_info:
        nb.metadata["language_info"] = {"name": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path
