"""Render the exact commands of a deployment from a session and its version profile.

For each instance: the environment (ordered) and the `vllm serve` argv, with the
`--kv-transfer-config` and `--additional-config` JSON objects; for the proxy: its command
line. Everything that goes into a command is checked against the session's version profile
(`pdwizard.profiles`): a flag or JSON key the profile does not list is refused with an
InputError naming it, the session key it came from and the closest valid one.

What pdwizard adds to the guide's commands (ASCEND_RT_VISIBLE_DEVICES, an RPC port base for
instances that share a node, ...) is listed in `comments` (name -> why); keys that are accepted
but have no effect with the chosen connector are kept for fidelity and listed in `notes`.

Pure functions: nothing here touches the network or the file system (`pdwizard.scripts` writes
the scripts).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any

from pdwizard.discovery import model_mla
from pdwizard.errors import InputError
from pdwizard.models import Instance, Session, closest
from pdwizard.profiles import Connector, KeySet, Profile, load_profile
from pdwizard.report import NodeFacts
from pdwizard.session import SessionError

BIND_HOST = "0.0.0.0"  # the guide's --host for every vLLM server
PYTHON = "python"  # the guide starts the proxy with `python`
BUILTIN_PROXY = ("-m", "pdwizard.proxy")
DEFAULT_NPUS_PER_NODE = 16  # for the Mooncake reserved-port range when discovery gave no count

# Flags pdwizard sets from session keys: refused in extra_args, naming the key to use instead.
MANAGED_FLAGS: dict[str, str] = {
    "--host": "nothing (pdwizard binds every vLLM server to 0.0.0.0, as the guide)",
    "--port": "port in [[instances]]",
    "--tensor-parallel-size": "tensor_parallel_size in [[instances]] (default: the number of devices)",
    "--enable-prefix-caching": "enable_prefix_caching in [model]",
    "--no-enable-prefix-caching": "enable_prefix_caching in [model]",
    "--seed": "seed in [model]",
    "--served-model-name": "served_name in [model]",
    "--max-model-len": "max_model_len in [model]",
    "--max-num-batched-tokens": "max_num_batched_tokens in [model]",
    "--trust-remote-code": "trust_remote_code in [model]",
    "--gpu-memory-utilization": "gpu_memory_utilization in [model]",
    "--enable-expert-parallel": "enable_expert_parallel in [model]",
    "--kv-transfer-config": "[stack] connector and kv_port / engine_id in [[instances]]",
    "--additional-config": "additional_config in [model] or [[instances]]",
    "--enforce-eager": "enforce_eager in [[instances]]",
}

_Problem = tuple[str, str, str | None]  # key, message, hint


@dataclass(frozen=True)
class RenderedInstance:
    """One vLLM server's launch: `env` is exported in order, then `argv` runs."""

    index: int                                  # position in session.instances
    role: str
    node: str
    ordinal: int                                # n-th instance of this role on this node (from 0)
    env: list[tuple[str, str]]
    argv: list[str]
    notes: list[str] = field(default_factory=list)       # accepted but without effect, warnings
    comments: dict[str, str] = field(default_factory=dict)  # env var / flag pdwizard added -> why
    kv_transfer_config: dict[str, Any] = field(default_factory=dict)
    additional_config: dict[str, Any] = field(default_factory=dict)
    profile: str = ""
    connector: str = ""

    @property
    def script_name(self) -> str:
        return f"{self.node}-{self.role}-{self.ordinal}.sh"

    @property
    def env_dict(self) -> dict[str, str]:
        return dict(self.env)


@dataclass(frozen=True)
class RenderedProxy:
    """The PD proxy's launch on `node`."""

    node: str
    kind: str
    argv: list[str]
    env: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    comments: dict[str, str] = field(default_factory=dict)
    script_name: str = "proxy.sh"


@dataclass(frozen=True)
class RenderedDeployment:
    """Every instance and the proxy; `notes` is every note once, in order."""

    profile: Profile
    connector: Connector
    instances: list[RenderedInstance]
    proxy: RenderedProxy
    notes: list[str]


# ---------------------------------------------------------------------------------------
# public API


def profile_for(session: Session) -> tuple[Profile, Connector]:
    """The session's version profile and KV connector. InputError if either is unknown."""
    profile = load_profile(session.stack.profile)
    try:
        return profile, profile.connector(session.stack.connector)
    except KeyError:
        offered = list(profile.connectors)
        raise InputError(
            f"profile {profile.name} offers no connector {session.stack.connector!r}"
            + _did_you_mean(session.stack.connector or "", offered),
            key="stack.connector", hint=f"use one of: {', '.join(offered)}",
        ) from None


