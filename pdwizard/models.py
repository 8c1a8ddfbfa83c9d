"""The session: what the cluster is and what to deploy on it.

A session file (TOML) is read by `pdwizard --replay FILE` and written by the TUI; its
key names are a contract that operators' scripts rely on. Loading, saving and error
rendering live in `pdwizard.session`; this module holds only the pydantic models and
the per-field / cross-field rules.

Every model forbids unknown keys, validates strictly (TOML is typed: `port = "22"` is an
error, not a conversion) and hides input values from pydantic's own error text. No
model has a field that could hold a password, passphrase, token or key material:
SSH authenticates with an agent or a key *file*.

Field errors raised here are `PydanticCustomError("pdw", message, {"hint": ...})`;
the cross-field rules on `Session` raise one `PydanticCustomError("pdw_rules", ...)`
whose context carries every problem as `(key, message, hint)` so the loader can report
all of them, each under its own dotted key.
"""

from __future__ import annotations

import copy
import difflib
import ipaddress
import math
import os
import re
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any, Literal, NamedTuple, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS: tuple[int, ...] = (1,)

Role = Literal["prefill", "decode"]
ProxyKind = Literal["builtin", "upstream"]
PingMode = Literal["auto", "full", "off"]
CheckId = Literal[
    "lldp", "link", "net_health", "netdetect", "gateway", "ip", "hccn_conf", "tls", "ping", "versions"
]
KNOWN_CHECKS: tuple[str, ...] = get_args(CheckId)

MAX_DEVICE_ID = 15  # an Atlas server has at most 16 NPUs (0..15)

DEFAULT_PROFILE = "vllm-ascend-0.10.1rc1"  # the guide's stack (pdwizard/profiles/)
DEFAULT_RUNS_DIR = "~/.pdwizard/runs"       # per-session files on the nodes
# The guide's --additional-config without torchair_graph_config.enable_multistream_shared_expert,
# which vllm-ascend ignores (additional-config-keys.md): the default of [model] additional_config.
GUIDE_ADDITIONAL_CONFIG: dict[str, Any] = {
    "torchair_graph_config": {"enabled": False},
    "ascend_scheduler_config": {"enabled": True, "enable_chunked_prefill": False},
}

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_ENGINE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
_CONTAINER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_JUMP_RE = re.compile(
    r"(?:(?P<user>[^@:\s/]+)@)?(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::(?P<port>[0-9]{1,5}))?"
)

# Key names refused anywhere in a session file: the key, or its first or last
# underscore-separated word, names a secret (`password`, `ssh_password`, `API-Key`,
# `token_file`, ...). No schema key matches (tests/test_models.py checks).
SECRET_WORDS = frozenset({"password", "passwd", "passphrase", "token", "secret", "apikey"})
SECRET_NAMES = frozenset({"api_key", "private_key", "secret_key", "access_key"})


def is_secret_key(key: str) -> bool:
    """True if a key name looks like it holds a secret (case-insensitive, - or _)."""
    k = key.strip().lower().replace("-", "_")
    if k in SECRET_NAMES or any(k.endswith("_" + n) for n in SECRET_NAMES):
        return True
    words = [w for w in k.split("_") if w]
    return bool(words) and (words[-1] in SECRET_WORDS or words[0] in SECRET_WORDS or k in SECRET_WORDS)


def _fail(message: str, hint: str | None = None, *, field: str | None = None) -> PydanticCustomError:
    """A field error with a remediation hint. `field`: the key under the error's location
    (for model-level validators, whose location is the table)."""
    # pydantic fills "{name}" placeholders from the context; our context keys are "hint"
    # and "field", so those two literals must not appear in a message.
    ctx: dict[str, str] = {}
    if hint:
        ctx["hint"] = hint
    if field:
        ctx["field"] = field
    return PydanticCustomError("pdw", message, ctx)


def closest(word: str, choices: list[str] | tuple[str, ...]) -> str | None:
    """The closest of `choices` to `word` (difflib), or None."""
    lowered = {c.lower(): c for c in choices}
    match = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[match[0]] if match else None


def _did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> str:
    best = closest(word, choices)
    return f" (did you mean {best!r}?)" if best else ""


def _check_name(value: str, what: str, example: str) -> str:
    if not _NAME_RE.fullmatch(value):
        raise _fail(
            f"{what} {value!r} is not a valid name: use letters, digits, '-', '_' and '.', "
            "starting with a letter or digit",
            f'for example {example}',
        )
    return value


