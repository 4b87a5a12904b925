"""Error types. Every failure the codec reports to users is one of these, so the CLI can
print one clear line and exit with the matching code instead of a traceback. Arguments of the
wrong type or value given to the Python API raise TypeError or ValueError, as Python's own
functions do, each naming the argument; the CLI reports those as usage errors (exit 2)."""

from __future__ import annotations

import os
import re


EXIT_PARTIAL = 10  # several inputs (a folder, info's or metrics' files): some failed, the rest were done


class EdgecodecError(Exception):
    """Base class of every error edgecodec reports to users."""

    exit_code = 1


class UsageError(EdgecodecError, ValueError):
    """The command was given arguments that cannot work together. Also a ValueError: the API's
    bad argument values (a region outside the image, a mask of another size) raise it, and
    Python code catches those as ValueError."""

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

    @classmethod
    def making(cls, path: os.PathLike | str, exc: OSError, what: str = "") -> "OutputWriteError":
        """The error for an output (folder) ``path`` that could not be made, naming the output
        rather than whichever path the OS error was about: ``cannot write [WHAT ]PATH: why``."""
        if isinstance(exc, (FileExistsError, NotADirectoryError)):
            here = isinstance(exc, FileExistsError) and exc.filename is not None \
                and os.path.abspath(exc.filename) == os.path.abspath(path)
            why = "a file is in its place" if here else "a file is on its path"
        else:
            why = exc.strerror or str(exc)
        return cls(f"cannot write {what + ' ' if what else ''}{path}: {why}")


# C0 and C1 controls, DEL, and the line and paragraph separators that str.splitlines() breaks on
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(text: str) -> str:
    """``text`` with control characters escaped as Python writes them (\\n, \\x1b): a file name
    holding a newline split an error over two lines, against the one-line contract (README,
    Errors), and an escape sequence in a name (ESC, or the C1 CSI) could rewrite the terminal."""
    return _CONTROL.sub(lambda m: repr(m[0])[1:-1] if m[0].isascii() else f"\\u{ord(m[0]):04x}", text)
