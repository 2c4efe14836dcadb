"""The error type for bad user input: the CLI prints its message (no traceback) and exits with 2."""


class UserError(ValueError):
    """Input that cannot be used (bad config, unknown environment, d > D, missing data, ...)."""
