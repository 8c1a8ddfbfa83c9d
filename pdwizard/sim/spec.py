"""The simulator spec: a TOML array of ``[[node]]`` tables (the key names are a contract).

``load_spec(path)`` reads and validates a file; ``spec_from_dict(data)`` validates a
dict (tests). Both raise :class:`pdwizard.errors.InputError` naming the file and the
key (``node[1].soc``), what was expected and how to fix it. After validation every
defaulted value is filled in (name, ip, npu_ips, vnic_ips, super-pod identity...), so
``spec.nodes[i].npu_ips`` is always the list the node will report.

Device indices: the hccn_tool faults (``link_down``, ``unhealthy``, ``netdetect_unset``,
``no_gateway``, ``no_ip``, ``no_lldp``, ``hccn_conf_stale``, ``tls`` list, ``net_health``
keys) are *physical device ids* (``hccn_tool -i N``: 0..7 on A2, 0..15 on A3); the
npu-smi faults (``npu_health`` keys, ``busy_npus``) are *NPU ids* (0..npus-1).

Files: each node has its own filesystem root (``$PDWIZARD_SIM_ROOT``, see cluster.py); ``models``
are directories under it, each with a ``config.json`` built from ``model_type`` and
``model_config``.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pdwizard.errors import InputError
from pdwizard.sim.render import A2_BUS_IDS, A3_BUS_IDS

HEALTH_VALUES = ("OK", "Warning", "Alarm", "Critical", "UNKNOWN")
NET_HEALTH_VALUES = ("Success", "Socket fail", "Receive timeout", "Unreachable", "Time exceeded",
                     "Fault", "Init", "Thread error", "Detect ip set", "Unknown")
MAX_NODES = 250

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_NIC_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,14}$")
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")

#: The guide's model directory: present on every simulated node unless `models` says otherwise.
DEFAULT_MODELS = ("/model/Qwen3-30B-A3B",)

#: vllm_fault values besides "die_after:N" (see pdwizard/sim/vllm.py for the error each prints).
VLLM_FAULTS = ("", "oom", "port_in_use", "hccl_timeout", "kv_pull_fail")

_DEVICE_LISTS = ("link_down", "unhealthy", "netdetect_unset", "no_gateway", "no_ip", "no_lldp",
                 "hccn_conf_stale")


def _ipv4(value: str, what: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise ValueError(f"{what} must be an IPv4 address like 29.0.1.1, got {value!r}") from None


class NodeSpec(BaseModel):
    """One ``[[node]]`` table. Defaults describe a healthy Atlas 800T A2 node."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str | None = Field(None, description="hostname the node reports; default sim-<host with dashes>")
    host: str = Field(description="loopback address (127.0.0.0/8) the node's SSH server binds to")
    port: int = Field(2222, ge=0, le=65535, description="SSH port; 0 = pick a free one at start")
    ip: str | None = Field(None, description="what `hostname -I` reports; default: host")
    nic: str = "eth0"
    soc: Literal["A2", "A3"] = "A2"
    npus: int = Field(8, ge=1, le=8)
    chip_name: str | None = Field(None, description="npu-smi Name column; default 910B3 (A2), Ascend910 (A3)")
    npu_ips: list[str] | None = None
    npu_netmask: str = "255.255.0.0"
    npu_gateway: str | None = Field(None, description="default: first address of each device's subnet")
    vnic_ips: list[str] | None = None
    super_pod_id: int | None = Field(None, ge=0, le=0xFFFFFFFF)
    super_pod_size: int | None = Field(None, ge=1, le=0xFFFFFFFF)
    server_index: int | None = Field(None, ge=0, le=1023)
    sdids: list[int] | None = None
    # faults (defaults = healthy)
    link_down: list[int] = []
    unhealthy: list[int] = []
    net_health: dict[str, str] = {}
    ping_loss: list[str] = []
    unreachable: bool = False
    auth_fail: bool = False
    tool_delay_ms: int = Field(0, ge=0, le=60000)
    # the fake `vllm serve` (pdwizard/sim/vllm.py)
    vllm_startup_s: float = Field(0.2, ge=0, le=600, description="seconds from `vllm serve` to /health 200")
    token_delay_ms: float = Field(0, ge=0, le=10000, description="fake vllm: milliseconds per generated token")
    vllm_fault: str = Field("", description='fake vllm fault: "", "oom", "port_in_use", "hccl_timeout", '
                                            '"kv_pull_fail", "die_after:N"')
    netdetect_unset: list[int] = []
    no_gateway: list[int] = []
    no_ip: list[int] = []
    no_lldp: list[int] = []
    hccn_conf_stale: list[int] = []
    no_hccn_conf: bool = False
    tls: int | list[int] = 0
    npu_health: dict[str, str] = {}
    busy_npus: list[int] = []
    busy_first: int = Field(0, ge=0)
    # facts
    driver_version: str = "24.1.0"
    cann_version: str = "8.2.RC1"
    vllm_version: str = "0.10.1.1"
    vllm_ascend_version: str = "0.10.1rc1"
    extra_ips: list[str] = []
    # files under the node's root ($PDWIZARD_SIM_ROOT)
    models: list[str] = Field(default_factory=lambda: list(DEFAULT_MODELS),
                              description="model directories on the node (absolute paths), each with a config.json")
    model_type: str = Field("qwen3_moe", description="whose config.json the sim writes: qwen3_moe, qwen3, "
                                                     "deepseek_v3 (MLA), or any other word (a minimal config)")
    # the key is `model_config` (pydantic reserves that attribute name)
    config_overrides: dict[str, Any] = Field(default_factory=dict, alias="model_config",
                                             description="config.json keys replacing the built-in ones "
                                                         "(vary it per node)")

    @property
    def chips(self) -> int:
        """Physical devices (hccn_tool ids): one per NPU on A2, two dies per NPU on A3."""
        return self.npus * 2 if self.soc == "A3" else self.npus

    @field_validator("npu_health", "net_health", mode="before")
    @classmethod
    def _str_keys(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): v for k, v in value.items()}
        return value

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        value = _ipv4(value, "host")
        if not ipaddress.IPv4Address(value).is_loopback:
            raise ValueError(f"host must be a loopback address in 127.0.0.0/8 (e.g. 127.0.1.1), got {value!r}")
        return value

    @field_validator("ip", "npu_netmask", "npu_gateway")
    @classmethod
    def _one_ip(cls, value: str | None) -> str | None:
        return None if value is None else _ipv4(value, "value")

    @field_validator("npu_ips", "vnic_ips", "ping_loss", "extra_ips")
    @classmethod
    def _ip_list(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else [_ipv4(v, "every entry") for v in value]

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not _NAME_RE.match(value):
            raise ValueError(f"name must be a hostname (letters, digits, '.', '_', '-'), got {value!r}")
        return value

    @field_validator("nic")
    @classmethod
    def _nic(cls, value: str) -> str:
        if not _NIC_RE.match(value):
            raise ValueError(f"nic must be an interface name like eth0 (at most 15 characters), got {value!r}")
        return value

    @field_validator("models")
    @classmethod
    def _models(cls, value: list[str]) -> list[str]:
        for path in value:
            parts = PurePosixPath(path).parts
            if (not path.startswith("/") or "\x00" in path or len(parts) < 2 or ".." in parts
                    or str(PurePosixPath(path)) != path.rstrip("/")):
                raise ValueError(f"every entry must be an absolute directory path like /model/Qwen3-30B-A3B "
                                 f"(no '..', not /), got {path!r}")
        return value

    @field_validator("config_overrides")
    @classmethod
    def _config_overrides(cls, value: dict[str, Any]) -> dict[str, Any]:
        import json

        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise ValueError(f"must hold what JSON can (strings, numbers, booleans, arrays, tables): {err}") from None
        return value

    @field_validator("model_type")
    @classmethod
    def _model_type(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", value):
            raise ValueError(f"model_type must be a single word like qwen3_moe, got {value!r}")
        return value

    @field_validator("vllm_fault")
    @classmethod
    def _vllm_fault(cls, value: str) -> str:
        if value in VLLM_FAULTS or re.fullmatch(r"die_after:[1-9][0-9]{0,8}", value):
            return value
        raise ValueError(f"vllm_fault must be one of {', '.join(repr(f) for f in VLLM_FAULTS)} or "
                         f"\"die_after:N\" (N >= 1 completed requests), got {value!r}")

    @field_validator("driver_version", "cann_version", "vllm_version", "vllm_ascend_version", "chip_name")
    @classmethod
    def _version(cls, value: str | None) -> str | None:
        if value is not None and not _VERSION_RE.match(value):
            raise ValueError(f"must be a single word like 24.1.0, got {value!r}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> NodeSpec:
        chips, npus = self.chips, self.npus
        for key in _DEVICE_LISTS:
            for i in getattr(self, key):
                if not 0 <= i < chips:
                    raise _KeyError(key, f"device id {i} is out of range: {self.soc} with {npus} NPUs has "
                                         f"devices 0..{chips - 1} (hccn_tool -i ids)")
        if self.npu_ips is not None and len(self.npu_ips) != chips:
            raise _KeyError("npu_ips", f"needs one address per device: {chips} for {self.soc} with {npus} NPUs, "
                                       f"got {len(self.npu_ips)}")
        if self.soc != "A3":
            for key in ("vnic_ips", "super_pod_id", "super_pod_size", "server_index", "sdids"):
                if getattr(self, key) is not None:
                    raise _KeyError(key, "is only for soc = \"A3\" (super pod); remove it or set soc = \"A3\"")
        if self.vnic_ips is not None and len(self.vnic_ips) != chips:
            raise _KeyError("vnic_ips", f"needs one address per device: {chips}, got {len(self.vnic_ips)}")
        if self.sdids is not None:
            if len(self.sdids) != chips:
                raise _KeyError("sdids", f"needs one SDID per chip: {chips}, got {len(self.sdids)}")
            if any(not 0 <= s <= 0xFFFFFFFF for s in self.sdids):
                raise _KeyError("sdids", "SDIDs are unsigned 32-bit integers")
        if isinstance(self.tls, list):
            if len(self.tls) != chips:
                raise _KeyError("tls", f"a list needs one 0/1 per device: {chips}, got {len(self.tls)}")
            if any(v not in (0, 1) for v in self.tls):
                raise _KeyError("tls", "entries must be 0 (disable) or 1 (enable)")
        elif self.tls not in (0, 1):
            raise _KeyError("tls", "must be 0 (disable), 1 (enable) or a list of those per device")
        for key, value in self.npu_health.items():
            if not key.isdigit() or int(key) >= npus:
                raise _KeyError("npu_health", f"keys are NPU ids 0..{npus - 1} as strings (\"5\" = ...), got {key!r}")
            if value not in HEALTH_VALUES:
                raise _KeyError("npu_health", f"values are one of {', '.join(HEALTH_VALUES)}, got {value!r}")
        for key, value in self.net_health.items():
            if not key.isdigit() or int(key) >= chips:
                raise _KeyError("net_health", f"keys are device ids 0..{chips - 1} as strings, got {key!r}")
            if value not in NET_HEALTH_VALUES:
                raise _KeyError("net_health", f"values are one of {', '.join(NET_HEALTH_VALUES)}, got {value!r}")
        for i in self.busy_npus:
            if not 0 <= i < npus:
                raise _KeyError("busy_npus", f"NPU id {i} is out of range 0..{npus - 1} (npu-smi NPU ids)")
        return self


class _KeyError(ValueError):
    """A validation problem attributed to one key of a node."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


class SimSpec(BaseModel):
    """The whole spec: ``node`` is the TOML ``[[node]]`` array; ``nodes`` is an alias."""

    model_config = ConfigDict(extra="forbid", strict=True)

    node: list[NodeSpec] = Field(min_length=1, max_length=MAX_NODES)

    @property
    def nodes(self) -> list[NodeSpec]:
        return self.node

    @model_validator(mode="after")
    def _resolve(self) -> SimSpec:
        seen_addr: dict[tuple[str, int], int] = {}
        seen_name: dict[str, int] = {}
        a3_index = 0
        for i, n in enumerate(self.node):
            if n.port:
                if (n.host, n.port) in seen_addr:
                    raise _NodeError(i, "port", f"{n.host}:{n.port} is already used by node[{seen_addr[n.host, n.port]}]; "
                                                "every node needs its own host:port")
                seen_addr[n.host, n.port] = i
            if n.name is None:
                n.name = "sim-" + n.host.replace(".", "-")
                if n.name in seen_name:
                    n.name = f"{n.name}-{i}"
            if n.name in seen_name:
                raise _NodeError(i, "name", f"{n.name!r} is already the name of node[{seen_name[n.name]}]; "
                                            "names must be unique")
            seen_name[n.name] = i
            if n.ip is None:
                n.ip = n.host
            if n.chip_name is None:
                n.chip_name = "Ascend910" if n.soc == "A3" else "910B3"
            if n.npu_ips is None:
                n.npu_ips = [f"29.{(i + 1) >> 8}.{(i + 1) & 0xFF}.{d + 1}" for d in range(n.chips)]
            if n.soc == "A3":
                if n.vnic_ips is None:
                    n.vnic_ips = [f"192.168.{(i + 1) & 0xFF}.{d + 1}" for d in range(n.chips)]
                if n.super_pod_id is None:
                    n.super_pod_id = 0
                if n.super_pod_size is None:
                    n.super_pod_size = 384
                if n.server_index is None:
                    n.server_index = a3_index
                if n.sdids is None:
                    n.sdids = [(n.server_index << 22) | (d << 16) for d in range(n.chips)]
                a3_index += 1
        return self


class _NodeError(ValueError):
    def __init__(self, index: int, key: str, message: str) -> None:
        super().__init__(message)
        self.index = index
        self.key = key


# --------------------------------------------------------------------------- loading

def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


_HINTS = {
    "soc": 'use soc = "A2" (Atlas 800T A2, 8 chips) or soc = "A3" (super pod, 2 dies per NPU)',
    "host": 'give each node its own loopback address, e.g. host = "127.0.1.1"',
    "port": "use a free port (default 2222), or port = 0 to pick one at start",
    "npus": "npus is the NPU (card) count, 1..8",
    "tls": "use tls = 0 or 1 for every device, or a list with one 0/1 per device",
    "vllm_fault": 'use vllm_fault = "oom", "port_in_use", "hccl_timeout", "kv_pull_fail" or "die_after:20" '
                  '(or "" for none)',
}


def _from_validation_error(err: ValidationError, source: str) -> InputError:
    problems = []
    first_key = None
    first_hint = None
    for e in err.errors():
        loc = tuple(e.get("loc", ()))
        ctx_err = (e.get("ctx") or {}).get("error")
        if isinstance(ctx_err, _NodeError):
            loc = ("node", ctx_err.index, ctx_err.key)
        elif isinstance(ctx_err, _KeyError):
            loc = loc + (ctx_err.key,)
        # pydantic puts the union/literal branch names in loc: drop them
        loc = tuple(p for p in loc if not (isinstance(p, str) and (p.startswith("list[") or p in
                                                                    ("int", "str", "bool", "function-after"))))
        key = _loc(loc) or "node"
        msg = str(ctx_err) if ctx_err is not None else e.get("msg", "invalid")
        if e.get("type") == "extra_forbidden":
            field = loc[-1] if loc else "?"
            allowed = ", ".join(f.alias or n for n, f in NodeSpec.model_fields.items()) if len(loc) > 1 else "node"
            msg = f"unknown key {field!r}; a [[node]] table takes: {allowed}" if len(loc) > 1 else \
                f"unknown top-level key {field!r}; the spec is an array of [[node]] tables"
            hint = "remove it or fix its spelling"
        elif e.get("type") == "missing":
            msg = "is required"
            hint = _HINTS.get(str(loc[-1]) if loc else "", "add it")
        else:
            if "input" in e and ctx_err is None and not isinstance(e["input"], (dict, list)):
                msg = f"{msg} (got {e['input']!r})"
            hint = _HINTS.get(str(loc[-1]) if loc else "", None)
        if f"{key}: {msg}" in problems:
            continue
        problems.append(f"{key}: {msg}")
        if first_key is None:
            first_key, first_hint = key, hint
    keys = {p.split(": ", 1)[0] for p in problems}
    if len(keys) == 1:
        message = "; ".join(p.split(": ", 1)[1] for p in problems)
    else:
        message = f"{len(problems)} problems:\n  " + "\n  ".join(problems)
    return InputError(message, source=source, key=first_key,
                      hint=first_hint or "fix the value; examples/sim-1p2d.toml lists every [[node]] key")


def spec_from_dict(data: Any, source: str = "<sim spec>") -> SimSpec:
    """Validate a spec given as a dict (``{"node": [{...}, ...]}``)."""
    if not isinstance(data, dict):
        raise InputError("a sim spec is a table with [[node]] entries", source=source, key="node")
    try:
        return SimSpec.model_validate(data)
    except ValidationError as err:
        raise _from_validation_error(err, source) from None


def load_spec(path: str | Path) -> SimSpec:
    """Read and validate a spec file; InputError names the file and the key on bad input."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("file not found", source=str(path),
                         hint="give the path of a sim spec TOML, e.g. examples/sim-1p2d.toml") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read: {err}", source=str(path), hint="check the path and permissions") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise InputError(f"not valid TOML: {err}", source=str(path),
                         hint="fix the TOML syntax; nodes are [[node]] tables of key = value lines") from None
    return spec_from_dict(data, source=str(path))


def demo_spec_path() -> Path:
    """The built-in demo spec: the guide's 1P2D cluster (three Atlas 800T A2, 8 NPUs each)."""
    return Path(__file__).resolve().parent.parent / "assets" / "demo-cluster.toml"


# --------------------------------------------------------------------------- facts

def _gateway_for(ip: str, netmask: str) -> str:
    net = ipaddress.IPv4Network(f"{ip}/{netmask}", strict=False)
    return str(net.network_address + 1) if net.num_addresses > 2 else str(net.network_address)


def _stale(ip: str) -> str:
    a, b, c, d = ip.split(".")
    return f"{a}.{(int(b) + 100) % 256}.{c}.{d}"


def node_facts(spec: SimSpec, index: int) -> dict:
    """Everything the fake tools print for node ``index``, as a JSON-able dict (see render.py)."""
    n = spec.node[index]
    a3 = n.soc == "A3"
    tls = n.tls if isinstance(n.tls, list) else [n.tls] * n.chips
    health = ["OK"] * n.npus
    for k, v in n.npu_health.items():
        health[int(k)] = v
    chips = []
    for phy in range(n.chips):
        npu, chip = (phy // 2, phy % 2) if a3 else (phy, 0)
        ip = n.npu_ips[phy]
        gateway = n.npu_gateway or _gateway_for(ip, n.npu_netmask)
        link_up = phy not in n.link_down
        if not link_up:
            net_health = "Fault"
        elif str(phy) in n.net_health:
            net_health = n.net_health[str(phy)]
        elif phy in n.unhealthy:
            net_health = "Receive timeout"
        elif phy in n.netdetect_unset:
            net_health = "Init"
        else:
            net_health = "Success"
        seed = index * 17 + phy * 7
        if a3:
            bus = A3_BUS_IDS[phy] if phy < len(A3_BUS_IDS) else f"0000:{0x80 + phy:02X}:00.0"
            power = None if chip else round(176.0 + (seed % 100) / 10, 1)
            hbm = (3200 if chip else 3395) + seed % 10
        else:
            bus = A2_BUS_IDS[phy] if phy < len(A2_BUS_IDS) else f"0000:{0x80 + phy:02X}:00.0"
            power = round(95.0 + (seed % 100) / 10, 1)
            hbm = 3390 + seed % 16
        chips.append({
            "phy": phy, "npu": npu, "chip": chip, "bus_id": bus, "power": power,
            "temp": 34 + seed % 17, "hbm_used": hbm, "hbm_total": 65536,
            "ip": ip, "netmask": n.npu_netmask, "gateway": gateway, "netdetect": gateway,
            "link_up": link_up, "net_health": net_health,
            "has_ip": phy not in n.no_ip, "has_gateway": phy not in n.no_gateway,
            "netdetect_set": phy not in n.netdetect_unset, "lldp": phy not in n.no_lldp,
            "lldp_port": f"400GE1/{index + 1}/{phy // 2 + 1}:{phy % 2 + 1}",
            "conf_address": _stale(ip) if phy in n.hccn_conf_stale else ip,
            "tls": tls[phy],
            "vnic_ip": (n.vnic_ips[phy] if a3 else f"192.168.{(index + 1) & 0xFF}.{phy + 1}"),
            "sdid": n.sdids[phy] if a3 else None,
        })
    return {
        "index": index, "name": n.name, "host": n.host, "ip": n.ip, "nic": n.nic,
        "extra_ips": list(n.extra_ips), "soc": n.soc, "npus": n.npus, "chips": n.chips,
        "chip_name": n.chip_name, "driver_version": n.driver_version,
        "firmware_version": "7.5.0.1.220", "npu_health": health,
        "super_pod_id": n.super_pod_id, "super_pod_size": n.super_pod_size,
        "server_index": n.server_index, "chip": chips,
        "vllm": {"startup_s": n.vllm_startup_s, "token_delay_ms": n.token_delay_ms, "fault": n.vllm_fault},
    }


def busy_processes(spec: SimSpec, index: int) -> list[dict]:
    """The fake process rows for ``busy_npus`` (one per chip of each busy NPU)."""
    n = spec.node[index]
    rows = []
    per = 2 if n.soc == "A3" else 1
    for npu in n.busy_npus:
        for chip in range(per):
            rows.append({"npu": npu, "chip": chip, "pid": 900000 + index * 1000 + npu * 10 + chip,
                         "name": "pt_main_thread", "mem_mb": 49207})
    return rows


def reachable_targets(spec: SimSpec, index: int) -> set[str]:
    """NPU addresses node ``index``'s devices can ping: live NPU IPs of the spec minus ping_loss."""
    out = set()
    for n in spec.node:
        for phy, ip in enumerate(n.npu_ips):
            if phy in n.link_down or phy in n.no_ip:
                continue
            out.add(ip)
    return out - set(spec.node[index].ping_loss)

