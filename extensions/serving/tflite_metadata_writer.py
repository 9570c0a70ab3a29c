"""TFLite metadata (labels, normalisation) written into ``.tflite`` files, or read back.

Runs inside tflite-support's own environment (.venvs/tflite-support: it needs protobuf<4,
TensorFlow a newer one), by file path: the standard library and tflite_support only, never
hubforge (not installed there). serving.tflite_metadata starts it with a JSON request on
stdin and reads a JSON answer on stdout:

    {"op": "write", "files": [...], "name": ..., "description": ..., "class_names": [...],
     "normalization": {"mean": m, "std": s}, "input_kind": "image" | "tensor"}
      -> {"files": {path: true | "why not"}}
    {"op": "read", "file": path} -> {"metadata": {...}, "files": {name: text}}
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

LABELS = "labels.txt"
FLOAT32 = 0  # TFLite's TensorType.FLOAT32


def _model(path: Path) -> bytes:
    """The file's bytes; ValueError when it is missing or not a TFLite model."""
    if not path.is_file():
        raise ValueError(f"no such file: {path}")
    content = path.read_bytes()
    if len(content) < 8 or content[4:8] != b"TFL3":
        raise ValueError(f"{path.name} is not a TFLite model (no TFL3 identifier)")
    return content


def _tensor(content: bytes, output: bool) -> tuple[list[int], int]:
    """Shape and type of the model's one input (or output) tensor."""
    from tflite_support import schema_py_generated as schema

    graph = schema.Model.GetRootAsModel(content, 0).Subgraphs(0)
    count = graph.OutputsLength() if output else graph.InputsLength()
    if count != 1:
        raise ValueError(f"{count} {'outputs' if output else 'inputs'}: one is supported")
    tensor = graph.Tensors(graph.Outputs(0) if output else graph.Inputs(0))
    return [int(d) for d in tensor.ShapeAsNumpy()], int(tensor.Type())


def _norm(request: dict[str, Any], channels: int) -> tuple[list[float], list[float], bool]:
    """Per-channel mean and std (mean 0, std 1 when none is given), and whether given."""
    given = request.get("normalization") or {}
    values = []
    for key, default in (("mean", 0.0), ("std", 1.0)):
        value = given.get(key, default)
        value = [float(v) for v in value] if isinstance(value, list) else [float(value)]
        if len(value) not in (1, channels):
            raise ValueError(f"normalization {key}: 1 or {channels} values, not {len(value)}")
        values.append(value)
    if any(s == 0 for s in values[1]):
        raise ValueError("normalization std: not 0")
    return values[0], values[1], bool(given)


def _input_md(content: bytes, request: dict[str, Any]) -> Any:
    """The input's metadata: an image (with its normalisation) or a plain tensor."""
    from tflite_support import metadata_schema_py_generated as fb
    from tflite_support.metadata_writers import metadata_info

    shape, kind = _tensor(content, output=False)
    channels = shape[-1] if shape else 1
    mean, std, given = _norm(request, channels)
    shown = [v[0] if len(v) == 1 else v for v in (mean, std)]
    how = (
        f"normalised as (x - {shown[0]}) / {shown[1]} before the model"
        if given
        else "given to the model as they are (mean 0, std 1: already in the model's range)"
    )
    image = len(shape) == 4 and channels in (1, 3) and kind == FLOAT32
    if request.get("input_kind") == "image" and image:
        space = fb.ColorSpaceType.RGB if channels == 3 else fb.ColorSpaceType.GRAYSCALE
        md = metadata_info.InputImageTensorMd(
            name="input",
            description=f"An image; its values are {how}.",
            norm_mean=mean,
            norm_std=std,
            color_space_type=space,
        )
        return md.create_metadata()
    if request.get("input_kind") == "image":
        raise ValueError(f"input shaped {shape}, type {kind}: not a float image of 1 or 3 channels")
    md = metadata_info.TensorMd(name="input", description=f"The model's input; values {how}.")
    found = md.create_metadata()
    unit = fb.ProcessUnitT()
    unit.optionsType = fb.ProcessUnitOptions.NormalizationOptions
    unit.options = fb.NormalizationOptionsT()
    unit.options.mean, unit.options.std = mean, std
    found.processUnits = [unit]
    return found


def _output_md(content: bytes, request: dict[str, Any], labels: Path | None) -> Any:
    """The output's metadata: class scores with the label file, or a plain tensor."""
    from tflite_support.metadata_writers import metadata_info

    shape, _ = _tensor(content, output=True)
    outputs, names = shape[-1] if shape else 1, request.get("class_names") or []
    if labels is None:
        md = metadata_info.TensorMd(name="output", description="The model's output.")
        return md.create_metadata()
    if len(names) != outputs and not (outputs == 1 and len(names) == 2):
        raise ValueError(f"{len(names)} class names for {outputs} output values")
    what = "the probability of the second label" if outputs == 1 else "one score per label"
    md = metadata_info.ClassificationTensorMd(
        name="output",
        description=f"Class scores: {what} in {LABELS}.",
        label_files=[metadata_info.LabelFileMd(str(labels))],
    )
    return md.create_metadata()


def _write_one(path: Path, request: dict[str, Any], labels: Path | None) -> None:
    """The metadata written into ``path``, atomically (a temporary file, then replaced)."""
    from tensorflow_lite_support.metadata.python.metadata_writers import metadata_writer
    from tflite_support.metadata_writers import metadata_info

    content = _model(path)
    general = metadata_info.GeneralMd(
        name=request.get("name") or path.stem, description=request.get("description") or ""
    )
    writer = metadata_writer.MetadataWriter.create_from_metadata(
        bytearray(content),
        general.create_metadata(),
        [_input_md(content, request)],
        [_output_md(content, request, labels)],
        [str(labels)] if labels else None,
    )
    populated = bytes(writer.populate())
    tmp = path.with_name(f".{path.name}.metadata.tmp")
    try:
        tmp.write_bytes(populated)
        os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write(request: dict[str, Any]) -> dict[str, Any]:
    """Each file of the request written, or why not (a clear error per file)."""
    done: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="tflite-metadata-") as scratch:
        labels = None
        if request.get("class_names"):
            labels = Path(scratch) / LABELS
            labels.write_text("".join(f"{n}\n" for n in request["class_names"]))
        for name in request.get("files") or []:
            try:
                _write_one(Path(name), request, labels)
                done[name] = True
            except Exception as e:  # (one file's error is its own; the others go on)
                done[name] = f"{type(e).__name__}: {e}".strip()[:500]
    return {"files": done}


def read(request: dict[str, Any]) -> dict[str, Any]:
    """The file's metadata (as JSON) and its packed associated files (as text)."""
    from tflite_support import metadata

    shown = metadata.MetadataDisplayer.with_model_buffer(_model(Path(request["file"])))
    files = {
        name: shown.get_associated_file_buffer(name).decode("utf-8", "replace")
        for name in shown.get_packed_associated_file_list()
    }
    return {"metadata": json.loads(shown.get_metadata_json()), "files": files}


def main() -> int:
    try:
        request = json.load(sys.stdin)
        if request.get("op") == "write":
            answer = write(request)
        elif request.get("op") == "read":
            answer = read(request)
        else:
            raise ValueError(f"op {request.get('op')!r}: 'write' or 'read'")
    except Exception as e:
        json.dump({"error": f"{type(e).__name__}: {e}"[:500]}, sys.stdout)
        return 1
    json.dump(answer, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