def _check_host(value: str, key: str) -> str:
    if not value or value != value.strip() or any(c.isspace() for c in value):
        raise _fail(f"{key} must be a host name or IP address without spaces", f'for example {key} = "192.0.0.1"')
    if "@" in value:
        # May be user:password@host: do not echo it.
        raise _fail(f"{key} must not contain a user name ('@')", 'put the user in user = "root" and only the address in ' + key)
    if "/" in value or value.startswith("["):
        raise _fail(f"{key} {value!r} is not a host name or IP address", f'for example {key} = "192.0.0.1"')
    if ":" in value:
        try:
            ipaddress.IPv6Address(value)
        except ValueError:
            raise _fail(
                f"{key} {value!r} must not contain a port",
                "put the SSH port in port = 22 and only the address in " + key,
            ) from None
    return value


def _check_port(value: int, key: str, example: int) -> int:
    if not 1 <= value <= 65535:
        raise _fail(f"{key} {value} is out of range: expected 1..65535", f"for example {key} = {example}")
    return value


def _check_timeout(value: float, key: str) -> float:
    if not value > 0 or value != value or value == float("inf"):
        raise _fail(f"{key} must be a positive number of seconds, got {value}", f"for example {key} = 10")
    return value


def _check_user(value: str) -> str:
    if not value or any(c.isspace() for c in value) or "@" in value or ":" in value:
        # ':' could be user:password; do not echo the value.
        raise _fail("user must be a plain login name (no spaces, '@' or ':')", 'for example user = "root"')
    return value


def _check_path(value: str, key: str, example: str) -> str:
    if not value.strip() or "\x00" in value:
        raise _fail(f"{key} must be a non-empty path", f'for example {key} = "{example}"')
    return value


def _check_json_table(value: dict[str, Any], key: str) -> dict[str, Any]:
    """A TOML table that must be passable as a JSON object (no dates, no NaN/inf)."""

    def walk(v: Any, path: str) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                if not k:
                    raise _fail(f"{path} has an empty key", "every key needs a name")
                walk(x, f"{path}.{k}")
        elif isinstance(v, list):
            for i, x in enumerate(v):
                walk(x, f"{path}[{i}]")
        elif isinstance(v, float) and not math.isfinite(v):
            raise _fail(f"{path} is {v}, which JSON cannot hold", "give a finite number")
        elif not isinstance(v, (str, int, float, bool)):
            raise _fail(
                f"{path} is a {type(v).__name__}, which JSON cannot hold",
                "use strings, numbers, true/false, arrays and tables only (write dates as strings)",
            )

    walk(value, key)
    return value


def _check_extra_args(value: list[str]) -> list[str]:
    for i, arg in enumerate(value):
        if not arg or "\x00" in arg or arg != arg.strip():
            raise _fail(
                f"extra_args[{i}] must be a non-empty argument without surrounding spaces or NUL",
                'write one argument per string: extra_args = ["--max-num-seqs", "16"]',
            )
    return value


class JumpSpec(NamedTuple):
    """A parsed ProxyJump address `[user@]host[:port]`."""

    user: str | None
    host: str
    port: int | None


def parse_jump(spec: str) -> JumpSpec:
    """Parse `[user@]host[:port]` (IPv6 in brackets). Raises ValueError, never echoing a password."""
    m = _JUMP_RE.fullmatch(spec)
    if not m:
        if "@" in spec and ":" in spec.split("@", 1)[0]:
            raise ValueError("a password in the jump address is not accepted")
        raise ValueError("expected [user@]host[:port]")
    port = int(m["port"]) if m["port"] else None
    if port is not None and not 1 <= port <= 65535:
        raise ValueError(f"jump port {port} is out of range: expected 1..65535")
    host = m["host"]
    if host.startswith("["):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError("expected [user@]host[:port]; an IPv6 host goes in brackets") from None
    return JumpSpec(m["user"], host, port)


def _check_jump(value: str, key: str) -> str:
    try:
        parse_jump(value)
    except ValueError as exc:
        if "password" in str(exc):
            raise _fail(
                str(exc),
                "authenticate to the jump host with an SSH agent (ssh-add) or a key file, never a password",
            ) from None
        raise _fail(f"{key} {value!r}: {exc}", f'for example {key} = "admin@bastion.example.com:22"') from None
    return value


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        hide_input_in_errors=True,
        validate_default=False,
    )


