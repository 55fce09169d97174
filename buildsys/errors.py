"""Error types.  Only cli.py turns them into exit codes.

UserError and its subclasses are mistakes in input (recipes, configs, command
line, sources) and print as one line: ``path:line:col: message (hint)``, exit 2.
BuildError is a build step that failed, exit 1.  Anything else is our bug and
prints a traceback, exit 3.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Where:
    """A position in an input file; line and col are 1-based (0 = unknown)."""

    path: str
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        if self.line and self.col:
            return f"{self.path}:{self.line}:{self.col}"
        if self.line:
            return f"{self.path}:{self.line}"
        return self.path


class BuildsysError(Exception):
    exit_code = 3


class UserError(BuildsysError):
    """Bad input.  ``where`` is the position the message is about."""

    exit_code = 2

    def __init__(self, message: str, where: Where | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.where = where
        self.hint = hint

    def __str__(self) -> str:
        text = self.message
        if self.hint:
            text += f" ({self.hint})"
        if self.where is not None:
            text = f"{self.where}: {text}"
        return text


class FetchError(UserError):
    """A source could not be obtained."""


class ChecksumError(FetchError):
    """A downloaded file does not have the sha256 the recipe names."""


class NetworkAccessError(FetchError):
    """Network access was needed while offline."""


class UnpackError(UserError):
    """An archive is malformed or hostile, or a patch does not apply."""


class BuildError(BuildsysError):
    """A build step failed; the message carries the log tail and replay command."""

    exit_code = 1
