"""Load and save session files (TOML).

* `load_session(path)` reads a file and returns a `Session`, or raises `SessionError`
  (an `InputError`, exit code 2) that lists every problem, one per line, each as
  "<file>: <dotted key>: <what is wrong>" with a "fix:" line.
* Secrets are refused: a key anywhere whose name looks like a password, passphrase,
  token, API key or secret stops the load, and its value is never echoed.
* `save_session(session, path)` writes only the keys that were set (or changed from
  their default since), in a fixed readable order, atomically, mode 0600. It
  re-validates what it is about to write, so it never writes a file `--replay` would
  refuse.
"""

from __future__ import annotations

import os
import re
import tomllib
import types
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import tomli_w
from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticUndefined, to_jsonable_python

from pdwizard.errors import InputError, PdwError
from pdwizard.fsutil import atomic_write_text
from pdwizard.models import SUPPORTED_SCHEMA_VERSIONS, Session, closest, is_secret_key

SESSION_FILE_MODE = 0o600
_HEADER = "# pdwizard session (schema_version 1), written by pdwizard: comments are not kept.\n\n"
_SECRET_HINT = (
    "remove it: pdwizard never stores secrets. Log in with an SSH agent (ssh-add) or a key "
    'file: identity_file = "~/.ssh/id_ed25519" in [ssh] or the node'
)


class SessionError(InputError):
    """One or more problems in a session; `problems` has one InputError per key.

    str() is every problem, one per line (each with its own fix: line). `source`
    and `key` are those of the first problem.
    """

    def __init__(self, problems: Iterable[InputError]) -> None:
        self.problems: list[InputError] = list(problems)
        if not self.problems:
            raise ValueError("SessionError needs at least one problem")
        super().__init__("\n".join(str(p) for p in self.problems))
        self.source = self.problems[0].source
        self.key = self.problems[0].key

    @property
    def keys(self) -> list[str | None]:
        return [p.key for p in self.problems]


# ---------------------------------------------------------------------------------------
# loading


def load_session(path: str | os.PathLike[str]) -> Session:
    """Read, parse and validate a session file. Raises SessionError (exit code 2)."""
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise SessionError([InputError(
            "no such file", source=source, hint="check the path; `pdwizard` (the TUI) can write one for you"
        )]) from None
    except OSError as exc:
        raise SessionError([InputError(
            f"cannot read the session file: {exc.strerror or exc}", source=source,
            hint="check the path and its permissions",
        )]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SessionError([InputError(
            "the file is not UTF-8 text", source=source, key=f"line {line}",
            hint="save it as UTF-8 (TOML files must be UTF-8)",
        )]) from None
    return parse_session(text, source=source)


_TOML_POS = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)\s*$")
_KEY_PATH = r"""((?:"[^"]*"|'[^']*'|[A-Za-z0-9_-]+)(?:\s*\.\s*(?:"[^"]*"|'[^']*'|[A-Za-z0-9_-]+))*)"""
_LINE_KEY = re.compile(rf"^\s*(?:{_KEY_PATH}\s*=|\[\[?\s*{_KEY_PATH}\s*\]\]?)")
_KEY_PART = re.compile(r"""\s*("[^"]*"|'[^']*'|[A-Za-z0-9_-]+)\s*(?:\.|$)""")


