"""join_argv: every argument reaches the remote program unchanged and never runs as code.

The property is checked by executing the joined string in a real ``sh -c``: the
only trustworthy oracle for shell quoting is a shell.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pdwizard.remote import join_argv

HOSTILE = [
    "$(touch {canary})", "`touch {canary}`", "; touch {canary}", "&& touch {canary}", "| touch {canary}",
    "'", '"', "\\", "\\'", "'\"'\"'", "$HOME", "${HOME}", "$((1+1))", "*", "?", "[a-z]*", "~", "~root",
    "{a,b}", "!", "!!", "#", "-n", "-e", "--", "%s", "%b\\n", "\n", "\r\n", "\t", " ", "", "a b",
    "é", "日本語", "😀", "\u202e", "\x1b[31m", "\x7f", "=", "a=b", ">", "<", "2>&1", "&", "(", ")",
]

# Arbitrary text (no NUL, no lone surrogates: neither can be a command argument) mixed with
# fragments chosen to break naive quoting.
_text = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), max_size=40)
_hostile = st.sampled_from(HOSTILE)
ARG = st.one_of(_text, _hostile, st.lists(st.one_of(_text, _hostile), max_size=4).map("".join))
ARGV = st.lists(ARG, min_size=1, max_size=8)


def printf_command(args: list[str]) -> str:
    """A shell line that prints each argument NUL-terminated: its output *is* the argv it saw."""
    return "printf '%s\\0' " + join_argv(args)


def expected_output(args: list[str]) -> bytes:
    return b"".join(arg.encode("utf-8") + b"\0" for arg in args)


def with_canary(args: list[str], canary: Path) -> list[str]:
    return [arg.replace("{canary}", str(canary)) for arg in args]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(args=ARGV)
def test_sh_sees_exactly_the_arguments(args: list[str], tmp_path: Path) -> None:
    canary = tmp_path / "pwned"
    args = with_canary(args, canary)
    out = subprocess.run(["sh", "-c", printf_command(args)], capture_output=True, check=True, cwd=tmp_path)
    assert out.stdout == expected_output(args)
    assert not canary.exists(), "an argument was executed as code"


def test_every_hostile_fragment_alone(tmp_path: Path) -> None:
    canary = tmp_path / "pwned"
    args = with_canary(HOSTILE, canary)
    out = subprocess.run(["sh", "-c", printf_command(args)], capture_output=True, check=True, cwd=tmp_path)
    assert out.stdout == expected_output(args)
    assert not canary.exists()


def test_plain_words_stay_readable() -> None:
    """Command logs show what ran: simple arguments must not be needlessly quoted."""
    assert join_argv(["hccn_tool", "-i", "0", "-link", "-g"]) == "hccn_tool -i 0 -link -g"
    assert join_argv(["echo", "a b"]) == "echo 'a b'"


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["ls", 3], "argv[1] is int"),
        (["ls", None], "argv[1] is NoneType"),
        (["ls", b"x"], "argv[1] is bytes"),
        ([Path("/bin/ls")], "argv[0] is PosixPath"),
        (["echo", "a\0b"], "argv[1] contains a NUL byte"),
        (["echo", "\ud800"], "argv[1] is not valid UTF-8"),
        ("ls -l", "not a single str"),
        (b"ls", "not a single bytes"),
        ([], "argv is empty"),
    ],
)
def test_rejects_what_cannot_be_passed(argv: object, words: str) -> None:
    with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]")):
        join_argv(argv)  # type: ignore[arg-type]