class SshDefaults(_Model):
    """`[ssh]`: connection defaults for every node (a node may override some)."""

    user: str | None = Field(default=None, examples=["root"])
    """Login name. None: the local user name, like ssh."""
    port: int = Field(default=22, examples=[22])
    identity_file: str | None = Field(default=None, examples=["~/.ssh/id_ed25519"])
    """Private key file. None: the SSH agent and the default keys."""
    known_hosts: str | None = Field(default=None, examples=["~/.ssh/known_hosts"])
    """None: ~/.ssh/known_hosts."""
    trust_on_first_use: bool = Field(default=False, examples=[False])
    """Record an unknown host key instead of refusing it. A changed key is always refused."""
    jump: str | None = Field(default=None, examples=["admin@bastion:22"])
    """ProxyJump bastion, "[user@]host[:port]"."""
    connect_timeout: float = Field(default=10.0, examples=[10])
    """Seconds to establish one SSH connection."""
    command_timeout: float = Field(default=120.0, examples=[120])
    """Seconds one remote command (or one batched probe script) may run."""

    @field_validator("user")
    @classmethod
    def _user(cls, v: str | None) -> str | None:
        return None if v is None else _check_user(v)

    @field_validator("port")
    @classmethod
    def _port(cls, v: int) -> int:
        return _check_port(v, "port", 22)

    @field_validator("identity_file")
    @classmethod
    def _identity(cls, v: str | None) -> str | None:
        return None if v is None else _check_path(v, "identity_file", "~/.ssh/id_ed25519")

    @field_validator("known_hosts")
    @classmethod
    def _known_hosts(cls, v: str | None) -> str | None:
        return None if v is None else _check_path(v, "known_hosts", "~/.ssh/known_hosts")

    @field_validator("jump")
    @classmethod
    def _jump(cls, v: str | None) -> str | None:
        return None if v is None else _check_jump(v, "jump")

    @field_validator("connect_timeout", "command_timeout")
    @classmethod
    def _timeouts(cls, v: float, info: Any) -> float:
        return _check_timeout(v, info.field_name)


class Node(_Model):
    """`[[nodes]]`: one server, reached over SSH."""

    name: str = Field(examples=["p1"])
    host: str = Field(examples=["192.0.0.1"])
    """Where SSH connects (IP address or host name)."""
    ip: str | None = Field(default=None, examples=["192.0.0.1"])
    """The node's IPv4 address for HCCL_IF_IP and the ranktable. None: host."""
    nic: str | None = Field(default=None, examples=["eth0"])
    """Network card name. None: the NIC that holds ip (found by discovery)."""
    user: str | None = Field(default=None, examples=["root"])
    port: int | None = Field(default=None, examples=[22])
    identity_file: str | None = Field(default=None, examples=["~/.ssh/id_ed25519"])
    jump: str | None = Field(default=None, examples=["admin@bastion:22"])
    """Overrides [ssh] jump; "" connects directly even if [ssh] has a jump."""

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_name(v, "node name", 'name = "p1"')

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        return _check_host(v, "host")

    @field_validator("ip")
    @classmethod
    def _ip(cls, v: str | None) -> str | None:
        if v is None:
            return None
        try:
            ipaddress.IPv4Address(v)
        except ValueError:
            raise _fail(
                f"ip {v!r} is not an IPv4 address",
                'give the node\'s IPv4 address (used for HCCL_IF_IP and the ranktable), e.g. ip = "192.0.0.1"',
            ) from None
        return v

    @field_validator("nic")
    @classmethod
    def _nic(cls, v: str | None) -> str | None:
        if v is None:
            return None
        if not v or len(v) > 15 or "/" in v or any(c.isspace() for c in v):
            raise _fail(
                f"nic {v!r} is not a network interface name (1..15 characters, no spaces or '/')",
                'use the name `ip -br addr` shows on the node, e.g. nic = "eth0", or remove the key to detect it',
            )
        return v

    @field_validator("user")
    @classmethod
    def _user(cls, v: str | None) -> str | None:
        return None if v is None else _check_user(v)

    @field_validator("port")
    @classmethod
    def _port(cls, v: int | None) -> int | None:
        return None if v is None else _check_port(v, "port", 22)

    @field_validator("identity_file")
    @classmethod
    def _identity(cls, v: str | None) -> str | None:
        return None if v is None else _check_path(v, "identity_file", "~/.ssh/id_ed25519")

    @field_validator("jump")
    @classmethod
    def _jump(cls, v: str | None) -> str | None:
        return v if not v else _check_jump(v, "jump")

    @property
    def effective_ip(self) -> str:
        """ip, or host when ip is not given."""
        return self.ip if self.ip is not None else self.host


