"""Every error type a user can meet, at the bottom of the house: each message is one line naming the
problem and the fix, and the CLI and the Snakefile print it without a traceback.

Torch-free and import-free, so any module may raise any of them.
"""
from __future__ import annotations


class VitnasError(Exception):
    """Base of the errors shown to users as one line (`vitnas: <message>`)."""


class ConfigError(VitnasError, ValueError):
    """A configuration problem; the message is one line naming the key and what is allowed."""


class SpaceError(VitnasError, ValueError):
    """A search space or budget that cannot work; the message names the cause and the fix."""


class DataError(VitnasError, RuntimeError):
    """A data set that is missing or malformed; the message says how to get or fix it."""


class CorruptImage(DataError):
    """An image file that cannot be decoded."""


class TrainingError(VitnasError, RuntimeError):
    """Training cannot go on (non-finite loss, interrupted); the message says where and what next."""


class CheckpointError(TrainingError):
    """A checkpoint that cannot be loaded safely (corrupt, or holding code rather than data)."""


class ResultError(VitnasError, ValueError):
    """A results file that lacks a key or column its reader needs; the message names the file, what
    is missing and the rule that writes it."""
