"""Version profiles: what one vllm-ascend release accepts, as data.

Each `*.toml` file in this package describes one release: the `vllm serve` flags it takes,
the `--kv-transfer-config` and `--additional-config` keys (nested keys as dotted paths), the
environment every instance gets, the proxy's flags, and the KV connectors it offers (module
path, class, defaults, the keys each connector ignores, the checks it needs). The renderer
(`pdwizard.render`) refuses anything a profile does not list.

The file format is documented in the shipped profiles themselves; this module reads a file
strictly (unknown keys, wrong types and internal inconsistencies raise `ProfileError`) so a
broken profile fails at load time, not half-way through a render.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import tomllib

from pdwizard.errors import InputError, PdwError

FLAG_KINDS = ("switch", "value", "json")
PROXY_FLAG_KINDS = ("value", "values")
NOTE_CONDITIONS = ("prefill_tp_gt_1", "tp_differs", "decode_not_eager")
NON_MLA_TP_RULES = ("equal", "multiple")  # connector non_mla_tp: how P and D TP must relate (non-MLA models)
ENV_TEMPLATES = ("{devices}",)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_KEY_PATH = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*(\.\*)?")
_PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class ProfileError(PdwError):
    """A profile file that cannot be used (a packaging bug, or a hand-edited profile)."""


@dataclass(frozen=True)
class KeySet:
    """The keys one JSON argument accepts, as dotted paths.

    A path whose children are listed is a table. `a.*` means "a is a table with any
    content". `inert` keys are accepted but have no effect (path -> why); a table there
    makes its whole subtree inert. `gates` maps a table to the key that must be true for
    the table's other keys to take effect. `needs` maps a key to the switches that must all be
    true when it is set (true, non-empty, non-zero): vllm-ascend refuses to start otherwise.
    """

    keys: frozenset[str]
    inert: Mapping[str, str] = field(default_factory=dict)
    gates: Mapping[str, str] = field(default_factory=dict)
    needs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    order: tuple[str, ...] = ()               # keys in file order (for listings)

    def accepts(self, path: str) -> bool:
        return path in self.keys or path in self.inert or self.free(_parent(path))

    def free(self, path: str) -> bool:
        """True if `path` (or a table above it) takes any content."""
        while path:
            if f"{path}.*" in self.keys:
                return True
            path = _parent(path)
        return False

    def is_table(self, path: str) -> bool:
        prefix = path + "."
        return any(k.startswith(prefix) for k in (*self.keys, *self.inert))

    def children(self, path: str) -> list[str]:
        """The names accepted directly under `path` ("" for the top level), in file order."""
        prefix = path + "." if path else ""
        out: dict[str, None] = {}
        for k in (*(self.order or sorted(self.keys)), *self.inert):
            if k.startswith(prefix):
                head = k[len(prefix):].split(".", 1)[0]
                if head != "*":
                    out[head] = None
        return list(out)

    def inert_reason(self, path: str) -> str | None:
        """Why `path` (or a table above it) has no effect, if it is inert."""
        while path:
            if path in self.inert:
                return self.inert[path]
            path = _parent(path)
        return None


def _parent(path: str) -> str:
    return path.rsplit(".", 1)[0] if "." in path else ""


@dataclass(frozen=True)
class Connector:
    """One KV connector as a profile offers it."""

    id: str                                   # the session's [stack] connector value
    kv_connector: str                         # the kv_connector JSON value
    module_path: str                          # kv_connector_module_path
    class_name: str
    needs_ranktable: bool                     # DISAGGREGATED_PREFILL_RANK_TABLE_PATH
    json_order: tuple[str, ...]               # --kv-transfer-config keys, in this order
    defaults: Mapping[str, Any]               # values when the session does not set them
    inert: Mapping[str, str]                  # kv-transfer-config keys this connector ignores
    notes: Mapping[str, str]                  # condition -> note
    distinct_engine_ids: bool = False
    kv_port_is_port: bool = False             # kv_port is a real port range (kv_port .. + tp)
    kv_port_base: int | None = None
    kv_port_step: int = 100
    kv_port_reserved_start: int | None = None
    kv_port_reserved_per_npu: int | None = None
    rpc_port_env: str | None = None           # base-port variable for co-located instances
    rpc_port_base: int | None = None
    rpc_port_step: int = 100
    prefill_tp_ge_decode_tp: bool = False
    non_mla_tp: str | None = None             # equal | multiple: P/D TP rule for non-MLA models (None: none)
    extra_config_keys: tuple[str, ...] = ()   # under kv_connector_extra_config
    env: tuple[tuple[str, str], ...] = ()     # name, template
    env_why: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Startup:
    """Start-up refusals that depend on the model (config.json `model_type`, matched as a substring)."""

    acl_graph_refused: tuple[str, ...] = ()   # not eager with torchair off (ACL graph) -> NotImplementedError
    torchair_model_types: tuple[str, ...] = ()  # torchair on, not eager: model_type must contain one ("": any)


@dataclass(frozen=True)
class Profile:
    """One vllm-ascend release."""

    name: str
    vllm_ascend: str
    vllm: str
    description: str
    default_connector: str
    env: tuple[tuple[str, str], ...]
    serve_command: tuple[str, ...]
    serve_flags: Mapping[str, str]            # flag -> switch | value | json
    kv_transfer_config: KeySet
    additional_config: KeySet
    proxy_script: str
    proxy_flags: Mapping[str, str]            # flag -> value | values
    connectors: Mapping[str, Connector]
    source: str = ""
    startup: Startup = field(default_factory=Startup)

    def connector(self, connector_id: str | None) -> Connector:
        """The named connector (None: the default). KeyError if the profile has none such."""
        return self.connectors[connector_id or self.default_connector]

    def kv_keys(self, connector: Connector) -> KeySet:
        """The --kv-transfer-config keys with `connector`'s extra-config keys and inert ones."""
        extra = set()
        for k in connector.extra_config_keys:  # every table on the way down is a key too
            parts = f"kv_connector_extra_config.{k}".split(".")
            extra.update(".".join(parts[: n + 1]) for n in range(1, len(parts)))
        extra = frozenset(extra - self.kv_transfer_config.keys)
        return KeySet(self.kv_transfer_config.keys | extra, inert=connector.inert,
                      order=self.kv_transfer_config.order + tuple(sorted(extra)))


