"""The one exception type callsort raises on purpose.

Anything derived from :class:`CallsortError` carries a message meant for the
user; the CLI turns it into an exit code instead of a traceback.
"""

EXIT_INTERNAL = 70
"""Exit code of a run that stopped on an internal error (a bug, or an unexpected system error)."""
EXIT_INTERRUPTED = 130
"""Exit code of a run stopped by Ctrl-C (128 + SIGINT, as shells report it)."""


class CallsortError(Exception):
    """An error with a message fit for the user."""

    exit_code = 2


class UsageError(CallsortError):
    """The command was called wrongly (bad path, option or value)."""

    exit_code = 2


class DecodeError(CallsortError):
    """A recording could not be read as audio."""


class DatasetWriteError(CallsortError):
    """The dataset folder cannot be written (permission denied, disk full)."""

    exit_code = 2


class ModelError(CallsortError):
    """A model folder is missing, corrupt, or does not fit the features."""

    exit_code = 2


class DatasetError(CallsortError):
    """A training folder has no usable labelled audio."""

    exit_code = 2
