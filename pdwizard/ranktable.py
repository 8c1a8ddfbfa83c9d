"""The global ranktable for LLMDataDistCMgrConnector, built centrally from discovery.

vllm-ascend's example generator (`gen_ranktable.sh` + `gen_ranktable.py`) must run on
every node at once under torchrun, queries the tools itself and hangs or spins on
most mistakes. pdwizard already holds everything it asks the tools for (discovery's
`NodeFacts`), so the ranktable is computed here, once, with no torchrun and nothing run
on the nodes, and pushed to them (`pdwizard.ranktable_upload`).

The output must EQUAL what the generator writes for the same nodes and device
choices (reference: vllm-ascend commit b8796b06c8, see
`shared/reference/ranktable-spec.md`, cited below as "spec §N"): the same keys in the
same order, every value a JSON string, the same `cluster_id` and `server_count` rules
and the same bytes (`ranktable_json`). Its quirks are reproduced and commented where
they occur; where the generator would fail or hang, pdwizard raises `InputError`
naming the node / instance and key instead.

Two layers:

- `generate_ranktable(nodes, soc=, prefill_device_cnt=, decode_device_cnt=)`: a pure
  re-implementation of what the generator's ranks compute together, over plain
  per-node inputs (what each rank would read from its tools). The reference examples'
  `inputs.json` map onto it directly.
- `generator_run(session, facts)` / `build_ranktable(session, facts)`: the session's
  nodes that run an instance play `--ips` (prefill nodes first, spec §4 "Roles come
  only from position"), each node's instances' devices its `--local-device-ids`, and
  the device addresses come from discovery (`-ip` on A2, `-vnic` on A3).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pdwizard.errors import InputError
from pdwizard.models import Instance, Session
from pdwizard.report import NodeFacts

#: `version` written by the generator (spec §2.8).
RANKTABLE_VERSION = "1.2"
#: `status` written by the generator (spec §2.8).
RANKTABLE_STATUS = "completed"
#: The reference generator (spec §0), quoted in messages.
REFERENCE = "vllm-ascend gen_ranktable.py at b8796b06c8"


@dataclass(frozen=True)
class SpodInfo:
    """`npu-smi info -t spod-info -i CARD -c CHIP` on A3, as printed (strings, spec §2.4)."""

    super_pod_id: str
    super_device_id: str  # the `SDID` line


@dataclass(frozen=True)
class GenNode:
    """What one generator rank (one node) reads from its own arguments and tools.

    Field names follow the generator's inputs so `inputs.json` maps onto them:
    `local_host` is `--local-host`, `local_device_ids` is `--local-device-ids` (a
    string exactly as typed, a sequence of ints, or None / "" for "not given"),
    `total_count` and `chip_count` are `npu-smi info -l`'s `Total Count` and the
    FIRST card's `Chip Count`, `device_ips` is `hccn_tool -i ID -ip -g` (A2) or
    `-vnic -g` (A3) per id, and `spod` is spod-info per (card, chip) (A3 only).
    """

    local_host: str
    device_ips: Mapping[int, str]
    local_device_ids: str | Sequence[int] | None = None
    total_count: int | None = None
    chip_count: int = 1
    spod: Mapping[tuple[int, int], SpodInfo] = field(default_factory=dict)


def parse_local_device_ids(value: str, *, key: str = "local_device_ids") -> list[int]:
    """`--local-device-ids` exactly as the generator reads it (spec §2.3).

    Split on "," and `int()` each piece, so " 1", "07" (-> 7) and even "1_0" (-> 10)
    are accepted, and the order is kept as typed, with no sorting, de-duplication or
    range check (quirk 5). An empty or non-integer piece is the generator's exit 1.
    """
    try:
        return [int(piece) for piece in value.split(",")]
    except ValueError:
        raise InputError(
            f"--local-device-ids must be a comma-separated list of integers. Received: {value!r}",
            key=key,
            hint="write the device ids separated by commas and nothing else, e.g. 0,1",
        ) from None


def _device_ids(node: GenNode, index: int) -> list[int]:
    """The ids one rank contributes, in its order (spec §2.3)."""
    ids = node.local_device_ids
    # The generator tests the option for truth: "" (or a missing option) means the
    # default list; the .sh never passes an empty value at all (spec §1.7).
    if ids:
        if isinstance(ids, str):
            return parse_local_device_ids(ids, key=f"nodes[{index}].local_device_ids")
        return [int(i) for i in ids]
    if node.total_count is None:
        raise InputError(
            f"node {node.local_host}: no --local-device-ids and no npu-smi Total Count",
            key=f"nodes[{index}].total_count",
            hint="give the device ids, or the card count npu-smi info -l reports",
        )
    # Quirk 6: 0 .. Total Count x (first card's Chip Count) - 1, never the real NPU IDs.
    return list(range(node.total_count * node.chip_count))


def _record(node: GenNode, index: int, device: int, a3: bool) -> dict[str, str]:
    """One device's record before `cluster_id` (spec §2.4): keys in the generator's order."""
    ip = node.device_ips.get(device)
    if ip is None:
        # Upstream: an empty tool output, then a bare IndexError on that node and a hang
        # on the others (quirk 11).
        query = "-vnic -g" if a3 else "-ip -g"
        raise InputError(
            f"node {node.local_host}: NPU {device} has no device address "
            f"(hccn_tool -i {device} {query} gave none)",
            key=f"nodes[{index}].device_ips",
            hint=f"pick devices that exist on {node.local_host} and have an address "
                 f"(configure it with hccn_tool -i {device} {'-vnic -s' if a3 else '-ip -s'})",
        )
    record = {"server_id": node.local_host, "device_id": str(device), "device_ip": ip}
    if a3:
        # Quirk 7: spod-info's -i is the CARD and -c the chip, both derived from the id by
        # the first card's chip count, not looked up in `npu-smi info -m` (spec §2.4).
        card, chip = divmod(device, node.chip_count)
        spod = node.spod.get((card, chip))
        if spod is None:
            raise InputError(
                f"node {node.local_host}: no super-pod identity for NPU {device} "
                f"(npu-smi info -t spod-info -i {card} -c {chip} gave none)",
                key=f"nodes[{index}].spod",
                hint="on A3 every device needs an SDID and a Super Pod ID; check npu-smi on the node",
            )
        record["super_pod_id"] = spod.super_pod_id
        record["super_device_id"] = spod.super_device_id
    return record


def generate_ranktable(
    nodes: Sequence[GenNode],
    *,
    soc: str,
    prefill_device_cnt: int,
    decode_device_cnt: int,
) -> dict[str, object]:
    """The ranktable every rank of the generator writes, for `nodes` in `--ips` order.

    `soc` "A3" takes the A3 path; anything else the A2 path, as upstream (spec §2).
    Raises InputError where the generator would fail, hang or write nonsense.
    """
    if prefill_device_cnt < 0 or decode_device_cnt < 0 or prefill_device_cnt + decode_device_cnt < 1:
        # Quirk 10: upstream accepts negatives and slices strangely; refuse.
        raise InputError(
            f"prefill and decode device counts must be >= 0 and sum to >= 1, got "
            f"{prefill_device_cnt} and {decode_device_cnt}",
            key="prefill_device_cnt",
            hint="count the NPUs of every prefill and of every decode instance",
        )
    if not nodes:
        raise InputError("no nodes: the ranktable needs at least one", key="nodes",
                         hint="list the nodes that run an instance")
    a3 = soc == "A3"
    gathered: list[dict[str, str]] = []
    for index, node in enumerate(nodes):
        for device in _device_ids(node, index):
            gathered.append(_record(node, index, device, a3))
    total = len(gathered)
    if prefill_device_cnt + decode_device_cnt > total:
        # Quirk 9: the generator's assertion, same condition and message; no node writes.
        raise InputError(
            "prefill_device_cnt + decode_device_cnt must be less than or equal to number of all "
            f"devices in cluster ({prefill_device_cnt} + {decode_device_cnt} > {total})",
            key="decode_device_cnt",
            hint="give the nodes more devices, or lower the counts",
        )
    # Quirk 3: cluster_id = 1-based position in the WHOLE gathered list (in --ips order),
    # as a string, appended last, before slicing: decode ids continue after prefill ids and
    # dropped devices use up numbers too.
    for position, record in enumerate(gathered, start=1):
        record["cluster_id"] = str(position)
    return {
        "version": RANKTABLE_VERSION,
        # Quirk 2: the number of ranks (torchrun WORLD_SIZE = len(--ips)), even ranks that
        # end up in neither list; not --npus-per-node (spec §1.5).
        "server_count": str(len(nodes)),
        # Roles come only from position (spec §2.7); quirk 4: a tail beyond P + D is
        # dropped silently.
        "prefill_device_list": gathered[:prefill_device_cnt],
        "decode_device_list": gathered[prefill_device_cnt:prefill_device_cnt + decode_device_cnt],
        "status": RANKTABLE_STATUS,
    }


def ranktable_json(table: Mapping[str, object]) -> str:
    """The exact text the generator writes: `json.dump(table, f, indent=4)` (spec §3).

    4-space indent, `": "` and `","` separators, ASCII-only, keys in insertion order,
    and NO trailing newline (quirk 1).
    """
    return json.dumps(table, indent=4)


# ---------------------------------------------------------------------------------------
# from a session and discovery


@dataclass(frozen=True)
class GeneratorRun:
    """The generator invocation a session amounts to: `--ips` order and per-node ids."""

    node_names: tuple[str, ...]
    nodes: tuple[GenNode, ...]
    soc: str
    prefill_device_cnt: int
    decode_device_cnt: int
    nics: tuple[str | None, ...] = ()

    @property
    def ips(self) -> list[str]:
        """`--ips`, prefill nodes first."""
        return [n.local_host for n in self.nodes]

    def local_device_ids(self, index: int) -> str:
        """`--local-device-ids` of the node at `index` (in --ips order)."""
        ids = self.nodes[index].local_device_ids
        return ids if isinstance(ids, str) else ",".join(map(str, ids or ()))

    def sh_command(self, index: int) -> str:
        """The upstream `gen_ranktable.sh` line for the node at `index`, for cross-checks.

        `--npus-per-node` only feeds log lines upstream (spec §1.5): the node's id count
        is given. `--network-card-name` is the node's NIC when known.
        """
        nic = self.nics[index] if index < len(self.nics) else None
        ids = self.local_device_ids(index)
        words = ["bash", "gen_ranktable.sh", "--ips", *self.ips,
                 "--npus-per-node", str(len(ids.split(",")) if ids else 0)]
        if nic:
            words += ["--network-card-name", nic]
        words += ["--prefill-device-cnt", str(self.prefill_device_cnt),
                  "--decode-device-cnt", str(self.decode_device_cnt)]
        if ids:
            words += ["--local-device-ids", ids]
        return " ".join(shlex.quote(w) for w in words)

    def generate(self) -> dict[str, object]:
        """The ranktable these inputs give (`generate_ranktable`)."""
        return generate_ranktable(self.nodes, soc=self.soc, prefill_device_cnt=self.prefill_device_cnt,
                                  decode_device_cnt=self.decode_device_cnt)


def _node_index(session: Session, name: str) -> int:
    return next(i for i, n in enumerate(session.nodes) if n.name == name)


def _ordered_nodes(session: Session) -> list[str]:
    """Nodes that run an instance, in `--ips` order: prefill-only, mixed, decode-only.

    The generator gives roles by position only (spec §4): prefill = the first P
    gathered devices. So every prefill device must precede every decode device, which
    holds iff the nodes go prefill-only, then at most ONE node with both roles (its
    prefill devices first), then decode-only; each group keeps the session's node order.
    """
    roles: dict[str, set[str]] = {}
    for inst in session.instances:
        roles.setdefault(inst.node, set()).add(inst.role)
    used = [n.name for n in session.nodes if n.name in roles]
    mixed = [n for n in used if roles[n] == {"prefill", "decode"}]
    if len(mixed) > 1:
        raise InputError(
            f"nodes {', '.join(mixed)} each run both a prefill and a decode instance: the "
            f"generator ({REFERENCE}) gives roles by position only (prefill = the first devices "
            "in --ips order), so at most one node may hold both roles",
            key="instances",
            hint=f"keep both roles on one node only (e.g. move the decode instances of "
                 f"{', '.join(mixed[1:])} to nodes without a prefill instance)",
        )
    return ([n for n in used if roles[n] == {"prefill"}] + mixed
            + [n for n in used if roles[n] == {"decode"}])


def _soc_of(session: Session, names: list[str], facts: Mapping[str, NodeFacts]) -> str:
    socs: dict[str, list[str]] = {}
    for name in names:
        f = facts[name]
        if f.soc not in ("A2", "A3"):
            i = _node_index(session, name)
            raise InputError(
                f"node {name}: discovery could not tell A2 from A3 (SoC {f.soc or 'unknown'}), and "
                "the ranktable's fields differ between them",
                key=f"nodes[{i}]",
                hint=f"check that `npu-smi info` works on {name}; PD disaggregation with "
                     "LLMDataDist needs Atlas A2 or A3 NPUs",
            )
        socs.setdefault(f.soc, []).append(name)
    if len(socs) > 1:
        detail = "; ".join(f"{soc}: {', '.join(ns)}" for soc, ns in sorted(socs.items()))
        raise InputError(
            f"the nodes mix A2 and A3 ({detail}): one ranktable cannot describe both (A3 entries "
            "carry super-pod ids and HCCS vNIC addresses)",
            key="nodes",
            hint="deploy prefill and decode on nodes of the same generation",
        )
    return next(iter(socs))


def _check_local_host(session: Session, i: int, names: list[str], ips: list[str],
                      facts: NodeFacts) -> None:
    """The .sh's identity rule (spec §1.3): the first --ips entry among `hostname -I`.

    Upstream, a node whose IP is not among its own addresses gets NODE_RANK 8 and every
    node hangs in rendezvous; one whose addresses hold an EARLIER --ips entry takes that
    entry's rank and identity. Either way: refuse.
    """
    node = session.nodes[i]
    name = node.name
    ip = node.effective_ip
    key = f"nodes[{i}].ip" if node.ip is not None else f"nodes[{i}].host"
    own = set(facts.addresses)
    first = next((k for k, entry in enumerate(ips) if entry in own), None)
    if first is not None and ips[first] == ip:
        return
    shown = " ".join(facts.addresses) or "none"
    if first is None:
        raise InputError(
            f"node {name}: its IP {ip} is not among the node's own addresses (hostname -I: {shown}); "
            "the ranktable's server_id must be an address of that node, the one vLLM reports",
            key=key,
            hint=f"set ip to the address of {name} that carries its traffic (one of: {shown})",
        )
    raise InputError(
        f"node {name} also holds {ips[first]} (the IP of node {names[first]}), which comes before "
        f"its own IP {ip} in --ips: the generator would take that entry as this node's identity",
        key=key,
        hint=f"remove {ips[first]} from {name}, or give each node an IP no other node holds",
    )


def _gen_node(name: str, local_host: str, insts: list[tuple[int, Instance]], facts: NodeFacts,
              soc: str) -> GenNode:
    """The generator's view of one node: its instances' devices as --local-device-ids.

    `insts`: (index in session.instances, instance) of the instances on this node.
    """
    a3 = soc == "A3"
    # Prefill instances first on a mixed node (see _ordered_nodes), session order within a
    # role, each instance's devices as listed: that order is the TP rank order the
    # connector assumes (llmdatadist-connector.md §4), so it must not be sorted.
    insts = sorted(insts, key=lambda p: p[1].role != "prefill")
    by_device = {n.device: n for n in facts.npus}
    by_die = {(n.npu_id, n.chip_id): n for n in facts.npus}
    ids: list[int] = []
    device_ips: dict[int, str] = {}
    spod: dict[tuple[int, int], SpodInfo] = {}
    chips = _chips_per_card(facts)
    for i, inst in insts:
        for device in inst.devices:
            ids.append(device)
            npu = by_device.get(device)
            if npu is None:
                have = ", ".join(map(str, sorted(facts.devices))) or "none"
                raise InputError(
                    f"node {name} has no NPU {device} (it has: {have})",
                    key=f"instances[{i}].devices",
                    hint=f"pick device ids from those npu-smi lists on {name}",
                )
            ip = npu.vnic_ip if a3 else npu.ip
            if ip is None:
                what = "vNIC (hccn_tool -vnic -g)" if a3 else "RoCE IP (hccn_tool -ip -g)"
                raise InputError(
                    f"node {name}: NPU {device} has no {what} address, so it has no ranktable device_ip",
                    key=f"instances[{i}].devices",
                    hint=f"configure it on {name} (hccn_tool -i {device} {'-vnic' if a3 else '-ip'} -s ...) "
                         "or pick another device",
                )
            device_ips[device] = ip
            if a3:
                card, chip = divmod(device, chips)
                holder = by_die.get((card, chip))
                if holder is None or holder.sdid is None or holder.super_pod_id is None:
                    raise InputError(
                        f"node {name}: no SDID / Super Pod ID for NPU {device} "
                        f"(npu-smi info -t spod-info -i {card} -c {chip})",
                        key=f"instances[{i}].devices",
                        hint=f"check `npu-smi info -t spod-info -i {card} -c {chip}` on {name}",
                    )
                # As printed: npu-smi prints both with %u, so str(int) is the same text.
                spod[(card, chip)] = SpodInfo(str(holder.super_pod_id), str(holder.sdid))
    return GenNode(local_host=local_host, device_ips=device_ips, local_device_ids=ids,
                   total_count=len({n.npu_id for n in facts.npus}) or None, chip_count=chips, spod=spod)


def _chips_per_card(facts: NodeFacts) -> int:
    """`Chip Count` of the first card `npu-smi info -l` lists (the lowest NPU ID)."""
    if not facts.npus:
        return 1
    first = min(n.npu_id for n in facts.npus)
    return sum(1 for n in facts.npus if n.npu_id == first)


def generator_run(session: Session, facts: Mapping[str, NodeFacts]) -> GeneratorRun:
    """The generator inputs for `session` on the discovered nodes (validated).

    Only nodes that run an instance take part: a node in --ips without
    --local-device-ids would contribute ALL its devices (spec §2.3), and every one
    counts in server_count.
    """
    names = _ordered_nodes(session)
    if not names:
        raise InputError("no instances: nothing to put in a ranktable", key="instances",
                         hint='add [[instances]] with role = "prefill" and role = "decode"')
    missing = [n for n in names if n not in facts]
    if missing:
        raise InputError(
            f"no discovery facts for node(s) {', '.join(missing)}: the ranktable needs each NPU's address",
            key=f"nodes[{_node_index(session, missing[0])}]",
            hint="run discovery first; a node that could not be reached cannot be in the ranktable",
        )
    soc = _soc_of(session, names, facts)
    index = {n.name: i for i, n in enumerate(session.nodes)}
    ips = [session.nodes[index[n]].effective_ip for n in names]
    for name in names:
        _check_local_host(session, index[name], names, ips, facts[name])
    on: dict[str, list[tuple[int, Instance]]] = {}
    for i, inst in enumerate(session.instances):
        on.setdefault(inst.node, []).append((i, inst))
    nodes = tuple(_gen_node(n, ip, on[n], facts[n], soc) for n, ip in zip(names, ips))
    nics = tuple(session.nodes[index[n]].nic or _nic_of(facts[n], ip) for n, ip in zip(names, ips))
    return GeneratorRun(
        node_names=tuple(names), nodes=nodes, soc=soc,
        prefill_device_cnt=sum(len(i.devices) for i in session.prefills()),
        decode_device_cnt=sum(len(i.devices) for i in session.decodes()),
        nics=nics,
    )


def _nic_of(facts: NodeFacts, ip: str) -> str | None:
    return next((nic for nic, addrs in facts.nics.items() if ip in addrs), None)


def build_ranktable(session: Session, facts: Mapping[str, NodeFacts]) -> dict[str, object]:
    """The ranktable the generator would write for this session on these nodes.

    Equal (keys, order, string types) to upstream's file for `--ips` = the instance
    nodes, prefill first, and `--local-device-ids` = each node's instance devices;
    serialise it with `ranktable_json`. Raises InputError naming the node, instance
    and key where upstream would fail or hang.
    """
    return generator_run(session, facts).generate()


__all__ = [
    "RANKTABLE_STATUS",
    "RANKTABLE_VERSION",
    "GenNode",
    "GeneratorRun",
    "SpodInfo",
    "build_ranktable",
    "generate_ranktable",
    "generator_run",
    "parse_local_device_ids",
    "ranktable_json",
]