# ---------------------------------------------------------------------------------------
# loading


def _files():
    return resources.files(__name__)


def available_profiles() -> tuple[str, ...]:
    """The names of the shipped profiles, sorted."""
    return tuple(sorted(p.name[: -len(".toml")] for p in _files().iterdir() if p.name.endswith(".toml")))


@cache
def load_profile(name: str) -> Profile:
    """The shipped profile `name`. InputError (key stack.profile, closest name) if unknown."""
    names = available_profiles()
    if name not in names:
        from pdwizard.models import closest

        best = closest(name, names)
        raise InputError(
            f"unknown profile {name!r}" + (f" (did you mean {best!r}?)" if best else ""),
            key="stack.profile", hint=f"use one of: {', '.join(names)}",
        )
    source = f"pdwizard/profiles/{name}.toml"
    profile = parse_profile(_files().joinpath(f"{name}.toml").read_text("utf-8"), source=source)
    if profile.name != name:
        raise ProfileError(f"{source}: profile.name is {profile.name!r}, expected the file name {name!r}")
    return profile


def parse_profile(text: str, source: str = "<profile>") -> Profile:
    """Read a profile from TOML text. ProfileError naming the key on any problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{source}: invalid TOML: {exc}") from None
    r = _Reader(data, source)
    try:
        return r.profile()
    except KeyError as exc:  # a required key is missing
        raise ProfileError(f"{source}: {exc.args[0]}: required key is missing") from None


class _Reader:
    def __init__(self, data: dict[str, Any], source: str) -> None:
        self.data = data
        self.source = source

    def fail(self, key: str, message: str) -> ProfileError:
        return ProfileError(f"{self.source}: {key}: {message}")

    def table(self, parent: Mapping[str, Any], key: str, where: str, allowed: tuple[str, ...],
              required: bool = True) -> dict[str, Any]:
        value = parent.get(key)
        if value is None:
            if required:
                raise KeyError(where)
            return {}
        if not isinstance(value, dict):
            raise self.fail(where, "expected a table")
        extra = [k for k in value if k not in allowed]
        if extra:
            raise self.fail(f"{where}.{extra[0]}", f"unknown key; valid keys: {', '.join(allowed)}")
        return value

    def typed(self, t: Mapping[str, Any], key: str, where: str, typ: type | tuple[type, ...],
              default: Any = ...) -> Any:
        if key not in t:
            if default is ...:
                raise KeyError(f"{where}.{key}")
            return default
        value = t[key]
        if (isinstance(value, bool) and typ is int) or not isinstance(value, typ):
            raise self.fail(f"{where}.{key}", f"expected {getattr(typ, '__name__', typ)}, got {value!r}")
        return value

    def str_map(self, t: Mapping[str, Any], where: str, choices: tuple[str, ...] | None = None) -> dict[str, str]:
        out: dict[str, str] = {}
        for k, v in t.items():
            if not isinstance(v, str) or not v:
                raise self.fail(f"{where}.{k}", "expected a non-empty string")
            if choices is not None and v not in choices:
                raise self.fail(f"{where}.{k}", f"expected one of {', '.join(choices)}, got {v!r}")
            out[k] = v
        return out

    def str_list(self, t: Mapping[str, Any], key: str, where: str, default: Any = ...) -> tuple[str, ...]:
        value = self.typed(t, key, where, list, default)
        if not all(isinstance(v, str) and v for v in value):
            raise self.fail(f"{where}.{key}", "expected a list of non-empty strings")
        if len(set(value)) != len(value):
            raise self.fail(f"{where}.{key}", "lists an entry twice")
        return tuple(value)

    def keyset(self, where: str, with_extras: bool) -> KeySet:
        t = self.table(self.data, where, where,
                       ("keys", "inert", "gates", "needs") if with_extras else ("keys",))
        keys = self.str_list(t, "keys", where)
        inert = self.str_map(t.get("inert", {}), f"{where}.inert")
        gates = self.str_map(t.get("gates", {}), f"{where}.gates")
        needs_t = self.typed(t, "needs", where, dict, {})
        needs = {k: self.str_list(needs_t, k, f"{where}.needs") for k in needs_t}
        for k in (*keys, *inert):
            if not _KEY_PATH.fullmatch(k):
                raise self.fail(where, f"{k!r} is not a dotted key path")
        both = set(keys) & set(inert)
        if both:
            raise self.fail(f"{where}.inert", f"{min(both)!r} is listed as a key and as inert")
        ks = KeySet(frozenset(keys), inert=inert, gates=gates, needs=needs, order=keys)
        for k in (*keys, *inert):  # the table holding a nested key must be listed itself
            parent = k[:-2] if k.endswith(".*") else _parent(k)
            if parent and parent not in ks.keys:
                raise self.fail(where, f"{k!r} is nested under {parent!r}, which is not listed")
        for table, gate in gates.items():
            if not ks.is_table(table) or f"{table}.{gate}" not in ks.keys:
                raise self.fail(f"{where}.gates.{table}", f"{table}.{gate} is not a listed key of a table")
        for key, switches in needs.items():
            for k in (key, *switches):
                if k not in ks.keys:
                    raise self.fail(f"{where}.needs.{key}", f"{k!r} is not a listed key")
            if not switches:
                raise self.fail(f"{where}.needs.{key}", "lists no switch")
        return ks

    def profile(self) -> Profile:
        top = ("profile", "env", "serve", "kv_transfer_config", "additional_config", "proxy", "connectors",
               "startup")
        extra = [k for k in self.data if k not in top]
        if extra:
            raise self.fail(extra[0], f"unknown key; valid keys: {', '.join(top)}")
        p = self.table(self.data, "profile", "profile",
                       ("name", "vllm_ascend", "vllm", "description", "default_connector"))
        name = self.typed(p, "name", "profile", str)
        if not _PROFILE_NAME.fullmatch(name):
            raise self.fail("profile.name", f"{name!r} is not a valid profile name")
        env = self.env_pairs(self.table(self.data, "env", "env", tuple(self.data.get("env", {})), False), "env")
        serve = self.table(self.data, "serve", "serve", ("command", "flags"))
        command = self.str_list(serve, "command", "serve")
        flags = self.str_map(self.table(serve, "flags", "serve.flags", tuple(serve.get("flags", {}))),
                             "serve.flags", FLAG_KINDS)
        for f in flags:
            if not f.startswith("--") or "=" in f or " " in f:
                raise self.fail(f"serve.flags.{f}", "a flag is --name")
        proxy = self.table(self.data, "proxy", "proxy", ("script", "flags"))
        proxy_flags = self.str_map(self.table(proxy, "flags", "proxy.flags", tuple(proxy.get("flags", {}))),
                                   "proxy.flags", PROXY_FLAG_KINDS)
        kv = self.keyset("kv_transfer_config", with_extras=False)
        connectors_t = self.table(self.data, "connectors", "connectors", tuple(self.data.get("connectors", {})))
        connectors = {cid: self.connector(cid, ct, kv) for cid, ct in connectors_t.items()}
        if not connectors:
            raise self.fail("connectors", "a profile offers at least one connector")
        default = self.typed(p, "default_connector", "profile", str)
        if default not in connectors:
            raise self.fail("profile.default_connector", f"no connector {default!r} (have: {', '.join(connectors)})")
        return Profile(
            name=name,
            vllm_ascend=self.typed(p, "vllm_ascend", "profile", str),
            vllm=self.typed(p, "vllm", "profile", str, ""),
            description=self.typed(p, "description", "profile", str, ""),
            default_connector=default,
            env=env,
            serve_command=command,
            serve_flags=flags,
            kv_transfer_config=kv,
            additional_config=self.keyset("additional_config", with_extras=True),
            proxy_script=self.typed(proxy, "script", "proxy", str),
            proxy_flags=proxy_flags,
            connectors=connectors,
            source=self.source,
            startup=self.startup(),
        )

    def startup(self) -> Startup:
        t = self.table(self.data, "startup", "startup", ("acl_graph_refused", "torchair_model_types"), False)
        return Startup(acl_graph_refused=self.str_list(t, "acl_graph_refused", "startup", []),
                       torchair_model_types=self.str_list(t, "torchair_model_types", "startup", []))

    def env_pairs(self, t: Mapping[str, Any], where: str) -> tuple[tuple[str, str], ...]:
        pairs = tuple(self.str_map(t, where).items()) if t else ()
        for k, _ in pairs:
            if not _ENV_NAME.fullmatch(k):
                raise self.fail(f"{where}.{k}", "not an environment variable name")
        return pairs

    def connector(self, cid: str, t: Any, kv: KeySet) -> Connector:
        where = f"connectors.{cid}"
        fields_ = ("kv_connector", "module_path", "class_name", "needs_ranktable", "json_order", "defaults",
                   "inert", "notes", "distinct_engine_ids", "kv_port_is_port", "kv_port_base", "kv_port_step",
                   "kv_port_reserved_start", "kv_port_reserved_per_npu", "rpc_port_env", "rpc_port_base",
                   "rpc_port_step", "prefill_tp_ge_decode_tp", "non_mla_tp", "extra_config_keys", "env",
                   "env_why")
        if not isinstance(t, dict):
            raise self.fail(where, "expected a table")
        extra = [k for k in t if k not in fields_]
        if extra:
            raise self.fail(f"{where}.{extra[0]}", f"unknown key; valid keys: {', '.join(fields_)}")
        opt_int = (lambda k: self.typed(t, k, where, int, None))
        c = Connector(
            id=cid,
            kv_connector=self.typed(t, "kv_connector", where, str),
            module_path=self.typed(t, "module_path", where, str),
            class_name=self.typed(t, "class_name", where, str),
            needs_ranktable=self.typed(t, "needs_ranktable", where, bool),
            json_order=self.str_list(t, "json_order", where),
            defaults=dict(self.typed(t, "defaults", where, dict, {})),
            inert=self.str_map(self.typed(t, "inert", where, dict, {}), f"{where}.inert"),
            notes=self.str_map(self.typed(t, "notes", where, dict, {}), f"{where}.notes"),
            distinct_engine_ids=self.typed(t, "distinct_engine_ids", where, bool, False),
            kv_port_is_port=self.typed(t, "kv_port_is_port", where, bool, False),
            kv_port_base=opt_int("kv_port_base"),
            kv_port_step=self.typed(t, "kv_port_step", where, int, 100),
            kv_port_reserved_start=opt_int("kv_port_reserved_start"),
            kv_port_reserved_per_npu=opt_int("kv_port_reserved_per_npu"),
            rpc_port_env=self.typed(t, "rpc_port_env", where, str, None),
            rpc_port_base=opt_int("rpc_port_base"),
            rpc_port_step=self.typed(t, "rpc_port_step", where, int, 100),
            prefill_tp_ge_decode_tp=self.typed(t, "prefill_tp_ge_decode_tp", where, bool, False),
            non_mla_tp=self.typed(t, "non_mla_tp", where, str, None),
            extra_config_keys=self.str_list(t, "extra_config_keys", where, []),
            env=self.env_pairs(self.typed(t, "env", where, dict, {}), f"{where}.env"),
            env_why=self.str_map(self.typed(t, "env_why", where, dict, {}), f"{where}.env_why"),
        )
        # internal consistency: everything the connector writes must be a key the profile accepts
        for k in (*c.json_order, *c.defaults, *c.inert):
            if k not in kv.keys:
                raise self.fail(where, f"{k!r} is not a [kv_transfer_config] key of this profile")
        for k in c.extra_config_keys:
            if "kv_connector_extra_config" not in kv.keys or not _KEY_PATH.fullmatch(k) or k.endswith(".*"):
                raise self.fail(f"{where}.extra_config_keys", f"{k!r} needs kv_connector_extra_config")
        written = {"kv_connector", "kv_role", "kv_port", "engine_id", "kv_connector_module_path", *c.defaults}
        if c.extra_config_keys:
            written.add("kv_connector_extra_config")
        missing = [k for k in ("kv_connector", "kv_role") if k not in c.json_order]
        if missing:
            raise self.fail(f"{where}.json_order", f"must list {missing[0]!r}")
        unordered = sorted(k for k in written if k not in c.json_order
                           and k not in ("kv_port", "engine_id", "kv_connector_module_path"))
        if unordered:
            raise self.fail(f"{where}.json_order", f"does not list {unordered[0]!r}")
        if c.non_mla_tp is not None and c.non_mla_tp not in NON_MLA_TP_RULES:
            raise self.fail(f"{where}.non_mla_tp", f"expected one of {', '.join(NON_MLA_TP_RULES)}, got {c.non_mla_tp!r}")
        for cond in c.notes:
            if cond not in NOTE_CONDITIONS:
                raise self.fail(f"{where}.notes.{cond}", f"unknown condition; valid: {', '.join(NOTE_CONDITIONS)}")
        for name, tmpl in c.env:
            if tmpl not in ENV_TEMPLATES:
                raise self.fail(f"{where}.env.{name}", f"value must be one of {', '.join(ENV_TEMPLATES)}")
            if name not in c.env_why:
                raise self.fail(f"{where}.env_why", f"missing the reason for {name}")
        if c.kv_port_is_port and c.kv_port_base is None and "kv_port" not in c.defaults:
            raise self.fail(where, "kv_port_is_port needs kv_port_base or a kv_port default")
        if c.rpc_port_env is not None and (c.rpc_port_base is None or not _ENV_NAME.fullmatch(c.rpc_port_env)):
            raise self.fail(where, "rpc_port_env needs a variable name and rpc_port_base")
        eid = c.defaults.get("engine_id")
        if eid is not None and not isinstance(eid, str):
            raise self.fail(f"{where}.defaults.engine_id", "engine_id must be a string (vLLM rejects a JSON number)")
        return c


__all__ = [
    "Connector",
    "KeySet",
    "Profile",
    "ProfileError",
    "Startup",
    "available_profiles",
    "load_profile",
    "parse_profile",
]
