"""Errors of the jobs engine; every message says what to do."""


class JobError(ValueError):
    """Bad input for a job, or a request the job's state forbids; nothing was changed.

    ``status`` is the HTTP status REST views answer with (400 bad input, 409 conflict).
    """

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status

    @property
    def http_status(self) -> int:
        return self.status


class JobNotFound(KeyError):
    """No such job for this user."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "No such job"
