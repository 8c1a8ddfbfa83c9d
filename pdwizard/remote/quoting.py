"""Turn an argument vector into one POSIX shell command line.

SSH has no argv: an exec request carries a single string that the node's login
shell parses. Quoting every element with :func:`shlex.quote` is what keeps a
device name, a path with spaces or a hostile ``$(...)`` an *argument* and never
code. The caller always thinks in argv; only this module builds command strings.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence


def join_argv(argv: Sequence[str]) -> str:
    """Quote each element and join with spaces, so the remote shell sees exactly ``argv``.

    Rejects (ValueError) what cannot be passed faithfully: a bare string instead
    of a list (it would be split into characters), an empty argv, non-str
    elements, NUL bytes (C argv cannot hold them) and text that is not valid
    UTF-8 (lone surrogates: the SSH channel carries bytes).
    """
    if isinstance(argv, (str, bytes, bytearray)):
        raise ValueError(
            f"argv must be a list of arguments, not a single {type(argv).__name__}: {argv!r}"
        )
    args = list(argv)
    if not args:
        raise ValueError("argv is empty: there is no command to run")
    for index, arg in enumerate(args):
        _check_arg(index, arg)
    return " ".join(shlex.quote(arg) for arg in args)


def _check_arg(index: int, arg: object) -> None:
    """Explain exactly which element is unusable and why."""
    if not isinstance(arg, str):
        raise ValueError(
            f"argv[{index}] is {type(arg).__name__} ({arg!r}); every argument must be str "
            "(convert numbers and paths with str() first)"
        )
    if "\0" in arg:
        raise ValueError(f"argv[{index}] contains a NUL byte, which no command argument can hold: {arg!r}")
    try:
        arg.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"argv[{index}] is not valid UTF-8 text ({exc.reason}): {arg!r}") from None