def parse_session(text: str, source: str = "<session>") -> Session:
    """Parse session TOML text (as load_session does, without the file)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SessionError(_toml_problems(text, str(exc), source)) from None
    return validate_session(data, source=source)


def _toml_problems(text: str, message: str, source: str) -> list[InputError]:
    m = _TOML_POS.search(message)
    core = message[: m.start()] if m else message
    if m and m.group(1):
        where = f"line {m.group(1)}, column {m.group(2)}"
    elif m:
        where = "end of file"
    else:
        where = None
    problems = [InputError(
        f"invalid TOML: {core}", source=source, key=where,
        hint='check the syntax there: strings in double quotes ("..."), one table [name], '
        "arrays of tables [[name]], key = value",
    )]
    # The file cannot be parsed, but a secret in it must still be called out (by line,
    # never by value): the operator may be about to fix the syntax and keep the secret.
    for lineno, line in enumerate(text.splitlines(), 1):
        km = _LINE_KEY.match(line)
        if not km:
            continue
        path = km.group(1) or km.group(2)
        for part in (kp.group(1).strip("\"'") for kp in _KEY_PART.finditer(path)):
            if is_secret_key(part):
                problems.append(_secret_problem(part, source, f"line {lineno}"))
                break
    return problems


def _secret_problem(name: str, source: str | None, key: str) -> InputError:
    return InputError(
        f"key {name!r} would hold a secret (password, passphrase, token, API key); "
        "session files never store secrets",
        source=source, key=key, hint=_SECRET_HINT,
    )


def find_secret_keys(data: Any, prefix: str = "") -> list[str]:
    """Dotted paths of every secret-looking key in parsed TOML data, at any depth."""
    found: list[str] = []
    if isinstance(data, Mapping):
        for k, v in data.items():
            path = f"{prefix}.{k}" if prefix else str(k)
            if is_secret_key(str(k)):
                found.append(path)
            else:
                found.extend(find_secret_keys(v, path))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            found.extend(find_secret_keys(v, f"{prefix}[{i}]"))
    return found


def _without_secrets(data: Any) -> Any:
    if isinstance(data, Mapping):
        return {k: _without_secrets(v) for k, v in data.items() if not is_secret_key(str(k))}
    if isinstance(data, list):
        return [_without_secrets(v) for v in data]
    return data


def validate_session(data: Mapping[str, Any], source: str | None = None) -> Session:
    """Validate parsed TOML (or a dict built by the TUI) into a Session.

    Raises SessionError listing every problem: secrets first, then field errors and the
    cross-field rules. An unsupported schema_version is reported alone, because the rest
    of such a file follows another format.
    """
    problems = [_secret_problem(p.rsplit(".", 1)[-1], source, p) for p in find_secret_keys(data)]
    version = data.get("schema_version")
    if isinstance(version, int) and not isinstance(version, bool) and version not in SUPPORTED_SCHEMA_VERSIONS:
        supported = ", ".join(map(str, SUPPORTED_SCHEMA_VERSIONS))
        raise SessionError([*problems, InputError(
            f"schema_version {version} is not supported; this pdwizard reads version(s) {supported}",
            source=source, key="schema_version",
            hint=f"use the pdwizard release that wrote this file, or rewrite it for version {supported}",
        )])

    clean = _without_secrets(data) if problems else data
    try:
        session = Session.model_validate(clean)
    except ValidationError as exc:
        for err in exc.errors():
            problems.extend(_convert_error(err, source))
    if problems:
        raise SessionError(problems)
    return session


# ---------------------------------------------------------------------------------------
# pydantic errors -> InputError


def _key(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _unwrap_optional(tp: Any) -> Any:
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _type_at(loc: Iterable[Any]) -> Any:
    """The annotation at a pydantic location, walking from Session; None if unknown."""
    tp: Any = Session
    for part in loc:
        tp = _unwrap_optional(tp)
        if isinstance(part, int):
            if get_origin(tp) is list and get_args(tp):
                tp = get_args(tp)[0]
                continue
            return None
        if isinstance(tp, type) and issubclass(tp, BaseModel) and part in tp.model_fields:
            tp = tp.model_fields[part].annotation
            continue
        return None
    return _unwrap_optional(tp)


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _where(loc: tuple[Any, ...]) -> str:
    """How an operator finds the table at `loc` in the file."""
    if not loc:
        return "the top level"
    if isinstance(loc[-1], int):
        return f"the [[{_key(loc[:-1])}]] entry {_key(loc)}"
    return f"[{_key(loc)}]"


def _example_line(model: type[BaseModel], name: str) -> str:
    field = model.model_fields[name]
    examples = field.examples or []
    return f"{name} = {_literal(examples[0])}" if examples else f"{name} = ..."


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"the string {shown!r}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, Mapping):
        return "a table"
    return f"a {type(value).__name__}"


_EXPECTED = {
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "string_type": "a string in double quotes",
    "bool_type": "true or false",
}


def _convert_error(err: Mapping[str, Any], source: str | None) -> list[InputError]:
    typ = err["type"]
    loc = tuple(err["loc"])
    ctx = err.get("ctx") or {}
    value = err.get("input")

    if typ == "pdw_rules":
        return [InputError(m, source=source, key=k, hint=h) for k, m, h in ctx["problems"]]
    if typ == "default_factory_not_called":
        return []  # a derived default (tensor_parallel_size) skipped because another key is wrong
    if typ == "pdw":
        if ctx.get("field"):
            loc = (*loc, ctx["field"])
        return [InputError(err["msg"], source=source, key=_key(loc), hint=ctx.get("hint"))]

    key = _key(loc)
    parent = _type_at(loc[:-1]) if loc else None

    if typ == "extra_forbidden" and _is_model(parent):
        valid = list(parent.model_fields)
        name = str(loc[-1])
        best = closest(name, valid)
        suggestion = f" (did you mean {best!r}?)" if best else ""
        return [InputError(
            f"unknown key {name!r}{suggestion}", source=source, key=key,
            hint=f"valid keys {'at' if len(loc) == 1 else 'in'} {_where(loc[:-1])}: {', '.join(valid)}",
        )]

    if typ == "missing" and _is_model(parent):
        name = str(loc[-1])
        tp = _type_at(loc)
        item = get_args(tp)[0] if get_origin(tp) is list and get_args(tp) else None
        if _is_model(tp):
            required = [n for n, f in tp.model_fields.items() if f.is_required()]
            body = ", ".join(_example_line(tp, n) for n in required)
            return [InputError(
                f"required table [{key}] is missing", source=source, key=key,
                hint=f"add a [{key}] table" + (f" with {body}" if body else ""),
            )]
        if _is_model(item):
            required = [n for n, f in item.model_fields.items() if f.is_required()]
            body = ", ".join(_example_line(item, n) for n in required)
            return [InputError(
                f"required [[{key}]] entries are missing", source=source, key=key,
                hint=f"add one [[{key}]] table per entry with {body}",
            )]
        return [InputError(
            "required key is missing", source=source, key=key,
            hint=f"add {_example_line(parent, name)} to {_where(loc[:-1])}",
        )]

    if typ == "literal_error":
        choices = [str(c) for c in get_args(_type_at(loc))] or []
        expected = ", ".join(repr(c) for c in choices) or ctx.get("expected", "")
        suggestion = ""
        if isinstance(value, str) and choices:
            best = closest(value, choices)
            suggestion = f" (did you mean {best!r}?)" if best else ""
        return [InputError(
            f"expected one of {expected}; got {_describe(value)}{suggestion}", source=source, key=key,
            hint=f"use one of: {', '.join(choices)}" if choices else None,
        )]

    tp = _type_at(loc)
    if typ == "list_type":
        item = get_args(tp)[0] if get_origin(tp) is list and get_args(tp) else None
        if _is_model(item):
            return [InputError(
                f"expected an array of tables [[{key}]], got {_describe(value)}", source=source, key=key,
                hint=f"write [[{key}]] (double brackets) once per entry",
            )]
        example = _example_line(parent, str(loc[-1])) if _is_model(parent) else None
        return [InputError(
            f"expected an array, got {_describe(value)}", source=source, key=key,
            hint=f"write it in brackets, e.g. {example}" if example else "write it in brackets: [a, b]",
        )]
    if typ in ("model_type", "model_attributes_type", "dict_type"):
        if loc and isinstance(loc[-1], int):
            hint = f"write each entry as a [[{_key(loc[:-1])}]] table followed by key = value lines"
        elif isinstance(value, list):
            hint = f"write [{key}] (single brackets): it is one table, not an array of tables"
        else:
            hint = f"write it as a table: [{key}] followed by key = value lines"
        return [InputError(f"expected a table, got {_describe(value)}", source=source, key=key, hint=hint)]
    if typ in _EXPECTED:
        hint = None
        if typ in ("int_type", "int_from_float") and isinstance(value, float):
            hint = "write it without a decimal point"
        elif typ in ("int_type", "float_type") and isinstance(value, str):
            hint = "write the number without quotes"
        elif typ == "string_type":
            hint = "put the value in double quotes"
        elif typ == "bool_type":
            hint = "write true or false, without quotes"
        return [InputError(f"expected {_EXPECTED[typ]}, got {_describe(value)}", source=source, key=key, hint=hint)]

    return [InputError(err["msg"], source=source, key=key or None)]


# ---------------------------------------------------------------------------------------
# saving


def _explicit(model: BaseModel) -> dict[str, Any]:
    """The keys to write: set (from the file or by assignment) or changed from the default.

    Plain `exclude_unset` would lose `session.ssh.user = "x"` when [ssh] was not in the
    file, or `session.verify.append(...)`: those never mark the parent field as set.
    None is never written (TOML has no null; absent means the default).
    """
    out: dict[str, Any] = {}
    fields_set = model.model_fields_set
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if value is None:
            continue
        if name not in fields_set:
            # validated_data: a default derived from other fields (tensor_parallel_size)
            default = field.get_default(call_default_factory=True, validated_data=dict(model.__dict__))
            if default is not PydanticUndefined and value == default:
                continue
        if isinstance(value, BaseModel):
            out[name] = _explicit(value)
        elif isinstance(value, list) and value and all(isinstance(v, BaseModel) for v in value):
            out[name] = [_explicit(v) for v in value]
        else:
            out[name] = to_jsonable_python(value)
    return out


def session_to_toml(session: Session) -> str:
    """The session as TOML text, exactly as save_session writes it (for previews).

    Layout: schema_version and name first, then [ssh], [[nodes]], [[instances]], [model],
    [proxy], [stack], [checks], [[verify]] (Session field order), one key per line,
    short arrays inline (`devices = [0, 1]`). Values are formatted by tomli-w.
    """
    return _HEADER + _render(_explicit(session))


def _literal(value: Any) -> str:
    if isinstance(value, Mapping):
        # an inline table (additional_config): one line, nested tables inline too
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{_bare_or_quoted(k)} = {_literal(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list) and any(isinstance(v, Mapping) for v in value):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    if isinstance(value, list) and not any(isinstance(v, list) for v in value):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    return tomli_w.dumps({"x": value}).split(" = ", 1)[1].rstrip("\n")


def _lines(table: Mapping[str, Any]) -> str:
    return "".join(f"{_bare_or_quoted(k)} = {_literal(v)}\n" for k, v in table.items())


def _bare_or_quoted(key: str) -> str:
    return tomli_w.dumps({key: 0}).split(" = ", 1)[0]


def _render(data: Mapping[str, Any]) -> str:
    head: dict[str, Any] = {}
    sections: list[str] = []
    for key in Session.model_fields:
        if key not in data:
            continue
        value = data[key]
        if isinstance(value, Mapping):
            sections.append(f"[{key}]\n" + _lines(value))
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            sections.extend(f"[[{key}]]\n" + _lines(v) for v in value)
        else:
            head[key] = value
    return "\n".join(filter(None, [_lines(head), *sections]))


def save_session(session: Session, path: str | os.PathLike[str]) -> Path:
    """Write the session atomically (mode 0600); return the path written.

    Raises SessionError (and leaves any existing file untouched) if what would be
    written does not load back, and PdwError if the file cannot be written.
    """
    source = str(path)
    text = session_to_toml(session)
    parse_session(text, source=source)  # never write a file --replay would refuse
    try:
        return atomic_write_text(path, text, mode=SESSION_FILE_MODE)
    except OSError as exc:
        raise PdwError(
            f"{source}: cannot write the session file: {exc.strerror or exc}",
            hint="check that the directory exists and is writable",
        ) from exc


# ---------------------------------------------------------------------------------------
# after discovery


def check_devices_exist(
    session: Session, npus_by_node: Mapping[str, set[int]], *, source: str | None = None
) -> list[InputError]:
    """Instances asking for NPU ids a node does not have (nodes not in the map are skipped)."""
    problems: list[InputError] = []
    for i, inst in enumerate(session.instances):
        have = npus_by_node.get(inst.node)
        if have is None:
            continue
        missing = [d for d in inst.devices if d not in have]
        if not missing:
            continue
        has = ", ".join(map(str, sorted(have))) if have else "none"
        problems.append(InputError(
            f"node {inst.node} has no NPU {', '.join(map(str, missing))} (it has: {has})",
            source=source, key=f"instances[{i}].devices",
            hint=f"pick device ids from those npu-smi lists on {inst.node}"
            if have else f"check `npu-smi info` on {inst.node}: the driver sees no NPU",
        ))
    return problems


__all__ = [
    "SESSION_FILE_MODE",
    "SessionError",
    "check_devices_exist",
    "find_secret_keys",
    "load_session",
    "parse_session",
    "save_session",
    "session_to_toml",
    "validate_session",
]
