"""tf.train.Example bytes written without TensorFlow (hubforge.serving.examples, used in the
endpoint's codec process) parse, with TensorFlow's own protobuf classes, to the Example that
TF Serving's JSON rules describe (util/json_tensor.cc AddValueToFeature)."""

from __future__ import annotations

import pytest

from hubforge.serving.errors import BadRequest
from hubforge.serving.examples import examples_from_json, features_from_json, serialize_example
from tests import protos


def _features(serialized: bytes) -> dict:
    parsed = protos.example_pb2.Example.FromString(serialized)
    found = {}
    for name, feature in parsed.features.feature.items():
        kind = feature.WhichOneof("kind")
        found[name] = (kind, list(getattr(feature, kind).value) if kind else [])
    return found


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"x": 2.5}, {"x": ("float_list", [2.5])}),
        ({"n": -3, "b": True}, {"n": ("int64_list", [-3]), "b": ("int64_list", [1])}),
        ({"big": [2**63 - 1, -(2**63)]}, {"big": ("int64_list", [2**63 - 1, -(2**63)])}),
        (
            {"t": "héllo", "r": {"b64": "AAEC"}},
            {"t": ("bytes_list", ["héllo".encode()]), "r": ("bytes_list", [b"\0\1\2"])},
        ),
        ({"f": [1e300, -1e300]}, {"f": ("float_list", [float("inf"), float("-inf")])}),
        ({"empty": []}, {"empty": (None, [])}),
        ({"ünï": [0.1, 0.2]}, {"ünï": ("float_list", [pytest.approx(0.1), pytest.approx(0.2)])}),
        ({}, {}),
    ],
)
def test_examples_parse_as_tensorflow_reads_them(value, expected):
    assert _features(serialize_example(features_from_json(value))) == expected


def test_the_context_is_merged_in_and_the_examples_own_value_wins():
    body = {"context": {"c": 1, "x": 9.0}, "examples": [{"x": 2.0}, {"y": "z"}]}
    first, second = map(_features, examples_from_json(body, "classify"))
    assert first == {"c": ("int64_list", [1]), "x": ("float_list", [2.0])}
    assert second == {
        "c": ("int64_list", [1]),
        "x": ("float_list", [9.0]),
        "y": ("bytes_list", [b"z"]),
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"examples": [{"x": [1, "a"]}]}, "expecting type: int64"),
        ({"examples": [{"x": 2**64}]}, "uint64_t"),
        ({"examples": [{"x": None}]}, "unexpected JSON type: Null"),
        ({"examples": [[1]]}, "must be JSON object"),
        ({"examples": []}, "empty array"),
        ({}, "'examples' is expected"),
    ],
)
def test_bad_examples_are_refused_with_tf_servings_message(body, message):
    with pytest.raises(BadRequest, match=message):
        examples_from_json(body, "classify")
