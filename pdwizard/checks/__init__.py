"""Rules for verdicts, kept as data (`rules.toml`) so they can be read and extended
without touching the code that applies them."""

from __future__ import annotations

import tomllib
from functools import lru_cache
from importlib import resources

from pdwizard.report import CheckResult, Status


@lru_cache(maxsize=1)
def rules() -> dict[str, dict[str, str]]:
    """The rule table, read once from the package."""
    text = resources.files(__package__).joinpath("rules.toml").read_text("utf-8")
    return tomllib.loads(text)


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return "?"


def verdict(rule: str, status: Status, *, check: str, node: str, device: int | None = None,
            target: str | None = None, value: str | None = None, expected: str | None = None,
            raw: str | None = None, **more: object) -> CheckResult:
    """Build a CheckResult whose message and hint come from the rule table. `more`: extra
    fields the rule's text may use (only node, device, target, value and expected are kept)."""
    entry = rules()[rule]
    fields = _Blank(more, node=node, device=device, target=target, value=value, expected=expected)
    return CheckResult(
        check=check, node=node, device=device, target=target, status=status, value=value,
        message=entry["message"].format_map(fields),
        hint=entry["hint"].format_map(fields) if status is not Status.OK else None,
        raw=raw,
    )


def ok(check: str, node: str, *, device: int | None = None, target: str | None = None,
       value: str | None = None, raw: str | None = None) -> CheckResult:
    """A passing verdict: no rule, no hint, the value and raw text kept."""
    return CheckResult(check=check, node=node, device=device, target=target,
                       status=Status.OK, value=value, raw=raw)