class Instance(_Model):
    """`[[instances]]`: one vLLM server (prefill or decode) on one node's NPUs."""

    role: Role = Field(examples=["prefill"])
    node: str = Field(examples=["p1"])
    devices: list[int] = Field(examples=[[0, 1]])
    """NPU device ids on that node; their count is the tensor-parallel size."""
    port: int = Field(examples=[13700])
    """The vLLM API port."""
    tensor_parallel_size: int = Field(default_factory=lambda data: len(data.get("devices") or ()), examples=[2])
    """--tensor-parallel-size. Default: the number of devices (and it must equal it)."""
    enforce_eager: bool | None = Field(default=None, examples=[True])
    """--enforce-eager. None: the guide's choice for the role (prefill true, decode false)."""
    kv_port: int | str | None = Field(default=None, examples=["20001"])
    """kv_port in --kv-transfer-config, written as given (the guide passes the string "20001").
    None: the connector's default (LLMDataDist: "20001", which it ignores; Mooncake: a free base
    from 36000 up per node)."""
    engine_id: str | None = Field(default=None, examples=["0"])
    """engine_id in --kv-transfer-config. None: the connector's default (LLMDataDist: "0" as the
    guide; Mooncake: the instance index, distinct as it requires)."""
    additional_config: dict[str, Any] | None = Field(default=None, examples=[{"torchair_graph_config": {"enabled": False}}])
    """Merged (table by table) over [model] additional_config for this instance only."""
    extra_args: list[str] = Field(default_factory=list, examples=[["--max-num-seqs", "16"]])
    """More `vllm serve` flags for this instance, after [model] extra_args (a flag given in both
    takes this value). Checked against the version profile when rendered."""

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        # an unset tensor_parallel_size follows the devices (it is derived, never written)
        if name == "devices" and "tensor_parallel_size" not in self.model_fields_set:
            self.__dict__["tensor_parallel_size"] = len(value)

    @field_validator("devices")
    @classmethod
    def _devices(cls, v: list[int]) -> list[int]:
        if not v:
            raise _fail("devices is empty: an instance needs at least one NPU", "for example devices = [0, 1]")
        bad = [d for d in v if not 0 <= d <= MAX_DEVICE_ID]
        if bad:
            raise _fail(
                f"device id(s) {', '.join(map(str, bad))} out of range: NPU ids are 0..{MAX_DEVICE_ID}",
                "use the ids `npu-smi info` lists on the node, e.g. devices = [0, 1]",
            )
        dups = sorted({d for d in v if v.count(d) > 1})
        if dups:
            raise _fail(
                f"device id(s) {', '.join(map(str, dups))} listed more than once",
                "list each NPU once",
            )
        return v

    @field_validator("port")
    @classmethod
    def _port(cls, v: int) -> int:
        return _check_port(v, "port", 13700)

    @field_validator("kv_port")
    @classmethod
    def _kv_port(cls, v: int | str | None) -> int | str | None:
        if v is None:
            return None
        number = int(v) if isinstance(v, int) or (v.isascii() and v.isdigit()) else None
        if number is None or not 1 <= number <= 65535:
            raise _fail(
                f"kv_port {v!r} is not a port number 1..65535",
                'for example kv_port = "20001" (a string, as the guide writes it) or kv_port = 36000',
            )
        return v

    @field_validator("engine_id")
    @classmethod
    def _engine_id(cls, v: str | None) -> str | None:
        if v is not None and not _ENGINE_ID_RE.fullmatch(v):
            raise _fail(
                f"engine_id {v!r} is not a valid engine id (1..64 letters, digits, '.', '_', ':', '-')",
                'for example engine_id = "0"; remove it to let pdwizard pick one',
            )
        return v

    @field_validator("additional_config")
    @classmethod
    def _additional(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if v is None else _check_json_table(v, "additional_config")

    @field_validator("extra_args")
    @classmethod
    def _extra(cls, v: list[str]) -> list[str]:
        return _check_extra_args(v)

    @model_validator(mode="after")
    def _tp(self) -> Instance:
        if self.tensor_parallel_size != len(self.devices):
            raise _fail(
                f"tensor_parallel_size {self.tensor_parallel_size} does not match the {len(self.devices)} "
                f"device(s) listed: pdwizard runs one tensor-parallel group per instance",
                "remove tensor_parallel_size (it defaults to the number of devices) or list exactly that many devices",
                field="tensor_parallel_size",
            )
        return self

    @property
    def label(self) -> str:
        """Short human name: "prefill p1:13700"."""
        return f"{self.role} {self.node}:{self.port}"

    @property
    def eager(self) -> bool:
        """Whether --enforce-eager is given: enforce_eager, else the guide's role default."""
        return self.enforce_eager if self.enforce_eager is not None else self.role == "prefill"


class ModelSpec(_Model):
    """`[model]`: what vLLM serves."""

    path: str = Field(examples=["/model/Qwen3-30B-A3B"])
    """Model directory on every node (or a model id vLLM can fetch)."""
    served_name: str | None = Field(default=None, examples=["qwen3-moe"])
    """--served-model-name. None: the last component of path."""
    max_model_len: int = Field(default=6144, examples=[6144])
    """--max-model-len (the guide's 6144)."""
    max_num_batched_tokens: int = Field(default=6144, examples=[6144])
    """--max-num-batched-tokens (the guide's 6144)."""
    gpu_memory_utilization: float = Field(default=0.9, examples=[0.9])
    """--gpu-memory-utilization (the guide's 0.9)."""
    seed: int = Field(default=1024, examples=[1024])
    """--seed (the guide's 1024)."""
    trust_remote_code: bool = Field(default=False, examples=[True])
    """--trust-remote-code: run Python code shipped with the model. The guide sets it; off unless asked."""
    enable_expert_parallel: bool = Field(default=False, examples=[True])
    """--enable-expert-parallel, for MoE models (the guide's Qwen3-30B-A3B sets it)."""
    enable_prefix_caching: bool = Field(default=False, examples=[False])
    """true: --enable-prefix-caching; false: --no-enable-prefix-caching (the guide)."""
    extra_args: list[str] = Field(default_factory=list, examples=[["--max-num-seqs", "16"]])
    """More `vllm serve` flags for every instance, e.g. ["--max-num-seqs", "16"]. Checked against
    the version profile when rendered: unknown flags, and flags pdwizard sets itself, are refused."""
    additional_config: dict[str, Any] = Field(
        default_factory=lambda: copy.deepcopy(GUIDE_ADDITIONAL_CONFIG),
        examples=[{"ascend_scheduler_config": {"enabled": True}}],
    )
    """--additional-config as a table. Default: the guide's, without its no-op key
    torchair_graph_config.enable_multistream_shared_expert. Keys are checked against the profile."""

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        return _check_path(v, "path", "/model/Qwen3-30B-A3B")

    @field_validator("served_name")
    @classmethod
    def _served(cls, v: str | None) -> str | None:
        if v is not None and (not v.strip() or any(c.isspace() for c in v)):
            raise _fail("served_name must be a non-empty name without spaces", 'for example served_name = "qwen3-moe"')
        return v

    @field_validator("max_model_len", "max_num_batched_tokens")
    @classmethod
    def _positive(cls, v: int, info: Any) -> int:
        if v < 1:
            raise _fail(f"{info.field_name} must be at least 1, got {v}", f"for example {info.field_name} = 6144")
        return v

    @field_validator("gpu_memory_utilization")
    @classmethod
    def _gpu_mem(cls, v: float) -> float:
        if not 0 < v <= 1:
            raise _fail(
                f"gpu_memory_utilization must be a fraction in (0, 1], got {v}",
                "for example gpu_memory_utilization = 0.9",
            )
        return v

    @field_validator("seed")
    @classmethod
    def _seed(cls, v: int) -> int:
        if v < 0:
            raise _fail(f"seed must be 0 or more, got {v}", "for example seed = 1024")
        return v

    @field_validator("extra_args")
    @classmethod
    def _extra(cls, v: list[str]) -> list[str]:
        return _check_extra_args(v)

    @field_validator("additional_config")
    @classmethod
    def _additional(cls, v: dict[str, Any]) -> dict[str, Any]:
        return _check_json_table(v, "additional_config")

    @model_validator(mode="after")
    def _derivable(self) -> ModelSpec:
        if self.served_name is None and not _basename(self.path):
            raise _fail(
                f"served_name cannot be derived from path {self.path!r}",
                'set served_name = "..." in [model]',
                field="served_name",
            )
        return self

    @property
    def served_model_name(self) -> str:
        """The name clients ask for: served_name, else the basename of path."""
        return self.served_name if self.served_name is not None else _basename(self.path)


def _basename(path: str) -> str:
    stripped = path.strip().rstrip("/")
    return PurePosixPath(stripped).name if stripped else ""


class Proxy(_Model):
    """`[proxy]`: the PD load-balancing proxy clients talk to (the guide runs it on the prefill node)."""

    node: str | None = Field(default=None, examples=["p1"])
    """None: the node of the first prefill instance."""
    port: int = Field(default=8080, examples=[8080])
    kind: ProxyKind = Field(default="builtin", examples=["upstream"])
    """builtin: `python -m pdwizard.proxy`; upstream: vllm-ascend's example proxy script (the guide's).
    Both get the same flags."""
    script: str = Field(default="load_balance_proxy_server_example.py",
                        examples=["load_balance_proxy_server_example.py"])
    """kind = "upstream": the example script's path on the proxy node (as the guide: in the working directory)."""

    @field_validator("script")
    @classmethod
    def _script(cls, v: str) -> str:
        return _check_path(v, "script", "load_balance_proxy_server_example.py")

    @field_validator("port")
    @classmethod
    def _port(cls, v: int) -> int:
        return _check_port(v, "port", 8080)


class Stack(_Model):
    """`[stack]`: where the CANN / vLLM stack lives on the nodes."""

    container: str | None = Field(default=None, examples=["vllm-ascend"])
    """Run discovery and serving inside this existing container (docker exec). None: on the host."""
    profile: str = Field(default=DEFAULT_PROFILE, examples=[DEFAULT_PROFILE])
    """The version profile (pdwizard/profiles/<name>.toml): which flags and keys vllm serve accepts."""
    connector: str | None = Field(default=None, examples=["llmdatadist"])
    """The KV connector, when the profile offers several. None: the profile's default."""
    ranktable_path: str | None = Field(default=None, examples=["~/.pdwizard/runs/qwen3-1p2d/ranktable.json"])
    """DISAGGREGATED_PREFILL_RANK_TABLE_PATH on the nodes. None: ~/.pdwizard/runs/<name>/ranktable.json."""
    prefill_startup_timeout_s: float = Field(default=1200.0, examples=[1200])
    """Seconds a prefill instance may take from launch to answering /health; then the launch fails."""
    decode_startup_timeout_s: float = Field(default=1200.0, examples=[1200])
    """Seconds a decode instance may take from launch to answering /health; then the launch fails."""
    proxy_startup_timeout_s: float = Field(default=60.0, examples=[60])
    """Seconds the proxy may take to answer once started (after every instance is healthy)."""
    stop_grace_s: float = Field(default=30.0, examples=[30])
    """Seconds stop waits after SIGTERM before it sends SIGKILL."""

    @field_validator("prefill_startup_timeout_s", "decode_startup_timeout_s", "proxy_startup_timeout_s",
                     "stop_grace_s")
    @classmethod
    def _seconds(cls, v: float, info: Any) -> float:
        return _check_timeout(v, info.field_name)

    @field_validator("profile")
    @classmethod
    def _profile(cls, v: str) -> str:
        from pdwizard.profiles import available_profiles

        names = available_profiles()
        if v not in names:
            raise _fail(f"unknown profile {v!r}{_did_you_mean(v, names)}", f"use one of: {', '.join(names)}")
        return v

    @field_validator("connector")
    @classmethod
    def _connector(cls, v: str | None) -> str | None:
        if v is not None and not _NAME_RE.fullmatch(v):
            raise _fail(f"connector {v!r} is not a connector name", 'for example connector = "llmdatadist"')
        return v

    @field_validator("ranktable_path")
    @classmethod
    def _ranktable(cls, v: str | None) -> str | None:
        if v is None:
            return None
        _check_path(v, "ranktable_path", "~/.pdwizard/runs/qwen3-1p2d/ranktable.json")
        if not (v.startswith("/") or v.startswith("~/")) or v.endswith("/"):
            raise _fail(
                f"ranktable_path {v!r} must be an absolute file path (or start with ~/)",
                "vLLM reads it from its own working directory: give the full path, "
                'e.g. ranktable_path = "/etc/pdwizard/ranktable.json"',
            )
        return v

    @field_validator("container")
    @classmethod
    def _container(cls, v: str | None) -> str | None:
        if v is not None and not _CONTAINER_RE.fullmatch(v):
            raise _fail(
                f"container {v!r} is not a docker container name or id",
                "use the NAMES column of `docker ps` on the node",
            )
        return v


class Checks(_Model):
    """`[checks]`: which fabric checks run and how hard the ping matrix goes."""

    ping: PingMode = Field(default="auto", examples=["auto"])
    """auto: full NPU ping matrix while it fits ping_budget per node, else a covering sample."""
    ping_budget: int = Field(default=48, examples=[48])
    """Max pings issued per node in auto mode."""
    skip: list[CheckId] = Field(default_factory=list, examples=[["lldp"]])
    """Check ids not to run."""

    @field_validator("ping_budget")
    @classmethod
    def _budget(cls, v: int) -> int:
        if v < 1:
            raise _fail(f"ping_budget must be at least 1, got {v}", 'to run no pings, set ping = "off"')
        return v


class Verify(_Model):
    """`[[verify]]`: one completion request through the proxy after launch."""

    prompt: str = Field(examples=["Who are you?"])
    max_tokens: int = Field(default=100, examples=[100])
    expect: str | None = Field(default=None, examples=["Qwen"])
    """Text the answer must contain (case-insensitive). None: any non-empty answer passes."""
    chat: bool = Field(default=False, examples=[False])
    """true: /v1/chat/completions with the prompt as one user message; false: /v1/completions
    (the guide's curl)."""

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, v: str) -> str:
        if not v.strip():
            raise _fail("prompt is empty", 'for example prompt = "Who are you?"')
        return v

    @field_validator("max_tokens")
    @classmethod
    def _max_tokens(cls, v: int) -> int:
        if v < 1:
            raise _fail(f"max_tokens must be at least 1, got {v}", "for example max_tokens = 100")
        return v

    @field_validator("expect")
    @classmethod
    def _expect(cls, v: str | None) -> str | None:
        if v is not None and not v:
            raise _fail("expect is empty", "remove expect to accept any answer, or give the text it must contain")
        return v


