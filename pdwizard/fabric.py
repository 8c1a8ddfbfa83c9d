"""Fabric checks: the guide's per-NPU checks, TLS agreement, and the ping matrix.

Per selected NPU: LLDP neighbour, link UP, net_health, netdetect address, gateway,
/etc/hccn.conf address equal to the live IP, and the TLS switch (which must agree
on every node). Then the planned pings. Each node's checks and pings go in one
script (one round trip); every verdict keeps the raw output it came from.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

from pdwizard import parsers
from pdwizard.checks import ok, verdict
from pdwizard.pingplan import Ping
from pdwizard.probe import Batch, ToolOutput
from pdwizard.report import CheckResult, NodeFacts, Status

#: The per-NPU checks, in the order the guide runs them (`ip` comes from discovery).
NPU_CHECKS = ("lldp", "link", "net_health", "netdetect", "gateway", "tls")

_MISSING = ToolOutput("", "", -1)


def fabric_batch(devices: Sequence[int], pings: Sequence[Ping], skip: Iterable[str] = ()) -> Batch:
    """The check script for one node: per-NPU calls, then its pings."""
    skipped = set(skip)
    b = Batch()
    for d in devices:
        for check in NPU_CHECKS:
            if check not in skipped:
                b.add(f"{check}.{d}", "hccn_tool", "-i", str(d), f"-{check}", "-g")
    if "ping" not in skipped:
        for n, p in enumerate(pings):
            b.add(f"ping.{n}", "hccn_tool", "-i", str(p.src.device), "-ping", "-g",
                  "address", p.dst.ip)
    return b


def evaluate_npu(node: str, device: int, out: Mapping[str, ToolOutput], facts: NodeFacts,
                 skip: Iterable[str] = ()) -> list[CheckResult]:
    """Verdicts for one NPU from its framed outputs."""
    skipped = set(skip)
    results = []
    for check, judge in _JUDGES.items():
        if check in skipped:
            continue
        o = out.get(f"{check}.{device}", _MISSING)
        results.append(_guard(check, node, device, o) or judge(node, device, o))
    if "hccn_conf" not in skipped:
        results.append(_judge_hccn_conf(node, device, facts))
    return results


def _guard(check: str, node: str, device: int, o: ToolOutput) -> CheckResult | None:
    """Environment failures (busy, no output) are reported as such, never as fabric faults."""
    if o.exit_status == -1 and not o.stdout and not o.stderr:
        return verdict("tool_missing", Status.FAIL, check=check, node=node, device=device)
    if parsers.is_busy(o.stdout, o.stderr):
        return verdict("tool_busy", Status.FAIL, check=check, node=node, device=device, raw=o.text)
    return None


def _judge_lldp(node: str, device: int, o: ToolOutput) -> CheckResult:
    info = parsers.parse_lldp(o.stdout)
    if info.ifname:
        return ok("lldp", node, device=device, value=info.ifname, raw=o.text)
    return verdict("lldp_no_neighbor", Status.FAIL, check="lldp", node=node, device=device, raw=o.text)


def _judge_link(node: str, device: int, o: ToolOutput) -> CheckResult:
    state = parsers.parse_link(o.stdout)
    if state == "UP":
        return ok("link", node, device=device, value=state, raw=o.text)
    rule = "link_down" if state else "link_unreadable"
    return verdict(rule, Status.FAIL, check="link", node=node, device=device, value=state, raw=o.text)


def _judge_net_health(node: str, device: int, o: ToolOutput) -> CheckResult:
    value = parsers.parse_net_health(o.stdout)
    if value is None:
        return verdict("net_health_unreadable", Status.FAIL, check="net_health", node=node,
                       device=device, raw=o.text)
    level = parsers.classify_net_health(value)
    if level == "ok":
        return ok("net_health", node, device=device, value=value, raw=o.text)
    if level == "warn":
        return verdict("net_health_init", Status.WARN, check="net_health", node=node,
                       device=device, value=value, raw=o.text)
    return verdict("net_health_fault", Status.FAIL, check="net_health", node=node,
                   device=device, value=value, raw=o.text)


def _judge_netdetect(node: str, device: int, o: ToolOutput) -> CheckResult:
    addr = parsers.parse_netdetect(o.stdout)
    if addr is None:
        return verdict("netdetect_unreadable", Status.FAIL, check="netdetect", node=node,
                       device=device, raw=o.text)
    if addr == "0.0.0.0":
        return verdict("netdetect_unset", Status.WARN, check="netdetect", node=node,
                       device=device, value=addr, raw=o.text)
    return ok("netdetect", node, device=device, value=addr, raw=o.text)


def _judge_gateway(node: str, device: int, o: ToolOutput) -> CheckResult:
    gateway, _iface = parsers.parse_gateway(o.stdout)
    if gateway:
        return ok("gateway", node, device=device, value=gateway, raw=o.text)
    text = (o.stdout + o.stderr).lower()
    if "no gateway" in text or "not preset" in text:
        return verdict("gateway_unset", Status.WARN, check="gateway", node=node, device=device,
                       raw=o.text)
    return verdict("gateway_unreadable", Status.FAIL, check="gateway", node=node, device=device,
                   raw=o.text)


def _judge_tls(node: str, device: int, o: ToolOutput) -> CheckResult:
    switch = parsers.parse_tls(o.stdout)
    if switch is None:
        return verdict("tls_unreadable", Status.FAIL, check="tls", node=node, device=device,
                       raw=o.text)
    return ok("tls", node, device=device, value=str(switch), raw=o.text)


_JUDGES = {
    "lldp": _judge_lldp,
    "link": _judge_link,
    "net_health": _judge_net_health,
    "netdetect": _judge_netdetect,
    "gateway": _judge_gateway,
    "tls": _judge_tls,
}


def _judge_hccn_conf(node: str, device: int, facts: NodeFacts) -> CheckResult:
    if facts.hccn_conf is None:
        return verdict("hccn_conf_missing", Status.WARN, check="hccn_conf", node=node,
                       device=device, value="cannot read the file")
    npu = facts.npu(device)
    live = npu.ip if npu else None
    entry = facts.hccn_conf.get(device, {})
    conf_ip = entry.get("address")
    raw = "\n".join(f"{k}_{device}={v}" for k, v in entry.items())
    if conf_ip is None:
        return verdict("hccn_conf_no_entry", Status.WARN, check="hccn_conf", node=node,
                       device=device, raw=raw)
    if live and conf_ip != live:
        return verdict("hccn_conf_stale", Status.FAIL, check="hccn_conf", node=node,
                       device=device, value=conf_ip, expected=live, raw=raw)
    return ok("hccn_conf", node, device=device, value=conf_ip, raw=raw)


def tls_agreement(results: Sequence[CheckResult]) -> list[CheckResult]:
    """Flag every NPU whose TLS switch differs from the majority across all nodes."""
    values = [r for r in results if r.check == "tls" and r.status is Status.OK]
    counts: dict[str, int] = {}
    for r in values:
        counts[r.value or ""] = counts.get(r.value or "", 0) + 1
    if len(counts) < 2:
        return []
    majority = max(counts, key=lambda v: (counts[v], v))
    return [verdict("tls_mismatch", Status.FAIL, check="tls", node=r.node, device=r.device,
                    value=r.value, expected=majority, raw=r.raw)
            for r in values if r.value != majority]


def ping_target(p: Ping) -> str:
    """How a ping verdict names its peer (also how a re-run finds the ping again)."""
    return f"{p.dst.ip} ({p.dst.node} NPU {p.dst.device})"


def evaluate_pings(node: str, pings: Sequence[Ping], out: Mapping[str, ToolOutput]) -> list[CheckResult]:
    """One verdict per planned ping; the summary line is the truth, not the exit code."""
    results = []
    for n, p in enumerate(pings):
        o = out.get(f"ping.{n}", _MISSING)
        target = ping_target(p)
        guard = _guard("ping", node, p.src.device, o)
        if guard:
            guard.target = target
            results.append(guard)
            continue
        res = parsers.parse_ping(o.stdout)
        if res is None:
            results.append(verdict("ping_unreadable", Status.FAIL, check="ping", node=node,
                                   device=p.src.device, target=target, raw=o.text))
        elif res.passed:
            rtt = f"{min(res.rtts_ms):.3f} ms" if res.rtts_ms else "ok"
            results.append(ok("ping", node, device=p.src.device, target=target, value=rtt,
                              raw=o.text))
        else:
            loss = f"{res.received}/{res.transmitted} received, {res.loss_pct:g}% loss"
            results.append(verdict("ping_loss", Status.FAIL, check="ping", node=node,
                                   device=p.src.device, target=target, value=loss, raw=o.text))
    return results
