"""Match a failed process's last log lines against the known error patterns (diagnoses.toml).

The patterns are data: each entry has an id, a regex, what it means and what to do. A log
can match several (an HCCL bind error is followed by a generic traceback); all are reported,
in catalogue order, each with the first line that matched.
"""

from __future__ import annotations

import functools
import importlib.resources
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass

_REQUIRED = ("id", "regex", "meaning", "fix")


@dataclass(frozen=True)
class DiagnosisRule:
    id: str
    pattern: re.Pattern[str]
    meaning: str
    fix: str


@dataclass(frozen=True)
class Diagnosis:
    """One rule that matched, with the log line that matched it."""

    id: str
    meaning: str
    fix: str
    line: str

    def describe(self) -> str:
        return f"{self.id}: {self.meaning}\n  fix: {self.fix}"


def parse_rules(text: str, source: str = "diagnoses.toml") -> list[DiagnosisRule]:
    """Rules from TOML text; ValueError names the entry and the key when one is malformed."""
    data = tomllib.loads(text)
    rules: list[DiagnosisRule] = []
    seen: set[str] = set()
    for i, entry in enumerate(data.get("diagnosis", [])):
        where = f"{source}: diagnosis[{i}]"
        missing = [k for k in _REQUIRED if not isinstance(entry.get(k), str) or not entry.get(k)]
        if missing:
            raise ValueError(f"{where}: missing or empty {', '.join(missing)}")
        unknown = sorted(set(entry) - {*_REQUIRED, "ignore_case"})
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}")
        if entry["id"] in seen:
            raise ValueError(f"{where}: id {entry['id']!r} is used twice")
        seen.add(entry["id"])
        try:
            pattern = re.compile(entry["regex"], re.IGNORECASE if entry.get("ignore_case") else 0)
        except re.error as exc:
            raise ValueError(f"{where} ({entry['id']}): bad regex: {exc}") from None
        rules.append(DiagnosisRule(entry["id"], pattern, entry["meaning"], entry["fix"]))
    return rules


@functools.lru_cache(maxsize=1)
def load_rules() -> tuple[DiagnosisRule, ...]:
    """The packaged catalogue (pdwizard/deploy/diagnoses.toml)."""
    text = importlib.resources.files("pdwizard.deploy").joinpath("diagnoses.toml").read_text(encoding="utf-8")
    return tuple(parse_rules(text))


def diagnose(lines: Iterable[str], rules: Iterable[DiagnosisRule] | None = None) -> list[Diagnosis]:
    """Every rule that matches any of `lines`, in catalogue order, with its first matching line."""
    lines = list(lines)
    found: list[Diagnosis] = []
    for rule in load_rules() if rules is None else rules:
        line = next((ln for ln in lines if rule.pattern.search(ln)), None)
        if line is not None:
            found.append(Diagnosis(rule.id, rule.meaning, rule.fix, line.strip()))
    return found


__all__ = ["Diagnosis", "DiagnosisRule", "diagnose", "load_rules", "parse_rules"]
