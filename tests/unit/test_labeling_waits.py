"""A labeling call made while Label Studio finishes its start (#31) waits for it, saying so
once, instead of failing with "hubforge service unreachable … Read timed out"."""

from __future__ import annotations

import pytest

from hubforge.client import ServiceError
from hubforge.labeling import connection
from hubforge.labeling.server import STARTING


def test_a_call_during_the_start_waits_and_then_succeeds(monkeypatch, capsys):
    monkeypatch.setattr(connection.time, "sleep", lambda s: None)
    answers = [ServiceError(503, f"hubforge service: {STARTING}")] * 3 + [{"ok": 1}]

    def call():
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert connection._waiting_for_label_studio(call) == {"ok": 1}
    assert capsys.readouterr().err.count("Label Studio is finishing its start") == 1


@pytest.mark.parametrize(
    "error",
    [
        ServiceError(503, "hubforge service: Label Studio's database is damaged"),
        ServiceError(403, "hubforge service: not yours"),
        ServiceError(0, "hubforge service unreachable"),
    ],
)
def test_other_refusals_are_not_waited_on(error):
    calls = []

    def call():
        calls.append(1)
        raise error

    with pytest.raises(ServiceError):
        connection._waiting_for_label_studio(call)
    assert len(calls) == 1
