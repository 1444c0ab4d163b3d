"""The one error type that users see: a message that names the bad input and what is accepted."""


class FactoryError(Exception):
    """A user-facing failure. The command-line entry points print it without a traceback."""
