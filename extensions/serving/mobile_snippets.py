"""Runnable code for an optimized ``.tflite`` file: Python (LiteRT), Android (Kotlin, the
TFLite Interpreter) and iOS (Swift, TensorFlowLiteSwift), with the model's input and output
spelled out (names, shapes, the normalisation applied before the model, the class names)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

PYTHON = '''"""Run {file} with LiteRT (pip install ai-edge-litert), as on a device.

Input {input!r}: float32, shaped [N, {shape}]{norm_doc}.
Output {output!r}: [N, {classes}] {what}.

    python {script} data.npz     # arrays x and y: prints the accuracy on them
"""

import sys
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

MODEL = Path(__file__).with_name({file!r})
MEAN, STD = {mean}, {std}  # inputs are (x - MEAN) / STD before the model
CLASSES = {class_names}

runner = Interpreter(model_path=str(MODEL)).get_signature_runner("serving_default")


def predict(x):
    """Scores for each row of x (shaped [N, {shape}])."""
    x = (np.asarray(x, dtype="float32") - MEAN) / STD
    return np.concatenate([runner({input}=row[None])[{output!r}] for row in x])


if __name__ == "__main__":
    data = np.load(sys.argv[1])
    scores = predict(data["x"])
    guess = scores.argmax(axis=1) if scores.shape[1] > 1 else (scores[:, 0] > 0.5)
    print(f"accuracy {{100 * np.mean(guess == data['y'].reshape(-1)):.2f}}")
'''

KOTLIN = """// Android: implementation("com.google.ai.edge.litert:litert:1.4.0")
// (the TFLite Interpreter); put {file} in src/main/assets.
import org.tensorflow.lite.Interpreter
import org.tensorflow.lite.support.common.FileUtil

val CLASSES = listOf({kotlin_classes})
val interpreter = Interpreter(FileUtil.loadMappedFile(context, "{file}"))

// input "{input}": 1 x {shape_x} floats, each (value - {mean}) / {std}
fun predict(input: {kotlin_type}): Int {{
    val output = Array(1) {{ FloatArray({classes}) }}  // "{output}"
    interpreter.run(arrayOf(input), output)
    return output[0].indices.maxBy {{ output[0][it] }}  // CLASSES[...]
}}
"""

SWIFT = """// iOS: pod 'TensorFlowLiteSwift' (or LiteRT's Swift package); add {file} to the app.
import TensorFlowLite

let classes = [{swift_classes}]
let path = Bundle.main.path(forResource: "{stem}", ofType: "tflite")!
let interpreter = try Interpreter(modelPath: path)
try interpreter.allocateTensors()

// input "{input}": {count} Float32 values (1 x {shape_x}, row-major), each (value - {mean}) / {std}
func predict(_ input: [Float]) throws -> Int {{
    let data = input.withUnsafeBufferPointer {{ Data(buffer: $0) }}
    try interpreter.copy(data, toInputAt: 0)
    try interpreter.invoke()
    let output = try interpreter.output(at: 0)  // "{output}": {classes} Float32 scores
    let scores = output.data.withUnsafeBytes {{ Array($0.bindMemory(to: Float.self)) }}
    return scores.indices.max {{ scores[$0] < scores[$1] }}!  // classes[...]
}}
"""


def snippets(
    variant: Any,
    signature: dict[str, Any],
    class_names: list[str] | None,
    normalization: dict[str, Any] | None,
) -> dict[str, str]:
    (input_name, shape), (output_name, out_shape) = (
        next(iter(signature["inputs"].items())),
        next(iter(signature["outputs"].items())),
    )
    norm = normalization or {}
    mean, std = norm.get("mean", 0.0), norm.get("std", 1.0)
    classes = math.prod(out_shape) or 1
    names = class_names or [str(i) for i in range(classes)]
    fields = {
        "file": Path(variant.path).name,
        "stem": Path(variant.path).stem,
        "script": "predict.py",
        "input": input_name,
        "output": output_name,
        "shape": ", ".join(str(d) for d in shape),
        "shape_x": " x ".join(str(d) for d in shape),
        "count": math.prod(shape),
        "classes": classes,
        "what": "class scores" if classes > 1 else "probability of the positive class",
        "mean": json.dumps(mean),
        "std": json.dumps(std),
        "norm_doc": f", normalised as (x - {mean}) / {std}" if normalization else "",
        "class_names": json.dumps(names),
        "kotlin_classes": ", ".join(json.dumps(n) for n in names),
        "swift_classes": ", ".join(json.dumps(n) for n in names),
        "kotlin_type": _kotlin_type(shape),
    }
    return {
        "python": PYTHON.format(**fields),
        "kotlin": KOTLIN.format(**fields),
        "swift": SWIFT.format(**fields),
    }


def _kotlin_type(shape: list[int]) -> str:
    """FloatArray for one dimension, Array<FloatArray> for two, and so on."""
    kind = "FloatArray"
    for _ in shape[1:]:
        kind = f"Array<{kind}>"
    return kind


def write_python(variant: Any, signature: dict, class_names: Any, normalization: Any) -> Path:
    """The Python snippet as ``predict.py`` beside the file."""
    path = Path(variant.path).with_name("predict.py")
    path.write_text(snippets(variant, signature, class_names, normalization)["python"])
    return path
