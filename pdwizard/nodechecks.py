"""Checks on what discovery found, before any fabric traffic.

The session's node ip must be one of the node's own addresses (HCCL_IF_IP and the
ranktable need it), its nic must exist and hold that ip, the selected NPUs must
exist, be healthy, hold an IP and be free, and driver, CANN, vLLM and vllm-ascend
versions must agree across nodes (version drift is a top cause of PD breakage).
"""

from __future__ import annotations

from typing import Mapping

from pdwizard.checks import ok, verdict
from pdwizard.errors import InputError
from pdwizard.models import Session
from pdwizard.session import check_devices_exist
from pdwizard.report import CheckResult, NodeFacts, Status

#: Versions compared across nodes, with the label shown to the operator.
VERSION_FIELDS = {"driver": "driver", "cann": "CANN", "vllm": "vLLM", "vllm_ascend": "vllm-ascend"}


def selected_devices(session: Session) -> dict[str, list[int]]:
    """Node name -> the NPU ids its instances use, sorted, in session node order."""
    picked: dict[str, set[int]] = {n.name: set() for n in session.nodes}
    for inst in session.instances:
        picked.setdefault(inst.node, set()).update(inst.devices)
    return {name: sorted(devs) for name, devs in picked.items()}


def missing_devices(session: Session, facts: Mapping[str, NodeFacts],
                    source: str | None = None) -> list[InputError]:
    """Instances that name an NPU the node does not have: invalid input (exit 2).

    Nodes whose NPU table could not be read are left out: that is a check failure
    already reported, not an input error.
    """
    have = {name: f.devices for name, f in facts.items() if f.npus}
    return check_devices_exist(session, have, source=source)


def check_node(session: Session, facts: NodeFacts) -> list[CheckResult]:
    """Identity and NPU-state checks for one discovered node."""
    node = session.node(facts.node)
    results = [_check_ip(facts, node.ip or node.host)]
    if node.nic or facts.nics:
        results.append(_check_nic(facts, node.nic, node.ip or node.host))
    for device in selected_devices(session).get(facts.node, []):
        results.extend(_check_npu(facts, device))
    return results


def _check_ip(facts: NodeFacts, ip: str) -> CheckResult:
    own = set(facts.addresses) | {a for addrs in facts.nics.values() for a in addrs}
    if ip in own:
        return ok("node_ip", facts.node, value=ip)
    return verdict("node_ip_not_own", Status.FAIL, check="node_ip", node=facts.node, value=ip,
                   expected=", ".join(sorted(own)) or "none")


def _check_nic(facts: NodeFacts, nic: str | None, ip: str) -> CheckResult:
    holder = next((n for n, addrs in facts.nics.items() if ip in addrs), None)
    if nic is None:
        if holder:
            return ok("nic", facts.node, value=holder)
        return verdict("nic_wrong_ip", Status.FAIL, check="nic", node=facts.node,
                       value="(none)", expected=ip)
    if nic not in facts.nics:
        return verdict("nic_missing", Status.FAIL, check="nic", node=facts.node, value=nic,
                       expected=", ".join(sorted(facts.nics)) or "none")
    if ip not in facts.nics[nic]:
        return verdict("nic_wrong_ip", Status.FAIL, check="nic", node=facts.node, value=nic,
                       expected=ip)
    return ok("nic", facts.node, value=nic)


def _check_npu(facts: NodeFacts, device: int) -> list[CheckResult]:
    npu = facts.npu(device)
    if npu is None:
        return []
    out: list[CheckResult] = []
    health = (npu.health or "").upper()
    if health == "OK":
        out.append(ok("health", facts.node, device=device, value=npu.health))
    else:
        status = Status.WARN if health == "WARNING" else Status.FAIL
        out.append(verdict("npu_health", status, check="health", node=facts.node,
                           device=device, value=npu.health or "unknown"))
    if npu.pids:
        out.append(verdict("npu_busy", Status.FAIL, check="free", node=facts.node, device=device,
                           value=", ".join(map(str, npu.pids))))
    else:
        out.append(ok("free", facts.node, device=device, value="no process"))
    if npu.ip:
        out.append(ok("ip", facts.node, device=device, value=npu.ip))
    else:
        out.append(verdict("ip_missing", Status.FAIL, check="ip", node=facts.node, device=device,
                           value="hccn_tool -ip -g printed no ipaddr"))
    return out


def version_of(facts: NodeFacts, field: str) -> str | None:
    """One comparable version string of a node."""
    if field == "driver":
        return facts.driver_version
    if field == "cann":
        return facts.cann_version
    return facts.packages.get(field)


def check_versions(facts: Mapping[str, NodeFacts]) -> list[CheckResult]:
    """Every version must be the same on every node; missing vLLM is a failure."""
    results = []
    for field, label in VERSION_FIELDS.items():
        seen = {name: version_of(f, field) for name, f in facts.items()}
        distinct = {v for v in seen.values() if v}
        if len(distinct) > 1:
            spread = "; ".join(f"{n}={v or 'none'}" for n, v in seen.items())
            for name in seen:
                results.append(verdict("versions_differ", Status.FAIL, check="versions",
                                       node=name, value=label, expected=spread))
            continue
        for name, v in seen.items():
            if v:
                results.append(ok("versions", name, value=f"{label} {v}"))
            elif field in ("vllm", "vllm_ascend"):
                results.append(verdict("version_missing", Status.FAIL, check="versions",
                                       node=name, value=label))
    return results