def needs_ranktable(session: Session) -> bool:
    """True if the session's connector reads DISAGGREGATED_PREFILL_RANK_TABLE_PATH."""
    return profile_for(session)[1].needs_ranktable


def render_instance(
    session: Session,
    index: int,
    *,
    node_ip: str | None = None,
    nic: str | None = None,
    ranktable_path: str | None = None,
    npus_per_node: Mapping[str, int] | None = None,
    model_mla: bool | None = None,
    source: str | None = None,
) -> RenderedInstance:
    """Render `session.instances[index]`.

    `node_ip` / `nic`: what discovery found for the instance's node, used only when the
    session's [[nodes]] entry has no `ip` / `nic`. `ranktable_path`: the path on the node
    (default: session.ranktable_path; a leading `~/` is the node's $HOME, expanded by the
    script). `npus_per_node`: NPU count per node name (Mooncake's reserved port range).
    `model_mla`: whether the model uses MLA, as preflight read it from config.json on the nodes;
    None (unknown) adds the connector's tp_differs note, otherwise preflight has checked the pairing.
    Raises SessionError (an InputError) listing every problem.
    """
    if not 0 <= index < len(session.instances):
        raise IndexError(f"no instance {index}: the session has {len(session.instances)}")
    plan = _plan(session, npus_per_node, model_mla)
    problems = list(plan.problems)
    nics = {session.instances[index].node: nic} if nic else {}
    ips = {session.instances[index].node: node_ip} if node_ip else {}
    rendered = _instance(session, plan, index, ips, nics, ranktable_path, problems)
    _raise(problems, source)
    assert rendered is not None
    return rendered


def render_proxy(
    session: Session,
    *,
    node_ips: Mapping[str, str] | None = None,
    source: str | None = None,
) -> RenderedProxy:
    """Render the proxy's command line (kind upstream: the guide's example script; builtin:
    `python -m pdwizard.proxy`, same flags). `node_ips`: discovered IPs for nodes without ip."""
    problems: list[_Problem] = []
    profile, _ = _profile_or_problem(session, problems)
    proxy = _proxy(session, profile, node_ips or {}, problems) if profile else None
    _raise(problems, source)
    assert proxy is not None
    return proxy


def render_all(
    session: Session,
    *,
    node_ips: Mapping[str, str] | None = None,
    nics: Mapping[str, str] | None = None,
    ranktable_path: str | None = None,
    npus_per_node: Mapping[str, int] | None = None,
    model_mla: bool | None = None,
    source: str | None = None,
) -> RenderedDeployment:
    """Every instance and the proxy, or one SessionError listing every problem of them all.
    `node_ips` / `nics`: discovered values by node name, for nodes without ip / nic; `model_mla`:
    see render_instance."""
    plan = _plan(session, npus_per_node, model_mla)
    problems = list(plan.problems)
    instances = [
        _instance(session, plan, i, node_ips or {}, nics or {}, ranktable_path, problems)
        for i in range(len(session.instances))
    ] if plan.profile else []
    proxy = _proxy(session, plan.profile, node_ips or {}, problems) if plan.profile else None
    _raise(problems, source)
    assert plan.profile and plan.connector and proxy is not None
    notes: dict[str, None] = {}
    for r in instances:
        notes.update(dict.fromkeys(r.notes))
    notes.update(dict.fromkeys(proxy.notes))
    return RenderedDeployment(plan.profile, plan.connector, [r for r in instances if r], proxy, list(notes))


def render_problems(session: Session, *, source: str | None = None) -> list[InputError]:
    """Every render problem that needs no discovery (a node's missing nic is not one): for a
    fail-fast check right after the session loads. Empty if the session renders."""
    placeholder = {n.name: "discovered" for n in session.nodes if n.nic is None}
    try:
        render_all(session, nics=placeholder, source=source)
    except SessionError as exc:
        return exc.problems
    return []


def discovery_inputs(session: Session, facts: Mapping[str, NodeFacts]) -> dict[str, Any]:
    """render_all / write_scripts keyword arguments from discovery: `nics` (the interface that
    holds each node's IP, for nodes whose session entry has no nic), `npus_per_node`, and
    `model_mla` (from the probed config.json, None when unknown)."""
    nics: dict[str, str] = {}
    for node in session.nodes:
        f = facts.get(node.name)
        if f is None or node.nic is not None:
            continue
        nic = next((name for name, addrs in f.nics.items() if node.effective_ip in addrs), None)
        if nic is not None:
            nics[node.name] = nic
    npus = {name: len(f.npus) for name, f in facts.items() if f.npus}
    return {"nics": nics, "npus_per_node": npus, "model_mla": model_mla(session, facts)}


