"""The error base of every layer: a TapeError is reported as one line that names the thing and the fix."""


class TapeError(Exception):
    """Base of every error the CLI reports as one line instead of a traceback."""
