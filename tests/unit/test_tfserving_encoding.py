"""Response encoding as TensorFlow Serving's own tests expect it, case by case (sources cited
from github.com/tensorflow/serving at commit 9d981c5c)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hubforge.serving.protocol import format_outputs


def _tensors() -> dict[str, np.ndarray]:
    """util/json_tensor_test.cc:1011-1081 (FromJsonMultipleNamedTensors): the tensor map."""
    return {
        "float_tensor": np.array([[1.0], [2.0]], np.float32),
        "int_tensor": np.array([[[1, 2], [3, 4], [5, 6]], [[7, 8], [9, 0], [1, 2]]], np.int32),
        "str_tensor": np.array([[b"foo", b"bar"], [b"baz", b"bat"]], dtype=object),
        "double_scalar_tensor": np.array([8.0, 9.0], np.float64),
        "str_tensor_bytes": np.array([[b"hello", b"world"], [b"tf", b"serving"]], dtype=object),
    }


def test_named_tensors_in_row_format():
    """util/json_tensor_test.cc:1083-1101: strings plain, *_bytes as {"b64": ...}."""
    assert format_outputs(_tensors(), row_format=True) == {
        "predictions": [
            {
                "double_scalar_tensor": 8.0,
                "float_tensor": [1.0],
                "int_tensor": [[1, 2], [3, 4], [5, 6]],
                "str_tensor": ["foo", "bar"],
                "str_tensor_bytes": [{"b64": "aGVsbG8="}, {"b64": "d29ybGQ="}],
            },
            {
                "double_scalar_tensor": 9.0,
                "float_tensor": [2.0],
                "int_tensor": [[7, 8], [9, 0], [1, 2]],
                "str_tensor": ["baz", "bat"],
                "str_tensor_bytes": [{"b64": "dGY="}, {"b64": "c2VydmluZw=="}],
            },
        ]
    }


def test_named_tensors_in_columnar_format():
    """util/json_tensor_test.cc:1103-1115."""
    assert format_outputs(_tensors(), row_format=False) == {
        "outputs": {
            "double_scalar_tensor": [8.0, 9.0],
            "float_tensor": [[1.0], [2.0]],
            "int_tensor": [[[1, 2], [3, 4], [5, 6]], [[7, 8], [9, 0], [1, 2]]],
            "str_tensor": [["foo", "bar"], ["baz", "bat"]],
            "str_tensor_bytes": [
                [{"b64": "aGVsbG8="}, {"b64": "d29ybGQ="}],
                [{"b64": "dGY="}, {"b64": "c2VydmluZw=="}],
            ],
        }
    }


@pytest.mark.parametrize(
    ("value", "written"),
    [
        (2.05, "2.05"),  # util/json_tensor.cc:129-136: no noise digits from float -> double
        (0.2, "0.2"),
        (3.5, "3.5"),
        (1.0 / 3.0, "0.333333343"),  # six digits do not give it back: max_digits10 (:145-149)
        (float("nan"), "NaN"),  # :163-166, api_rest.md "JSON conformance"
        (float("inf"), "Infinity"),
        (float("-inf"), "-Infinity"),
    ],
)
def test_float32_outputs_are_written_as_tf_serving_writes_them(value, written):
    out = format_outputs({"y": np.array([value], np.float32)}, row_format=True)
    assert json.dumps(out) == '{"predictions": [' + written + "]}"


def test_one_unnamed_string_output_is_plain_text():
    """g3doc/api_rest.md "Output of binary values": only *_bytes outputs are binary."""
    assert format_outputs({"label": np.array([b"cat"], dtype=object)}, True) == {
        "predictions": ["cat"]
    }
