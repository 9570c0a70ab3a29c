"""Predict requests read as TensorFlow Serving reads them, case by case from its JSON tensor
tests (util/json_tensor_test.cc at commit 9d981c5c of github.com/tensorflow/serving): each
case builds the signature's TensorInfo map as the C++ test does and checks the tensors our
server would feed, or its error."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from google.protobuf import text_format

from hubforge.serving.errors import BadRequest
from hubforge.serving.model import Signature
from hubforge.serving.protocol import inputs_of, parse_body


def signature(**infos: str) -> Signature:
    """A signature with inputs ``name -> "dtype: DT_..."`` (TF1: no shape checks)."""
    from tensorflow.core.protobuf import meta_graph_pb2

    info = meta_graph_pb2.SignatureDef()
    for name, text in infos.items():
        text_format.Parse(text, info.inputs[name])
    return Signature("serving_default", info, runner=lambda t: t, check_shapes=False)


def tensors(sig: Signature, body: str) -> tuple[dict[str, np.ndarray], bool]:
    inputs, rows = inputs_of(parse_body(body.encode()), sig)
    return sig.prepare(inputs), rows


def test_single_unnamed_tensor():
    # :57-85 SingleUnnamedTensor
    out, rows = tensors(signature(default="dtype: DT_INT32"), '{"instances": [[1,2],[3,4],[5,6]]}')
    assert (
        rows
        and out["default"].dtype == np.int32
        and out["default"].tolist()
        == [
            [1, 2],
            [3, 4],
            [5, 6],
        ]
    )


@pytest.mark.parametrize(("dtype", "numpy"), [("DT_FLOAT", np.float32), ("DT_DOUBLE", np.float64)])
def test_mixed_whole_and_decimal_numbers(dtype, numpy):
    # :121-147 MixedInputForFloatTensor, :149-181 MixedInputForDoubleTensor
    values = [1, 2.0, 3, 4, 5.003, 0.007, 0.0]
    out, _ = tensors(signature(default=f"dtype: {dtype}"), json.dumps({"instances": values}))
    assert out["default"].dtype == numpy and out["default"].tolist() == [
        numpy(v).item() for v in values
    ]


def test_float_precision_loss_and_overflow():
    # :183-222 FloatTensorWithPrecisionLoss: 1435774380 and 1435774380.0 both accepted
    sig = signature(default="dtype: DT_FLOAT")
    for text in ("1435774380", "1435774380.0"):
        out, _ = tensors(sig, f'{{"instances": [{text}]}}')
        assert out["default"].tolist() == [np.float32(1435774380).item()]
    # :224-259 FloatTensorThatExceedsMaxReturnsInf: +-DBL_MAX becomes +-inf
    big = sys.float_info.max
    with np.errstate(over="ignore"):
        out, _ = tensors(sig, json.dumps({"instances": [big, -big]}))
    assert out["default"].tolist() == [float("inf"), float("-inf")]


def test_base64_scalars_and_lists():
    # :357-380 SingleUnnamedTensorBase64Scalars, :382-406 SingleUnnamedTensorBase64Lists
    sig = signature(default="dtype: DT_STRING")
    out, _ = tensors(sig, '{"instances": [{"b64": "aGVsbG8="}, {"b64": "d29ybGQ="}]}')
    assert out["default"].tolist() == [b"hello", b"world"]
    out, _ = tensors(sig, '{"instances": [[{"b64": "aGVsbG8="}], [{"b64": "d29ybGQ="}]]}')
    assert out["default"].tolist() == [[b"hello"], [b"world"]]


def test_multiple_named_tensors_rows_and_columns():
    # :439-527 MultipleNamedTensor, :589-640 MultipleNamedTensorColumnarFormat
    sig = signature(int_tensor="dtype: DT_INT32", str_tensor="dtype: DT_STRING")
    body = {
        "instances": [
            {"int_tensor": [[1, 2], [3, 4], [5, 6]], "str_tensor": ["foo", "bar"]},
            {"int_tensor": [[7, 8], [9, 0], [1, 2]], "str_tensor": ["baz", "bat"]},
        ]
    }
    out, rows = tensors(sig, json.dumps(body))
    assert rows and list(out["int_tensor"].shape) == [2, 3, 2]
    assert out["str_tensor"].tolist() == [[b"foo", b"bar"], [b"baz", b"bat"]]
    columns = {"inputs": {"int_tensor": [[1, 2], [3, 4]], "str_tensor": ["foo", "bar"]}}
    out, rows = tensors(sig, json.dumps(columns))
    assert not rows and out["int_tensor"].tolist() == [[1, 2], [3, 4]]
    assert out["str_tensor"].tolist() == [b"foo", b"bar"]


ERRORS = [
    # :642-703 SingleUnnamedTensorErrors
    ({"default": "dtype: DT_INT32"}, "", "document is empty"),
    (
        {"default": "dtype: DT_INT32"},
        '{"signature_name": 5, "instances": [[1,2],[3,4],[5,6,7]]}',
        "must be a string value",
    ),
    (
        {"default": "dtype: DT_INT32"},
        '{"instances": [[1,2],[3,4],[5,6,7]], "inputs": [[1,2],[3,4],[5,6,7]]}',
        "Not formatted correctly",
    ),
    (
        {"default": "dtype: DT_INT32"},
        '{"instances": [[1,2],[3,4],[5,6,7]]}',
        "Expecting tensor size",
    ),
    ({"default": "dtype: DT_INT32"}, '{"instances": [[1,2],[3,4],[[5,6]]]}', "Expecting shape"),
    ({"default": "dtype: DT_INT32"}, '{"instances": [1, [1]]}', "Expecting shape"),
    ({"default": "dtype: DT_INT32"}, '{"instances": [[1,2],["a", "b"]]}', "not of expected type"),
    # :705-830 MultipleNamedTensorErrors
    (
        {"int_tensor": "dtype: DT_INT32", "str_tensor": "dtype: DT_STRING"},
        json.dumps(
            {
                "instances": [
                    {"int_tensor": [[1, 2], [3, 4], [5, 6]], "str_tensor": ["foo", "bar"]},
                    {"int_tensor": [[[7, 8], [9, 0], [1, 2]]], "str_tensor": ["baz", "bat"]},
                ]
            }
        ),
        "Expecting shape",
    ),
    (
        {"int_tensor": "dtype: DT_INT32", "str_tensor": "dtype: DT_STRING"},
        json.dumps(
            {
                "instances": [
                    {"int_tensor": [[1, 2], [3, 4], [5, 6], [7, 8]], "str_tensor": ["foo", "bar"]},
                    {"int_tensor": [[7, 8], [9, 0], [1, 2]], "str_tensor": ["baz", "bat"]},
                ]
            }
        ),
        "Expecting tensor size",
    ),
    (
        {"int_tensor": "dtype: DT_INT32", "str_tensor": "dtype: DT_STRING"},
        json.dumps(
            {
                "instances": [
                    {"int_tensor": [[1, 2], [3, 4], [5, 6]], "str_tensor": ["foo", "bar"]},
                    [1, 20, 30],
                ]
            }
        ),
        "Expecting object but got list",
    ),
    (
        {"str_tensor": "dtype: DT_STRING"},
        '{"instances": [["baz", "bar"], {"str_tensor": ["baz", "bat"]}]}',
        "Expecting value/list but got object",
    ),
    # a ragged string tensor is refused too (numpy alone would make an array of lists)
    (
        {"default": "dtype: DT_STRING"},
        '{"instances": [["a", "b"], ["c"]]}',
        "Expecting tensor size",
    ),
]


@pytest.mark.parametrize(("infos", "body", "message"), ERRORS)
def test_errors_say_what_tf_serving_says(infos, body, message):
    with pytest.raises(BadRequest) as error:
        tensors(signature(**infos), body)
    assert message in str(error.value)
