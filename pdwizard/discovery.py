"""Discovery: what each node is, in one SSH round trip per node.

One script per node asks for the hostname, addresses and NICs, the NPU table and
chip map, each NPU's IP (and vNIC and super-pod ids on A3), /etc/hccn.conf, the
CANN version and the Python packages of the runtime that will serve (the host or
the `[stack] container`), and, on nodes that run an instance, the `[model] path` there
(is it a directory, config.json's sha256 and text). The device list is read on the node
from `npu-smi info -m` so the script needs no second round trip.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from pdwizard import parsers
from pdwizard.checks import verdict
from pdwizard.errors import ParseError
from pdwizard.models import Session
from pdwizard.probe import Batch, ToolOutput
from pdwizard.remote.quoting import join_argv
from pdwizard.report import CheckResult, ModelFacts, NodeFacts, NpuFacts, Status

#: Distribution names whose versions must agree across nodes.
PACKAGES = ("vllm", "vllm_ascend", "torch", "torch_npu", "mooncake-transfer-engine")

_VERSIONS_PY = (
    "import importlib.metadata as m\n"
    f"for n in {PACKAGES!r}:\n"
    "    try:\n"
    "        print(n + '=' + m.version(n))\n"
    "    except Exception:\n"
    "        print(n + '=')\n"
)

_CANN_SH = (
    'for f in "${ASCEND_TOOLKIT_HOME:-/usr/local/Ascend/ascend-toolkit/latest}"'
    "/*/ascend_toolkit_install.info; do [ -r \"$f\" ] && cat \"$f\" && break; done"
)

# Rows of `npu-smi info -m` -> "npu:chip:device". A2 has no Phy-ID column and its
# hccn_tool device id is the NPU ID; A3 prints the physical id in column 4. MCU
# rows have "-" as logic id and are skipped.
_DEVICES_AWK = (
    "/NPU ID/ { if ($0 ~ /Phy-ID/) phy = 1; next } "
    "$3 ~ /^[0-9]+$/ { if (phy) print $1\":\"$2\":\"$4; else print $1\":\"$2\":\"$1 }"
)


#: config.json is read up to this size (a model's config is a few KB; the sha256 covers the whole file).
MODEL_CONFIG_MAX_BYTES = 262144

# $1: _SHA256_PY, $2: the model path. Prints `dir=1|0`; for a directory with a readable
# config.json, its size, sha256 (sha256sum, else python3) and, after a `--- config.json` line, its text.
_SHA256_PY = "import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], 'rb').read()).hexdigest())"
_MODEL_SH = (
    'm=$2; if [ -d "$m" ]; then echo dir=1; else echo dir=0; exit 0; fi; '
    'c="$m/config.json"; [ -f "$c" ] && [ -r "$c" ] || exit 0; '
    'echo "size=$(wc -c <"$c")"; '
    's=$(sha256sum "$c" 2>/dev/null) || s=$(python3 -c "$1" "$c" 2>/dev/null); '
    'echo "sha256=${s%% *}"; echo "--- config.json"; '
    f'head -c {MODEL_CONFIG_MAX_BYTES} "$c"'
)


def _in_runtime(container: str | None, argv: list[str]) -> list[str]:
    """Run argv where vLLM will run: on the host, or inside the serving container."""
    return ["docker", "exec", container, *argv] if container else argv


def discovery_batch(container: str | None = None, model_path: str | None = None) -> Batch:
    """The discovery script body for one node; `model_path`: probe the model there too.

    The model is looked up in the serving runtime (inside `container` if given) at
    `${PDWIZARD_SIM_ROOT:-}<model_path>`: real nodes have no PDWIZARD_SIM_ROOT; a simulated
    node's files live under that root. It is expanded by the node's shell, outside docker.
    """
    b = Batch()
    b.add("hostname", "hostname")
    b.add("hostname_i", "hostname", "-I")
    b.add("ip_addr", "ip", "-o", "-4", "addr", "show")
    b.add("npusmi_info", "npu-smi", "info")
    b.add("npusmi_map", "npu-smi", "info", "-m")
    b.add_raw('printf \'%s\\n\' "$pdw_o" >"$PDW_T/map"')
    b.add_raw('pdw_call hccn_conf cat "${PDWIZARD_HCCN_CONF:-/etc/hccn.conf}"')
    # a SIMULATED node (pdwizard.sim) says which loopback address its servers bind; real nodes: empty
    b.add_raw('pdw_call sim_host printf "%s" "${PDWIZARD_SIM_HOST:-}"')
    b.add("packages", *_in_runtime(container, ["python3", "-c", _VERSIONS_PY]))
    b.add("cann", *_in_runtime(container, ["sh", "-c", _CANN_SH]))
    if model_path is not None:
        probe = join_argv(_in_runtime(container, ["sh", "-c", _MODEL_SH, "sh", _SHA256_PY]))
        b.add_raw(f'pdw_call model {probe} "${{PDWIZARD_SIM_ROOT:-}}"{join_argv([model_path])}')
    b.add_raw(f"pdw_devs=$(awk {join_argv([_DEVICES_AWK])} \"$PDW_T/map\")")
    b.add_raw(
        'for pdw_t in $pdw_devs; do pdw_d=${pdw_t##*:}; '
        'pdw_call "ip.$pdw_d" "$HCCN_TOOL" -i "$pdw_d" -ip -g; done'
    )
    b.add_raw(
        'if grep -q "Phy-ID" "$PDW_T/map"; then for pdw_t in $pdw_devs; do '
        'pdw_npu=${pdw_t%%:*}; pdw_r=${pdw_t#*:}; pdw_chip=${pdw_r%%:*}; pdw_d=${pdw_t##*:}; '
        'pdw_call "vnic.$pdw_d" "$HCCN_TOOL" -i "$pdw_d" -vnic -g; '
        'pdw_call "spod.$pdw_d" "$NPU_SMI" info -t spod-info -i "$pdw_npu" -c "$pdw_chip"; '
        "done; fi"
    )
    return b


_IP_ADDR_RE = re.compile(r"^\d+:\s+(\S+?)(?:@\S+)?\s+inet\s+(\d+\.\d+\.\d+\.\d+)/\d+")


def parse_ip_addr(text: str) -> dict[str, list[str]]:
    """`ip -o -4 addr show` -> {nic: [ipv4, ...]}."""
    nics: dict[str, list[str]] = {}
    for line in text.splitlines():
        m = _IP_ADDR_RE.match(line.strip())
        if m:
            nics.setdefault(m.group(1), []).append(m.group(2))
    return nics


def _kv_lines(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def parse_facts(node: str, out: dict[str, ToolOutput],
                model_path: str | None = None) -> tuple[NodeFacts, list[CheckResult]]:
    """Turn one node's discovery output into facts plus any discovery verdicts.
    `model_path`: the path the batch probed (discovery_batch's), None if it probed none."""
    facts = NodeFacts(node=node)
    results: list[CheckResult] = []
    get = lambda key: out.get(key, ToolOutput("", "", -1))  # noqa: E731
    facts.hostname = get("hostname").stdout.strip() or None
    facts.addresses = get("hostname_i").stdout.split()
    facts.nics = parse_ip_addr(get("ip_addr").stdout)
    facts.sim_host = get("sim_host").stdout.strip() or None
    pkgs = _kv_lines(get("packages").stdout)
    facts.packages = {k: v for k, v in pkgs.items() if v}
    facts.cann_version = _kv_lines(get("cann").stdout).get("version") or None
    _read_npus(facts, get("npusmi_info"), get("npusmi_map"), out, results)
    conf = get("hccn_conf")
    if conf.exit_status == 0:
        facts.hccn_conf = parsers.parse_hccn_conf(conf.stdout)
    if model_path is not None:
        facts.model = _read_model(model_path, out.get("model"))
    return facts, results


def _read_model(path: str, out: ToolOutput | None) -> ModelFacts:
    model = ModelFacts(path=path)
    head, sep, text = out.stdout.partition("--- config.json\n") if out else ("", "", "")
    values = _kv_lines(head)
    if "dir" not in values:
        return model  # no probe output: present stays None
    model.present = values["dir"] == "1"
    sha = values.get("sha256", "")
    if not sep or not re.fullmatch(r"[0-9a-f]{64}", sha):
        return model
    model.config_sha256 = sha
    size = values.get("size", "")
    if size.isdigit() and int(size) > MODEL_CONFIG_MAX_BYTES:
        return model
    try:
        config = json.loads(text)
    except ValueError:
        return model
    if isinstance(config, dict):
        model.config = config
    return model


def uses_mla(config: Mapping[str, Any]) -> bool:
    """Whether a model (its config.json) uses MLA, so its KV is replicated across TP ranks.

    Relied on: `kv_lora_rank` set (not null) at the top level or in `text_config`. Every MLA
    model in the HF format carries it (DeepSeek-V2/V3/R1: model_type deepseek_v2/deepseek_v3,
    Kimi-K2: kimi_k2); GQA/MHA models (Qwen, Llama, ...) do not. vLLM additionally checks the
    model_type; without it we would call a new MLA type non-MLA and refuse a valid TP pairing.
    """
    for table in (config, config.get("text_config")):
        if isinstance(table, Mapping) and table.get("kv_lora_rank") is not None:
            return True
    return False


def model_type(config: Mapping[str, Any] | None) -> str | None:
    """config.json's model_type (or text_config's), None if absent."""
    if not config:
        return None
    for table in (config, config.get("text_config")):
        if isinstance(table, Mapping) and isinstance(table.get("model_type"), str):
            return table["model_type"]
    return None


def model_configs(session: Session, facts: Mapping[str, NodeFacts]) -> dict[str, dict[str, Any] | None]:
    """Node -> parsed config.json, for every discovered node that runs an instance (session order)."""
    nodes = dict.fromkeys(i.node for i in session.instances)
    return {n: facts[n].model.config if facts[n].model else None for n in nodes if n in facts}


def model_mla(session: Session, facts: Mapping[str, NodeFacts]) -> bool | None:
    """Whether the session's model uses MLA, as every instance node's config.json says; None
    when a node's config is unknown or the nodes disagree (nothing to rely on)."""
    configs = model_configs(session, facts)
    if not configs or any(c is None for c in configs.values()):
        return None
    seen = {uses_mla(c) for c in configs.values() if c is not None}
    return seen.pop() if len(seen) == 1 else None


def _read_npus(facts: NodeFacts, info_out: ToolOutput, map_out: ToolOutput,
               out: dict[str, ToolOutput], results: list[CheckResult]) -> None:
    try:
        info = parsers.parse_info(info_out.stdout)
    except ParseError as exc:
        results.append(verdict("npu_smi_unreadable", Status.FAIL, check="npu_smi",
                               node=facts.node, value=exc.message, raw=info_out.text))
        return
    facts.driver_version = info.version
    facts.soc = info.soc
    mapping = _safe(parsers.parse_mapping, map_out.stdout) or []
    for npu in _npus_from(info, mapping):
        _read_npu_ips(npu, out)
        facts.npus.append(npu)


def _npus_from(info, mapping) -> list[NpuFacts]:
    """Join the big table (health, HBM, processes) with the chip map (device ids)."""
    rows = {(c.npu_id, c.chip_id): c for c in info.chips}
    pids: dict[tuple[int, int], list[int]] = {}
    for p in info.processes:
        pids.setdefault((p.npu_id, p.chip_id), []).append(p.pid)
    keys = [(m.npu_id, m.chip_id, m.phy_id if m.phy_id is not None else m.npu_id)
            for m in mapping] or [(c.npu_id, c.chip_id, c.phy_id if c.phy_id is not None
                                   else c.npu_id) for c in info.chips]
    npus = []
    for npu_id, chip_id, device in keys:
        row = rows.get((npu_id, chip_id))
        npus.append(NpuFacts(
            device=device, npu_id=npu_id, chip_id=chip_id,
            name=row.name if row else None, health=row.health if row else None,
            hbm_used_mb=row.hbm_used_mb if row else None,
            hbm_total_mb=row.hbm_total_mb if row else None,
            pids=pids.get((npu_id, chip_id), []),
        ))
    return npus


def _read_npu_ips(npu: NpuFacts, out: dict[str, ToolOutput]) -> None:
    ip_out = out.get(f"ip.{npu.device}")
    if ip_out is not None:
        npu.ip, npu.netmask = parsers.parse_ip(ip_out.stdout)
    vnic = out.get(f"vnic.{npu.device}")
    if vnic is not None:
        npu.vnic_ip = parsers.parse_vnic(vnic.stdout).ip
    spod = out.get(f"spod.{npu.device}")
    if spod is not None:
        info = _safe(parsers.parse_spod_info, spod.stdout)
        if info is not None:
            npu.sdid, npu.super_pod_id = info.sdid, info.super_pod_id


def _safe(parse, text: str):
    """Optional outputs (chip map, A3 ids): unreadable means unknown, not a crash.

    The NPU table itself is never read this way: without it there is nothing to check.
    """
    try:
        return parse(text)
    except ParseError:
        return None