# ---------------------------------------------------------------------------------------
# plan: what depends on more than one instance


@dataclass
class _Plan:
    profile: Profile | None
    connector: Connector | None
    ordinal: dict[int, int] = field(default_factory=dict)
    kv_port: dict[int, int | str] = field(default_factory=dict)
    engine_id: dict[int, str] = field(default_factory=dict)
    rpc_port: dict[int, int] = field(default_factory=dict)
    problems: list[_Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _profile_or_problem(session: Session, problems: list[_Problem]) -> tuple[Profile | None, Connector | None]:
    try:
        return profile_for(session)
    except InputError as exc:
        problems.append((exc.key or "stack", exc.message, exc.hint))
        return None, None


def _plan(session: Session, npus_per_node: Mapping[str, int] | None, model_mla: bool | None = None) -> _Plan:
    problems: list[_Problem] = []
    profile, c = _profile_or_problem(session, problems)
    plan = _Plan(profile, c, problems=problems)
    if profile is None or c is None:
        return plan
    insts = session.instances
    by_node: dict[str, list[int]] = {}
    seen: dict[tuple[str, str], int] = {}
    for i, inst in enumerate(insts):
        plan.ordinal[i] = seen.get((inst.node, inst.role), 0)
        seen[(inst.node, inst.role)] = plan.ordinal[i] + 1
        by_node.setdefault(inst.node, []).append(i)

    # kv_port and engine_id
    for node, idx in by_node.items():
        for k, i in enumerate(idx):
            inst = insts[i]
            if inst.kv_port is not None:
                plan.kv_port[i] = inst.kv_port
            elif "kv_port" in c.defaults:
                plan.kv_port[i] = c.defaults["kv_port"]
            elif c.kv_port_base is not None:
                plan.kv_port[i] = c.kv_port_base + c.kv_port_step * k
    for i, inst in enumerate(insts):
        if inst.engine_id is not None:
            plan.engine_id[i] = inst.engine_id
        elif "engine_id" in c.defaults:
            plan.engine_id[i] = str(c.defaults["engine_id"]).replace("{index}", str(i))

    # host ports already taken on each node: vLLM HTTP ports and the proxy
    taken: dict[str, dict[int, tuple[str, str]]] = {}  # node -> port -> (what, session key)
    for i, inst in enumerate(insts):
        taken.setdefault(inst.node, {})[inst.port] = (f"the --port of instances[{i}] ({inst.label})",
                                                      f"instances[{i}].port")
    if session.instances and session.prefills():
        taken.setdefault(session.proxy_node().name, {})[session.proxy.port] = ("the proxy's port", "proxy.port")

    if c.kv_port_is_port:
        _check_kv_ports(session, plan, c, taken, npus_per_node or {})
    if c.distinct_engine_ids:
        first: dict[str, int] = {}
        for i in range(len(insts)):
            eid = plan.engine_id.get(i)
            if eid is None:
                continue
            if eid in first:
                j = first[eid]
                problems.append((
                    f"instances[{i}].engine_id",
                    f"engine_id {eid!r} is also the engine_id of instances[{j}] ({insts[j].label}): "
                    f"{c.kv_connector} needs a distinct engine_id per instance (the decode side asserts "
                    "'Conflict engine id' when the prefill's equals its own)",
                    "give every instance its own engine_id, or remove engine_id to let pdwizard number them",
                ))
            else:
                first[eid] = i
    if c.rpc_port_env is not None and c.rpc_port_base is not None:
        for node, idx in by_node.items():
            for k, i in enumerate(idx):
                base = c.rpc_port_base + c.rpc_port_step * k
                if len(idx) > 1:  # alone on its node, the instance keeps the default base (not exported)
                    plan.rpc_port[i] = base
                span = range(base, base + insts[i].tensor_parallel_size)
                setting = f"{c.rpc_port_env} {base}" if len(idx) > 1 else f"the default {c.rpc_port_env} {base}"
                for port, (what, owner) in taken.get(node, {}).items():
                    if port in span:
                        problems.append((
                            owner,
                            f"{setting} gives instances[{i}] the RPC ports {span.start}..{span.stop - 1} "
                            f"on node {node}, which include {what} ({port})",
                            "move that port out of the range (pdwizard spaces the RPC bases of co-located "
                            f"instances {c.rpc_port_step} apart from {c.rpc_port_base})",
                        ))

    # tensor-parallel rules between the roles
    ptp = {i: insts[i].tensor_parallel_size for i in range(len(insts)) if insts[i].role == "prefill"}
    dtp = {i: insts[i].tensor_parallel_size for i in range(len(insts)) if insts[i].role == "decode"}
    if ptp and dtp:
        if c.prefill_tp_ge_decode_tp:
            low = min(ptp.values())
            for i, tp in dtp.items():
                if tp > low:
                    problems.append((
                        f"instances[{i}].tensor_parallel_size",
                        f"decode TP {tp} is larger than the prefill TP {low}: {c.kv_connector} requires "
                        "prefill tp_size >= decode tp_size (ValueError at start-up)",
                        "give the decode instance at most as many devices as the smallest prefill instance",
                    ))
        if c.extra_config_keys:
            for role, tps in (("prefill", ptp), ("decode", dtp)):
                if len(set(tps.values())) > 1:
                    i = next(i for i, tp in tps.items() if tp != next(iter(tps.values())))
                    problems.append((
                        f"instances[{i}].tensor_parallel_size",
                        f"the {role} instances have different TP sizes ({', '.join(map(str, sorted(set(tps.values()))))}): "
                        f"{c.kv_connector}'s kv_connector_extra_config describes one {role} tp_size for all instances",
                        f"give every {role} instance the same number of devices",
                    ))
        # the model type decides whether the sizes may differ: with it known, preflight checks the
        # pairing (pdwizard.preflight.check_tp_pairing); unknown, the connector's note warns
        if set(ptp.values()) != set(dtp.values()) and "tp_differs" in c.notes and model_mla is None:
            plan.notes.append(c.notes["tp_differs"])
        if any(tp > 1 for tp in ptp.values()) and "prefill_tp_gt_1" in c.notes:
            plan.notes.append(c.notes["prefill_tp_gt_1"])
    return plan


def _check_kv_ports(session: Session, plan: _Plan, c: Connector, taken: dict[str, dict[int, tuple[str, str]]],
                    npus_per_node: Mapping[str, int]) -> None:
    insts = session.instances
    spans: dict[str, list[tuple[range, int]]] = {}
    for i, inst in enumerate(insts):
        key = f"instances[{i}].kv_port"
        value = plan.kv_port.get(i)
        if value is None:
            continue
        start = int(value)
        span = range(start, start + inst.tensor_parallel_size)
        hint = "set kv_port in this [[instances]] entry (or remove it to let pdwizard pick one)"
        if span.stop - 1 > 65535:
            plan.problems.append((key, f"kv_port {start} + {inst.tensor_parallel_size} workers runs past port 65535", hint))
            continue
        if c.kv_port_reserved_start is not None and c.kv_port_reserved_per_npu is not None:
            npus = npus_per_node.get(inst.node)
            lo = c.kv_port_reserved_start
            hi = lo + c.kv_port_reserved_per_npu * (npus or DEFAULT_NPUS_PER_NODE)
            if span.start < hi and lo < span.stop:
                assumed = f"{npus} NPUs" if npus else f"{DEFAULT_NPUS_PER_NODE} NPUs assumed"
                plan.problems.append((
                    key,
                    f"kv_port range {span.start}..{span.stop - 1} overlaps {lo}..{hi - 1}, where the Ascend "
                    f"direct transport picks random ports ({assumed} on {inst.node}): intermittent "
                    "'Address already in use'",
                    f"use kv_port >= {hi} (e.g. {max(hi, c.kv_port_base or hi)}), or remove kv_port",
                ))
        for port, (what, _) in taken.get(inst.node, {}).items():
            if port in span:
                plan.problems.append((key, f"kv_port range {span.start}..{span.stop - 1} includes {what} ({port})", hint))
        for other, j in spans.get(inst.node, []):
            if span.start < other.stop and other.start < span.stop:
                plan.problems.append((
                    key,
                    f"kv_port range {span.start}..{span.stop - 1} overlaps instances[{j}]'s "
                    f"{other.start}..{other.stop - 1} on node {inst.node} (each worker listens on kv_port + its TP rank)",
                    hint,
                ))
        spans.setdefault(inst.node, []).append((span, i))


# ---------------------------------------------------------------------------------------
# one instance


def _instance(
    session: Session,
    plan: _Plan,
    index: int,
    node_ips: Mapping[str, str],
    nics: Mapping[str, str],
    ranktable_path: str | None,
    problems: list[_Problem],
) -> RenderedInstance | None:
    profile, c = plan.profile, plan.connector
    if profile is None or c is None:
        return None
    inst = session.instances[index]
    key = f"instances[{index}]"
    node_index = next(n for n, node in enumerate(session.nodes) if node.name == inst.node)
    node = session.nodes[node_index]
    notes: list[str] = list(plan.notes)
    comments: dict[str, str] = {}

    # ---- environment
    ip = node.ip or node_ips.get(node.name) or node.effective_ip
    nic = node.nic or nics.get(node.name)
    if nic is None:
        problems.append((
            f"nodes[{node_index}].nic",
            f"the network card of node {node.name} is unknown (GLOO/TP/HCCL_SOCKET_IFNAME need it)",
            f'set nic = "eth0" (the name `ip -br addr` shows for {ip}) in this [[nodes]] entry, or run discovery',
        ))
        nic = ""
    if len(session.nodes) > 1 and _unroutable(ip):
        problems.append((
            f"nodes[{node_index}].ip",
            f"HCCL_IF_IP would be {ip} for node {node.name}: other nodes cannot reach a loopback or "
            "unspecified address",
            f"set ip to {node.name}'s routable IPv4 address",
        ))
    env: list[tuple[str, str]] = [
        ("HCCL_IF_IP", ip),
        ("GLOO_SOCKET_IFNAME", nic),
        ("TP_SOCKET_IFNAME", nic),
        ("HCCL_SOCKET_IFNAME", nic),
    ]
    if c.needs_ranktable:
        env.append(("DISAGGREGATED_PREFILL_RANK_TABLE_PATH", ranktable_path or session.ranktable_path))
    env.extend(profile.env)
    devices = ",".join(map(str, inst.devices))
    env.append(("ASCEND_RT_VISIBLE_DEVICES", devices))
    comments["ASCEND_RT_VISIBLE_DEVICES"] = _visible_devices_why(inst, c)
    for name, template in c.env:
        env.append((name, devices if template == "{devices}" else template))
        comments[name] = c.env_why[name]
    if index in plan.rpc_port and c.rpc_port_env:
        port = plan.rpc_port[index]
        others = len(session.instances_on(inst.node))
        env.append((c.rpc_port_env, str(port)))
        comments[c.rpc_port_env] = (
            f"{others} instances share node {inst.node}: each TP worker binds base + its TP rank, so every "
            f"instance on the node needs its own base (this one: {port}..{port + inst.tensor_parallel_size - 1}; "
            f"default {c.rpc_port_base}) (llmdatadist-connector.md §5). The guide runs one instance per node. "
            "(The v0.10.1rc1 README's VLLM_LLMDD_RPC_PORT is a wrong name that is ignored.)"
        )

    # ---- the JSON blobs
    kv = _kv_transfer_config(session, plan, index)
    notes.extend(_check_keys(kv, profile.kv_keys(c), "--kv-transfer-config", f"{key}.kv_transfer_config",
                             profile.name, problems))
    additional = _additional_config(session, index, profile, problems, notes)
    _cross_checks(session, index, additional, profile, problems)

    # ---- argv, in the guide's order
    m = session.model
    flags: list[tuple[str, str | None, str]] = [
        ("--host", BIND_HOST, "model"),
        ("--port", str(inst.port), f"{key}.port"),
        ("--tensor-parallel-size", str(inst.tensor_parallel_size), f"{key}.tensor_parallel_size"),
        ("--enable-prefix-caching" if m.enable_prefix_caching else "--no-enable-prefix-caching", None,
         "model.enable_prefix_caching"),
        ("--seed", str(m.seed), "model.seed"),
        ("--served-model-name", m.served_model_name, "model.served_name"),
        ("--max-model-len", str(m.max_model_len), "model.max_model_len"),
        ("--max-num-batched-tokens", str(m.max_num_batched_tokens), "model.max_num_batched_tokens"),
    ]
    if m.trust_remote_code:
        flags.append(("--trust-remote-code", None, "model.trust_remote_code"))
    flags.append(("--gpu-memory-utilization", repr(float(m.gpu_memory_utilization)), "model.gpu_memory_utilization"))
    if m.enable_expert_parallel:
        flags.append(("--enable-expert-parallel", None, "model.enable_expert_parallel"))
    flags.append(("--kv-transfer-config", _json(kv), "stack.connector"))
    flags.append(("--additional-config", _json(additional), "model.additional_config"))
    if inst.eager:
        flags.append(("--enforce-eager", None, f"{key}.enforce_eager"))
    elif inst.role == "decode" and "decode_not_eager" in c.notes:
        notes.append(c.notes["decode_not_eager"])

    argv = [*profile.serve_command, m.path]
    for flag, value, source_key in flags:
        if flag not in profile.serve_flags:
            problems.append((
                source_key,
                f"profile {profile.name} has no `vllm serve` flag {flag}",
                "change this key, or pick a profile whose vLLM accepts the flag",
            ))
        argv.append(flag)
        if value is not None:
            argv.append(value)
    argv.extend(_extra_args(session, index, profile, problems))

    return RenderedInstance(
        index=index, role=inst.role, node=inst.node, ordinal=plan.ordinal[index], env=env, argv=argv,
        notes=list(dict.fromkeys(notes)), comments=comments, kv_transfer_config=kv,
        additional_config=additional, profile=profile.name, connector=c.id,
    )


def _visible_devices_why(inst: Instance, c: Connector) -> str:
    devs = ",".join(map(str, inst.devices))
    default = ",".join(map(str, range(inst.tensor_parallel_size)))
    why = (f"runs this instance on NPUs {devs}: vLLM puts TP rank i on the i-th visible NPU, "
           f"and without this variable it would use NPUs {default}.")
    if c.needs_ranktable:
        why += (" The connector also keeps only the ranktable entries whose device_id is listed here "
                "(llmdatadist-connector.md §4).")
    if devs != default:
        why += " The guide never exports it, although its decoders run on NPUs 6,7."
    else:
        why += " The guide omits it; it only works there because these are the default NPUs."
    return why


def _kv_transfer_config(session: Session, plan: _Plan, index: int) -> dict[str, Any]:
    c = plan.connector
    assert c is not None
    inst = session.instances[index]
    values: dict[str, Any] = {k: v for k, v in c.defaults.items() if k not in ("kv_port", "engine_id")}
    values["kv_connector"] = c.kv_connector
    values["kv_role"] = "kv_producer" if inst.role == "prefill" else "kv_consumer"
    if index in plan.kv_port:
        values["kv_port"] = plan.kv_port[index]
    if index in plan.engine_id:
        values["engine_id"] = plan.engine_id[index]
    values["kv_connector_module_path"] = c.module_path
    if c.extra_config_keys:
        tps = {r: [i.tensor_parallel_size for i in session.instances if i.role == r] for r in ("prefill", "decode")}
        # dp_size 1: every pdwizard instance is one vLLM server without data parallelism
        values["kv_connector_extra_config"] = {
            role: {"tp_size": max(tps[role], default=1), "dp_size": 1} for role in ("prefill", "decode")
        }
    ordered = {k: values[k] for k in c.json_order if k in values}
    ordered.update({k: v for k, v in values.items() if k not in ordered})
    return ordered


def _additional_config(session: Session, index: int, profile: Profile, problems: list[_Problem],
                       notes: list[str]) -> dict[str, Any]:
    inst = session.instances[index]
    keyset = profile.additional_config
    base = session.model.additional_config
    notes.extend(_check_keys(base, keyset, "--additional-config", "model.additional_config", profile.name, problems))
    merged = base
    if inst.additional_config is not None:
        notes.extend(_check_keys(inst.additional_config, keyset, "--additional-config",
                                 f"instances[{index}].additional_config", profile.name, problems))
        merged = _merge(base, inst.additional_config)
    for table, gate in keyset.gates.items():
        sub = merged.get(table)
        if isinstance(sub, dict) and sub.get(gate) is not True:
            others = [k for k in sub if k != gate]
            if others:
                notes.append(f"--additional-config {table}: {gate} is not true, so its other keys "
                             f"({', '.join(others)}) have no effect")
    return merged


def additional_config_of(session: Session, index: int) -> dict[str, Any]:
    """The --additional-config of `session.instances[index]`: [model]'s with the instance's merged over it."""
    return _merge(session.model.additional_config, session.instances[index].additional_config or {})


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Tables merged key by key; any other value in `override` replaces the base's."""
    out = json.loads(json.dumps(base))
    for k, v in override.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = json.loads(json.dumps(v))
    return out


def _check_keys(data: Mapping[str, Any], keyset: KeySet, flag: str, where: str, profile: str,
                problems: list[_Problem]) -> list[str]:
    """Refuse keys `keyset` does not accept; return notes for the inert ones."""
    notes: list[str] = []

    def walk(d: Mapping[str, Any], path: str) -> None:
        for k, v in d.items():
            p = f"{path}.{k}" if path else k
            reason = keyset.inert_reason(p)
            if reason is not None:
                notes.append(f"{flag} {p} has no effect: {reason}")
                continue
            if p not in keyset.keys:
                siblings = keyset.children(path)
                best = closest(k, siblings)
                problems.append((
                    f"{where}.{p}",
                    f"unknown {flag} key {p!r} for {profile}" + (f" (did you mean {best!r}?)" if best else ""),
                    f"keys accepted {f'in {path}' if path else 'at the top level'}: {', '.join(siblings)}"
                    if siblings else f"{path} takes no keys in {profile}",
                ))
            elif keyset.is_table(p):
                if not isinstance(v, Mapping):
                    problems.append((f"{where}.{p}", f"{flag} key {p!r} is a table, got {_kind(v)}",
                                     f"write it as a table: {p} = {{ ... }}"))
                elif f"{p}.*" not in keyset.keys:  # p.*: any content
                    walk(v, p)
            elif isinstance(v, Mapping):
                problems.append((f"{where}.{p}", f"{flag} key {p!r} takes a single value, not a table",
                                 "give it a string, number or true/false"))

    walk(data, "")
    return notes


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "true/false"
    if isinstance(v, (int, float)):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "an array"
    return type(v).__name__


def _cross_checks(session: Session, index: int, additional: Mapping[str, Any], profile: Profile,
                  problems: list[_Problem]) -> None:
    """Rules vllm-ascend enforces at start-up (additional-config-keys.md), caught before launch."""
    inst = session.instances[index]
    for path, switches in profile.additional_config.needs.items():
        if not _get(additional, path):
            continue
        off = next((sw for sw in switches if not _get(additional, sw)), None)
        if off is None:
            continue
        override = session.instances[index].additional_config or {}
        where = f"instances[{index}].additional_config" if _get(override, path) is not None else "model.additional_config"
        problems.append((
            f"{where}.{path}",
            f"--additional-config {path} is set while {off} is not true: vllm-ascend {profile.vllm_ascend} "
            "refuses to start (RuntimeError in its config checks, additional-config-keys.md)",
            f"remove {path}, or set {off} = true",
        ))
    torchair = additional.get("torchair_graph_config")
    if inst.eager and isinstance(torchair, Mapping) and torchair.get("enabled") is True:
        problems.append((
            f"instances[{index}].enforce_eager",
            "--enforce-eager with torchair_graph_config.enabled = true: vllm-ascend refuses to start "
            "(\"Can't enable graph mode and eager mode at the same time\")",
            "set enforce_eager = false on this instance, or disable torchair_graph_config",
        ))
    sched = additional.get("ascend_scheduler_config")
    if isinstance(sched, Mapping) and sched.get("enabled") is True and sched.get("enable_chunked_prefill") is not True:
        tokens = sched.get("max_num_batched_tokens", session.model.max_num_batched_tokens)
        length = sched.get("max_model_len", session.model.max_model_len)
        if isinstance(tokens, int) and isinstance(length, int) and tokens < length:
            problems.append((
                "model.max_num_batched_tokens",
                f"max_num_batched_tokens {tokens} < max_model_len {length} with the Ascend scheduler on and "
                "chunked prefill off: vllm-ascend raises ValueError at start-up",
                f"set max_num_batched_tokens to at least {length} (the guide uses 6144 for both)",
            ))


def _get(data: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path of a nested table, or None."""
    for part in path.split("."):
        if not isinstance(data, Mapping):
            return None
        data = data.get(part)
    return data


def _extra_args(session: Session, index: int, profile: Profile, problems: list[_Problem]) -> list[str]:
    model_entries = _parse_extra(session.model.extra_args, "model.extra_args", profile, problems)
    inst_entries = _parse_extra(session.instances[index].extra_args, f"instances[{index}].extra_args",
                                profile, problems)
    overridden = {flag for flag, _ in inst_entries}
    out: list[str] = []
    for flag, tokens in [*((f, t) for f, t in model_entries if f not in overridden), *inst_entries]:
        out.extend(tokens)
    return out


def _parse_extra(args: Sequence[str], where: str, profile: Profile,
                 problems: list[_Problem]) -> list[tuple[str, list[str]]]:
    """extra_args as (flag, tokens) entries; every problem names extra_args[i]."""
    entries: list[tuple[str, list[str]]] = []
    seen: dict[str, int] = {}
    valid = list(profile.serve_flags)
    i = 0
    while i < len(args):
        tok, key = args[i], f"{where}[{i}]"
        if not tok.startswith("--"):
            problems.append((
                key, f"{tok!r} is not a flag: extra_args holds `vllm serve` flags (--name), each followed by its value",
                'write e.g. extra_args = ["--max-num-seqs", "16"]',
            ))
            i += 1
            continue
        name, eq, value = tok.partition("=")
        kind = profile.serve_flags.get(name)
        takes_next = not eq and i + 1 < len(args) and not args[i + 1].startswith("--")
        if kind is None:
            if name.startswith(("--additional-config.", "--kv-transfer-config.")):
                problems.append((key, f"{name}: the dotted form is not accepted",
                                 "set the key in additional_config ([model] or [[instances]]); "
                                 "kv-transfer-config keys come from [stack] connector and [[instances]]"))
            else:
                best = closest(name, valid)
                problems.append((
                    key, f"unknown flag {name!r} for {profile.name}" + (f" (did you mean {best!r}?)" if best else ""),
                    f"flags {profile.name} accepts: {', '.join(valid)}",
                ))
            i += 2 if takes_next else 1
            continue
        if name in MANAGED_FLAGS:
            problems.append((key, f"{name} is set by pdwizard", f"set {MANAGED_FLAGS[name]} instead"))
            i += 2 if kind != "switch" and takes_next else 1
            continue
        if name in seen:
            problems.append((key, f"{name} is given twice in {where} (also at [{seen[name]}])", "keep one"))
        seen[name] = i
        if kind == "switch":
            if eq:
                problems.append((key, f"{name} takes no value", f"write just {name!r}"))
            entries.append((name, [name]))
            i += 1
            continue
        if eq:
            tokens, i = [tok], i + 1
        elif i + 1 < len(args):
            value, tokens, i = args[i + 1], [tok, args[i + 1]], i + 2
        else:
            problems.append((key, f"{name} needs a value", f'add it as the next element: "{name}", "VALUE"'))
            i += 1
            continue
        if kind == "json":
            try:
                ok = isinstance(json.loads(value), dict)
            except ValueError:
                ok = False
            if not ok:
                problems.append((key, f"{name} takes a JSON object", "write it as strict JSON: '{\"key\": true}'"))
        entries.append((name, tokens))
    return entries


# ---------------------------------------------------------------------------------------
# proxy


def _proxy(session: Session, profile: Profile, node_ips: Mapping[str, str], problems: list[_Problem]) -> RenderedProxy:
    def ip(name: str) -> str:
        node = session.node(name)
        return node.ip or node_ips.get(name) or node.effective_ip

    node = session.proxy_node()
    p = session.proxy
    argv = [PYTHON, p.script] if p.kind == "upstream" else [PYTHON, *BUILTIN_PROXY]
    pre, dec = session.prefills(), session.decodes()
    flags = [
        ("--host", [ip(node.name)]),
        ("--port", [str(p.port)]),
        ("--prefiller-hosts", [ip(i.node) for i in pre]),
        ("--prefiller-ports", [str(i.port) for i in pre]),
        ("--decoder-hosts", [ip(i.node) for i in dec]),
        ("--decoder-ports", [str(i.port) for i in dec]),
    ]
    for flag, values in flags:
        kind = profile.proxy_flags.get(flag)
        if kind is None or (kind == "value" and len(values) != 1):
            problems.append(("proxy.kind", f"the {profile.name} proxy has no flag {flag} for {len(values)} value(s)",
                             "pick another profile"))
        argv.append(flag)
        argv.extend(values)
    comments = {"--prefiller-ports": (
        "the guide writes --prefiller-port, which argparse accepts only as an abbreviation of "
        "--prefiller-ports (pd-proxy-protocol.md §2): pdwizard writes the full name")}
    notes = []
    if p.kind == "upstream" and len(dec) > 1:
        notes.append("the upstream proxy breaks ties by index: requests sent one at a time all go to the first "
                     "prefiller and decoder; load spreads only when requests overlap (pd-proxy-protocol.md §8)")
    return RenderedProxy(node=node.name, kind=p.kind, argv=argv, notes=notes, comments=comments)


# ---------------------------------------------------------------------------------------
# helpers


def _unroutable(ip: str) -> bool:
    try:
        addr = IPv4Address(ip)
    except ValueError:
        return False  # not IPv4 (a discovered value): nothing to say here
    return addr.is_loopback or addr.is_unspecified


def _json(obj: Mapping[str, Any]) -> str:
    """Strict JSON (vLLM json.loads it): no NaN, one line."""
    return json.dumps(obj, allow_nan=False)


def _did_you_mean(word: str, choices: Sequence[str]) -> str:
    best = closest(word, list(choices))
    return f" (did you mean {best!r}?)" if best else ""


def _raise(problems: list[_Problem], source: str | None) -> None:
    if not problems:
        return
    unique = list(dict.fromkeys(problems))
    raise SessionError([InputError(m, source=source, key=k, hint=h) for k, m, h in unique])


__all__ = [
    "MANAGED_FLAGS",
    "RenderedDeployment",
    "RenderedInstance",
    "RenderedProxy",
    "additional_config_of",
    "discovery_inputs",
    "needs_ranktable",
    "profile_for",
    "render_all",
    "render_instance",
    "render_problems",
    "render_proxy",
]
