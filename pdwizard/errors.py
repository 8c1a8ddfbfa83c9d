"""Errors that reach the operator.

Every error names *where* the problem is (file and key, or node), *what* was
expected, and *how to fix it*, because an operator reading it at 2 a.m. must not
have to open the source to act on it. The CLI maps them to exit codes.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1  # a check, launch or verification failed
EXIT_INPUT = 2  # the input is invalid: arguments, session file, sim spec


class PdwError(Exception):
    """Base of every error pdwizard reports to the operator."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  fix: {self.hint}" if self.hint else self.message


class InputError(PdwError):
    """Invalid input: the file, the key, what was expected and how to fix it."""

    exit_code = EXIT_INPUT

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        key: str | None = None,
        hint: str | None = None,
    ) -> None:
        where = ": ".join(part for part in (source, key) if part)
        super().__init__(f"{where}: {message}" if where else message, hint=hint)
        self.source = source
        self.key = key


class RemoteError(PdwError):
    """A node could not be reached or a command on it could not run.

    ``kind`` is one of: unreachable, refused, auth, host_key_unknown,
    host_key_changed, timeout, disconnected, jump. ``fingerprint`` and
    ``known_hosts_line`` are set for host-key errors so a UI can ask the operator.
    """

    def __init__(
        self,
        node: str,
        kind: str,
        message: str,
        *,
        hint: str | None = None,
        fingerprint: str | None = None,
        known_hosts_line: str | None = None,
    ) -> None:
        super().__init__(f"node {node}: {message}", hint=hint)
        self.node = node
        self.kind = kind
        self.fingerprint = fingerprint
        self.known_hosts_line = known_hosts_line


class ParseError(PdwError):
    """Tool output that could not be read. Carries the raw text: never a pass."""

    def __init__(self, message: str, raw: str) -> None:
        super().__init__(message)
        self.raw = raw
