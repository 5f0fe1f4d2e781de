"""Errors the domain raises; the HTTP and CLI layers turn them into messages."""


class DomainError(Exception):
    """A request the rules do not allow; the message is meant for a person."""


class NotFound(DomainError):
    pass


class Conflict(DomainError):
    pass
