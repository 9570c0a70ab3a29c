"""Requests kept for an endpoint's Try it: limits, names, and a damaged file."""

from __future__ import annotations

import pytest

from hubforge.serving import saved_requests
from hubforge.serving.errors import BadRequest

BODY = {"instances": [[1.0, 2.0]]}


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def test_kept_replaced_and_deleted(home):
    saved_requests.save("model", "a", BODY)
    saved_requests.save("model", "b", {"instances": [[3.0, 4.0]]})
    kept = saved_requests.save("model", " a ", {"instances": [[5.0, 6.0]]})  # same name
    assert [(r["name"], r["request"]) for r in kept] == [
        ("a", {"instances": [[5.0, 6.0]]}),
        ("b", {"instances": [[3.0, 4.0]]}),
    ]
    assert saved_requests.list_saved("model") == kept
    assert saved_requests.list_saved("other") == []
    assert [r["name"] for r in saved_requests.delete("model", "a")] == ["b"]
    with pytest.raises(KeyError):
        saved_requests.delete("model", "a")


@pytest.mark.parametrize(
    ("endpoint", "name", "body", "says"),
    [
        ("../x", "a", BODY, "not an endpoint name"),
        ("Model", "a", BODY, "not an endpoint name"),
        ("model", "", BODY, "1 to 60"),
        ("model", "x" * 61, BODY, "1 to 60"),
        ("model", "tab\there", BODY, "printable"),
        ("model", "a", {"inputs": [1]}, '{"instances"'),
        ("model", "a", {"instances": [[0.5] * 300_000]}, "1 MB"),
    ],
)
def test_bad_input_says_what_to_do(endpoint, name, body, says):
    with pytest.raises(BadRequest, match=says.replace("(", r"\(")):
        saved_requests.save(endpoint, name, body)
    assert saved_requests.list_saved("model") == []  # nothing half written


def test_fifty_at_most(home):
    for i in range(saved_requests.MAX_SAVED):
        saved_requests.save("model", f"r{i}", BODY)
    with pytest.raises(BadRequest, match="delete one first"):
        saved_requests.save("model", "one more", BODY)
    saved_requests.save("model", "r3", BODY)  # replacing one is fine


def test_a_damaged_file_is_reported_with_its_path_and_kept(home):
    path = home / ".hubforge" / "saved-requests" / "model.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"requests": [')
    with pytest.raises(BadRequest, match=r"saved-requests/model\.json"):
        saved_requests.list_saved("model")
    assert path.read_text() == '{"requests": ['