class Session(_Model):
    """The root of a session file."""

    schema_version: int = Field(examples=[1])
    name: str = Field(examples=["qwen3-1p2d"])
    ssh: SshDefaults = Field(default_factory=SshDefaults)
    nodes: list[Node]
    instances: list[Instance]
    model: ModelSpec
    proxy: Proxy = Field(default_factory=Proxy)
    stack: Stack = Field(default_factory=Stack)
    checks: Checks = Field(default_factory=Checks)
    verify: list[Verify] = Field(default_factory=list)

    @field_validator("schema_version")
    @classmethod
    def _schema(cls, v: int) -> int:
        if v not in SUPPORTED_SCHEMA_VERSIONS:
            supported = ", ".join(map(str, SUPPORTED_SCHEMA_VERSIONS))
            raise _fail(
                f"schema_version {v} is not supported; this pdwizard reads version(s) {supported}",
                f"set schema_version = {SCHEMA_VERSION}, or use the pdwizard release that wrote this file",
            )
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_name(v, "session name", 'name = "qwen3-1p2d"')

    @model_validator(mode="after")
    def _cross_fields(self) -> Session:
        problems = list(self.problems())
        if problems:
            raise PydanticCustomError(
                "pdw_rules",
                "; ".join(f"{k}: {m}" for k, m, _ in problems),
                {"problems": tuple(problems)},
            )
        return self

    def problems(self) -> Iterator[tuple[str, str, str]]:
        """Cross-field rule violations as (dotted key, message, hint)."""
        names: dict[str, int] = {}
        ips: dict[str, int] = {}
        for i, node in enumerate(self.nodes):
            if node.name in names:
                yield (
                    f"nodes[{i}].name",
                    f"node name {node.name!r} is already used by nodes[{names[node.name]}]",
                    "give every [[nodes]] entry its own name",
                )
            else:
                names[node.name] = i
            if node.ip is None:
                try:
                    ipaddress.IPv4Address(node.host)
                except ValueError:
                    yield (
                        f"nodes[{i}].ip",
                        f"missing: host {node.host!r} is not an IPv4 address, and HCCL_IF_IP and the "
                        "ranktable need the node's IPv4 address",
                        f'add ip = "<IPv4 of {node.name}>" to this [[nodes]] entry',
                    )
                    continue
            ip = node.effective_ip
            if ip in ips:
                j = ips[ip]
                key = "ip" if node.ip is not None else "host"
                yield (
                    f"nodes[{i}].{key}",
                    f"node IP {ip} is already the IP of nodes[{j}] ({self.nodes[j].name})",
                    "each node needs its own IP; set ip to this node's address",
                )
            else:
                ips[ip] = i

        if not self.nodes:
            yield ("nodes", "no nodes", 'add a [[nodes]] entry per server: name = "p1", host = "192.0.0.1"')

        known = list(names)
        used_devices: dict[tuple[str, int], int] = {}
        used_ports: dict[tuple[str, int], int] = {}
        for i, inst in enumerate(self.instances):
            if inst.node not in names:
                listed = ", ".join(known) if known else "none"
                yield (
                    f"instances[{i}].node",
                    f"no node named {inst.node!r}{_did_you_mean(inst.node, known)}; known nodes: {listed}",
                    "use a name from [[nodes]], or add a [[nodes]] entry for it",
                )
                continue
            clash = sorted({used_devices[(inst.node, d)] for d in inst.devices if (inst.node, d) in used_devices})
            for j in clash:
                other = self.instances[j]
                shared = sorted(set(inst.devices) & set(other.devices))
                yield (
                    f"instances[{i}].devices",
                    f"device(s) {', '.join(map(str, shared))} on node {inst.node} already used by "
                    f"instances[{j}] ({other.label})",
                    "an NPU serves one instance: pick other device ids",
                )
            for d in inst.devices:
                used_devices.setdefault((inst.node, d), i)
            if (inst.node, inst.port) in used_ports:
                j = used_ports[(inst.node, inst.port)]
                yield (
                    f"instances[{i}].port",
                    f"port {inst.port} on node {inst.node} is already used by instances[{j}] ({self.instances[j].label})",
                    "give each instance on a node its own port",
                )
            else:
                used_ports[(inst.node, inst.port)] = i

        roles = {inst.role for inst in self.instances}
        missing = [r for r in ("prefill", "decode") if r not in roles]
        if missing:
            yield (
                "instances",
                f"no {' and no '.join(missing)} instance: PD disaggregation needs at least one prefill "
                "instance (computes the KV cache) and one decode instance (generates tokens from it)",
                'add [[instances]] entries with role = "prefill" and role = "decode"',
            )

        if self.proxy.node is not None and self.proxy.node not in names:
            listed = ", ".join(known) if known else "none"
            yield (
                "proxy.node",
                f"no node named {self.proxy.node!r}{_did_you_mean(self.proxy.node, known)}; known nodes: {listed}",
                "use a name from [[nodes]], or remove proxy.node to run the proxy on the first prefill node",
            )
        else:
            proxy_node = self.proxy.node or next((x.node for x in self.instances if x.role == "prefill"), None)
            if proxy_node is not None and (proxy_node, self.proxy.port) in used_ports:
                j = used_ports[(proxy_node, self.proxy.port)]
                yield (
                    "proxy.port",
                    f"port {self.proxy.port} on node {proxy_node} is already used by instances[{j}] "
                    f"({self.instances[j].label})",
                    "give the proxy another port, e.g. port = 8080",
                )

        if self.stack.connector is not None:
            from pdwizard.profiles import load_profile

            offered = list(load_profile(self.stack.profile).connectors)
            if self.stack.connector not in offered:
                yield (
                    "stack.connector",
                    f"profile {self.stack.profile} offers no connector {self.stack.connector!r}"
                    f"{_did_you_mean(self.stack.connector, offered)}; it offers: {', '.join(offered)}",
                    f"use one of: {', '.join(offered)}, or remove connector to use the profile's default",
                )

    # ---- convenience for the rest of the app -------------------------------------------

    @property
    def ranktable_path(self) -> str:
        """DISAGGREGATED_PREFILL_RANK_TABLE_PATH on the nodes: [stack] ranktable_path, else
        ~/.pdwizard/runs/<name>/ranktable.json (`~` is the login's home on the node)."""
        if self.stack.ranktable_path is not None:
            return self.stack.ranktable_path
        return f"{DEFAULT_RUNS_DIR}/{self.name}/ranktable.json"

    def node(self, name: str) -> Node:
        """The node called `name`. KeyError (listing known names) if none."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"no node named {name!r}; known nodes: {', '.join(n.name for n in self.nodes)}")

    def _node(self, node: str | Node) -> Node:
        return self.node(node) if isinstance(node, str) else node

    def node_ip(self, node: str | Node) -> str:
        """The node's IP for HCCL_IF_IP and the ranktable: ip, else host."""
        return self._node(node).effective_ip

    def prefills(self) -> list[Instance]:
        return [i for i in self.instances if i.role == "prefill"]

    def decodes(self) -> list[Instance]:
        return [i for i in self.instances if i.role == "decode"]

    def instances_on(self, node: str | Node) -> list[Instance]:
        name = node if isinstance(node, str) else node.name
        return [i for i in self.instances if i.node == name]

    def proxy_node(self) -> Node:
        """Where the PD proxy runs: proxy.node, else the first prefill instance's node."""
        if self.proxy.node is not None:
            return self.node(self.proxy.node)
        return self.node(self.prefills()[0].node)

    def ssh_target_args(self, node: str | Node) -> dict[str, Any]:
        """Effective SSH settings for one node: [ssh] defaults merged with the node's overrides.

        Keys: user, port, identity_file, known_hosts, trust_on_first_use, jump,
        connect_timeout (the SshTarget fields other than name and host). Paths have `~`
        expanded; None means the SSH default (local user, agent/default keys,
        ~/.ssh/known_hosts, no jump). jump stays a "[user@]host[:port]" string (see
        parse_jump).
        """
        n = self._node(node)
        d = self.ssh
        identity = n.identity_file if n.identity_file is not None else d.identity_file
        jump = n.jump if n.jump is not None else d.jump
        return {
            "user": n.user if n.user is not None else d.user,
            "port": n.port if n.port is not None else d.port,
            "identity_file": os.path.expanduser(identity) if identity is not None else None,
            "known_hosts": os.path.expanduser(d.known_hosts) if d.known_hosts is not None else None,
            "trust_on_first_use": d.trust_on_first_use,
            "jump": jump or None,
            "connect_timeout": d.connect_timeout,
        }


def iter_model_fields(model: type[BaseModel] = Session, prefix: str = "") -> Iterator[str]:
    """Every dotted field path in the schema (for docs and the no-secret-field test)."""
    from typing import get_origin

    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        yield path
        tp = field.annotation
        for arg in (tp, *get_args(tp)):
            inner = get_args(arg)[0] if get_origin(arg) is list and get_args(arg) else arg
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                yield from iter_model_fields(inner, path + ".")
                break
