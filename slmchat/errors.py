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
