"""The one exception type callsort raises on purpose.

Anything derived from :class:`CallsortError` carries a message meant for the
user; the CLI turns it into an exit code instead of a traceback.
"""


class CallsortError(Exception):
    """An error with a message fit for the user."""

    exit_code = 2


class UsageError(CallsortError):
    """The command was called wrongly (bad path, option or value)."""

    exit_code = 2


class DecodeError(CallsortError):
    """A recording could not be read as audio."""


class ModelError(CallsortError):
    """A model folder is missing, corrupt, or does not fit the features."""

    exit_code = 2


class DatasetError(CallsortError):
    """A training folder has no usable labelled audio."""

    exit_code = 2
