"""Error types. Every failure the codec reports to users is one of these, so the CLI can
print one clear line and exit with the matching code instead of a traceback."""

from __future__ import annotations


class EdgecodecError(Exception):
    """Base class of every error edgecodec reports to users."""

    exit_code = 1


class UsageError(EdgecodecError):
    """The command was given arguments that cannot work together."""

    exit_code = 2


class InputImageError(EdgecodecError):
    """The input image cannot be read or is not supported (e.g. an animated GIF, or alpha with --alpha refuse)."""

    exit_code = 3


class FormatError(EdgecodecError):
    """An .edc stream is malformed: wrong magic, truncated, corrupted, or inconsistent."""

    exit_code = 4


class VersionError(FormatError):
    """An .edc stream was written by a newer format version than this decoder reads."""

    exit_code = 5


class WeightsMismatchError(EdgecodecError):
    """A stream was produced by other weights than the ones available for its model."""

    exit_code = 6


class ImageTooLargeError(EdgecodecError):
    """An image (or a header) declares more pixels than the configured limit."""

    exit_code = 7


class OutputExistsError(EdgecodecError):
    """The output file exists and --force was not given."""

    exit_code = 8


class UnknownModelError(EdgecodecError):
    """No model of that name is registered or shipped."""

    exit_code = 9


class OutputWriteError(EdgecodecError):
    """The output cannot be written (no permission, read-only or full file system, ...)."""

    exit_code = 11
