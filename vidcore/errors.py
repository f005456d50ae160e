"""Errors a user can cause, and how the command-line tools report them.

Raise ``UserInputError`` (or ``DataError`` for bad data files) with one
message that says what was expected and where; ``cli.run`` prints it as one
line and exits with status 1 instead of a traceback.
"""


class UserInputError(ValueError):
    """A bad flag value, path or configuration."""


class DataError(UserInputError):
    """A data file that does not match what was asked for (names the file)."""
