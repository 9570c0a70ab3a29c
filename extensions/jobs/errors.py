"""Errors of the jobs engine; every message says what to do."""


class JobError(ValueError):
    """Bad input for a job; nothing was created."""


class JobNotFound(KeyError):
    """No such job for this user."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "No such job"
