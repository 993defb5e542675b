"""Errors that carry a one-line message meant for the user (CLI exit 2, app notice)."""

from __future__ import annotations


class SlmChatError(Exception):
    """Base class: str(exc) is a complete, user-facing, one-line message."""


class ModelLoadError(SlmChatError):
    """A model could not be loaded; the previously loaded model (if any) is untouched."""


class InvalidParameterError(SlmChatError):
    """A user-supplied value is out of range or malformed."""


class DataError(SlmChatError):
    """A training / evaluation file is missing, empty, binary or too short."""


def first_line(exc: BaseException, default: str | None = None) -> str:
    """The first line of ``str(exc)``, for one-line messages.

    When the exception has no text: ``default``, or its type name if none is given.
    """
    lines = str(exc).strip().splitlines()
    if lines:
        return lines[0]
    return type(exc).__name__ if default is None else default
