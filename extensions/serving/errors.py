"""Errors of the serving engine; each maps to an HTTP status and a message for the client."""


class ServingError(Exception):
    status = 500

    @property
    def http_status(self) -> int:
        """A failure of the endpoint process itself is the gateway's 502."""
        return self.status if self.status != 500 else 502


class BadRequest(ServingError):
    """The client's mistake: malformed JSON, wrong shape or dtype, missing input."""

    status = 400


class NotFound(ServingError):
    status = 404


class Conflict(ServingError):
    """The owner's folder changed under the operation (a folder swapped for a link or a
    file while a model was copied in): nothing was deployed; trying again may work."""

    status = 409


class TooLarge(ServingError):
    status = 413


class Unavailable(ServingError):
    """The endpoint records cannot be read right now (a damaged state file)."""

    status = 503
