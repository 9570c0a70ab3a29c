"""Label Studio's start-up gate: the front page says "starting" (200, what the hub checks
before it routes) whether the base URL reaches it quoted or decoded; other paths wait."""

from __future__ import annotations

import json

from hubforge.labeling.ls_main import Gate


def call(gate: Gate, path: str) -> tuple[str, bytes]:
    seen = {}

    def start_response(status, headers):
        seen["status"] = status

    body = b"".join(gate({"PATH_INFO": path}, start_response))
    return seen["status"], body


def test_the_front_page_answers_under_a_quoted_or_decoded_prefix():
    gate = Gate("/hub@forge%20space/services/label-studio")
    for path in (
        "/hub@forge%20space/services/label-studio/",
        "/hub@forge space/services/label-studio/",
        "/hub@forge space/services/label-studio",
    ):
        status, body = call(gate, path)
        assert status == "200 OK" and b"Label Studio is starting" in body, path
    status, body = call(gate, "/hub@forge space/services/label-studio/api/projects")
    assert status.startswith("503") and json.loads(body)["status"] == "starting"


def test_once_started_everything_goes_to_label_studio():
    gate = Gate("/services/label-studio")
    gate.app = lambda environ, start_response: [b"label studio"]
    assert gate({"PATH_INFO": "/services/label-studio/"}, lambda *a: None) == [b"label studio"]
