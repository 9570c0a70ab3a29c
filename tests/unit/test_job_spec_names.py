"""Names and sizes are checked whole: a trailing newline is not a valid name (security
review F15 residual: ``JobSpec.MEMORY`` accepted "16Gi\\n")."""

from __future__ import annotations

import pytest

from hubforge.jobs.errors import JobError
from hubforge.jobs.spec import JobSpec
from hubforge.serving import saved_requests
from hubforge.serving.errors import BadRequest


@pytest.mark.parametrize(
    "field, value",
    [("name", "mnist\n"), ("priority", "normal\n"), ("memory", "16Gi\n")],
)
def test_a_trailing_newline_is_refused(field, value):
    spec = JobSpec(name="mnist")
    setattr(spec, field, value)
    with pytest.raises(JobError, match=field):
        spec.validate()


def test_a_spec_without_a_name_says_what_to_give():
    with pytest.raises(JobError, match="give the job a 'name'"):
        JobSpec.from_dict({"workers": 1})


def test_saved_requests_of_an_endpoint_named_with_a_newline_are_refused():
    with pytest.raises(BadRequest, match="is not an endpoint name"):
        saved_requests._path("scorer\n")
