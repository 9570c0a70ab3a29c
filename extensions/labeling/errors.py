"""The labeling API's errors: ones the user can fix, and Label Studio not being available."""

from __future__ import annotations


class LabelingError(Exception):
    """A mistake the user can fix (unknown label, empty folder, unknown task type...)."""


class LabelStudioDown(LabelingError):
    """Label Studio answers that it is starting, or cannot start (what to do is said)."""
