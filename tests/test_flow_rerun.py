"""Re-running only the failed checks (the TUI's "re-run failed"), over real SSH to the simulator.

Each test runs the demo 1P2D (on its own loopback subnet) with one fault, runs the checks,
re-runs the failed verdicts and reads the scripts the pool sent: only the tool calls behind
the failures may run again, and the merged step must hold the fresh verdicts in their place.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from conftest import next_sim_net
from pdwizard.cli import asset
from pdwizard.errors import PdwError
from pdwizard.remote.pool import CommandResult
from pdwizard.report import CheckResult, Status
from pdwizard.wizard import Wizard

#: One framed hccn_tool call of a fabric script: key, device, option, ping address.
_CALL = re.compile(r'^pdw_call (\S+) "\$HCCN_TOOL" -i (\d+) -(\w+) -g(?: address (\S+))?$')


def _cluster(tmp_path: Path, faults: str, node: str = "p1") -> tuple[Path, Path]:
    """The demo cluster and session on a fresh subnet, `faults` (TOML lines) added to `node`."""
    net = next_sim_net()
    spec = asset("demo-cluster.toml").read_text().replace('host = "127.0.1.', f'host = "127.{net}.1.')
    spec = spec.replace(f'name = "{node}"\n', f'name = "{node}"\n{faults}\n', 1)
    session = asset("demo-session.toml").read_text().replace('host = "127.0.1.', f'host = "127.{net}.1.')
    (tmp_path / "spec.toml").write_text(spec)
    (tmp_path / "session.toml").write_text(session)
    return tmp_path / "spec.toml", tmp_path / "session.toml"


class Calls:
    """Every remote command of the wizard; the hccn_tool calls of its scripts, per node."""

    def __init__(self) -> None:
        self.results: list[CommandResult] = []

    def __call__(self, result: CommandResult) -> None:
        self.results.append(result)

    def mark(self) -> int:
        return len(self.results)

    def tool_calls(self, since: int = 0) -> Counter:
        """(node, device, option, address) of every framed hccn_tool call since `since`."""
        out: Counter = Counter()
        for r in self.results[since:]:
            for line in (r.stdin or "").splitlines():
                m = _CALL.match(line)
                if m:
                    out[(r.node, int(m.group(2)), m.group(3), m.group(4))] += 1
        return out

    def scripts(self, since: int = 0) -> list[str]:
        return [r.node for r in self.results[since:]]


@pytest.fixture
async def wizard_on(tmp_path):
    """``await make(faults, node) -> (wizard, calls)``: connected and discovered; closed at teardown."""
    made: list[Wizard] = []

    async def make(faults: str, node: str = "p1") -> tuple[Wizard, Calls]:
        spec, session = _cluster(tmp_path, faults, node)
        wizard = Wizard.open(session, sim_spec=spec)
        calls = Calls()
        wizard.on_command = calls
        made.append(wizard)
        await wizard.start()
        await wizard.connect()
        await wizard.discover()
        return wizard, calls

    yield make
    for w in made:
        await w.close()


def _failed(w: Wizard) -> list[CheckResult]:
    return [r for r in w.check_results() if r.status is Status.FAIL]


def _ping_ip(r: CheckResult) -> str:
    return (r.target or "").split()[0]


def _expected_calls(failed: list[CheckResult], ips: dict[tuple[str, int], str]) -> Counter:
    """The hccn_tool calls a re-run of `failed` must make: each failed NPU's six fabric checks
    once, each failed ping once (`ips`: which address a (node, device) has)."""
    out: Counter = Counter()
    npus = {(r.node, r.device) for r in failed if r.check != "ping"}
    for node, device in npus:
        for option in ("lldp", "link", "net_health", "netdetect", "gateway", "tls"):
            out[(node, device, option, None)] += 1
    for r in failed:
        if r.check == "ping":
            out[(r.node, r.device, "ping", _ping_ip(r))] += 1
    return out


async def test_ping_loss_reruns_only_the_failed_pings_and_merges_them(wizard_on):
    w, calls = await wizard_on('ping_loss = ["29.0.2.7"]')          # p1 cannot reach d1 NPU 6
    await w.run_checks()
    failed = _failed(w)
    assert {(r.check, r.node, r.device, _ping_ip(r)) for r in failed} == {
        ("ping", "p1", 0, "29.0.2.7"), ("ping", "p1", 1, "29.0.2.7")}
    before = list(w.fabric_step.results)
    mark = calls.mark()

    step = await w.run_checks(rerun=failed)

    assert calls.scripts(mark) == ["p1"]                            # one round trip, on p1 only
    assert calls.tool_calls(mark) == Counter({("p1", 0, "ping", "29.0.2.7"): 1, ("p1", 1, "ping", "29.0.2.7"): 1})
    assert len(step.results) == 2 and all(r.status is Status.FAIL for r in step.results)
    merged = w.fabric_step.results
    assert len(merged) == len(before)
    fresh = [r for r in merged if r.check == "ping" and _ping_ip(r) == "29.0.2.7" and r.node == "p1"]
    assert sorted(map(id, fresh)) == sorted(map(id, step.results))  # the re-run's verdicts, not the old ones
    untouched = [r for r in before if not (r.check == "ping" and r.node == "p1" and _ping_ip(r) == "29.0.2.7")]
    assert all(any(r is m for m in merged) for r in untouched)      # every other verdict kept as it was
    assert w.fabric_step.status is Status.FAIL and len(_failed(w)) == 2


async def test_link_down_reruns_its_npu_checks_and_every_ping_from_and_to_it(wizard_on):
    w, calls = await wizard_on("link_down = [7]", node="d2")      # d2 NPU 7 (29.0.3.8) is down
    await w.run_checks()
    failed = _failed(w)
    checks = {(r.check, r.node, r.device) for r in failed if r.check != "ping"}
    assert checks == {("lldp", "d2", 7), ("link", "d2", 7), ("net_health", "d2", 7)}
    pings = [r for r in failed if r.check == "ping"]
    assert {(r.node, r.device) for r in pings if _ping_ip(r) == "29.0.3.8"} == {
        ("p1", 0), ("p1", 1), ("d1", 6), ("d1", 7)}
    assert sum(1 for r in pings if (r.node, r.device) == ("d2", 7)) == 4
    ips = {(n, d.device): d.ip for n, f in w.facts.items() for d in f.npus}
    mark = calls.mark()

    await w.run_checks(rerun=failed)

    assert sorted(calls.scripts(mark)) == ["d1", "d2", "p1"]
    assert calls.tool_calls(mark) == _expected_calls(failed, ips)
    link = [r for r in w.fabric_step.results if (r.check, r.node, r.device) == ("link", "d2", 7)]
    assert len(link) == 1 and link[0].status is Status.FAIL and "DOWN" in (link[0].raw or "")
    assert len(_failed(w)) == len(failed)                           # the fault is still there
    assert len(w.fabric_step.results) == len({(r.check, r.node, r.device, r.target) for r in w.fabric_step.results})


async def test_a_cleared_fault_passes_on_rerun(wizard_on):
    """A fault that goes away at run time: the node's hccn_tool answers "busy" to the next five
    calls (the simulator's documented busy_left counter, set after discovery), so NPU 0's first
    fabric call fails as busy; the re-run finds the tool free and the merged step passes."""
    w, calls = await wizard_on("")
    (w.cluster.node("p1").state_dir / "busy_left").write_text("5\n")
    await w.run_checks()
    failed = _failed(w)
    assert [(r.check, r.node, r.device) for r in failed] == [("lldp", "p1", 0)]
    assert "busy" in (failed[0].message or "") + (failed[0].raw or "")
    mark = calls.mark()

    await w.run_checks(rerun=failed)

    assert calls.tool_calls(mark) == _expected_calls(failed, {})    # p1 NPU 0's six checks, nothing else
    assert _failed(w) == [] and w.fabric_step.status is Status.OK
    lldp = [r for r in w.fabric_step.results if (r.check, r.node, r.device) == ("lldp", "p1", 0)]
    assert len(lldp) == 1 and lldp[0].status is Status.OK


async def test_a_fact_check_rerun_discovers_its_node_again(wizard_on):
    """busy_first = 5 makes discovery miss p1 NPU 0's address (its -ip call answers busy five
    times): the "ip" verdict fails and NPU 0 is left out of the ping plan. Re-running it
    discovers p1 again (nothing else), finds the address, and since the plan changed the
    whole fabric runs again: NPU 0 is pinged now."""
    w, calls = await wizard_on("busy_first = 5")
    await w.run_checks()
    failed = _failed(w)
    assert [(r.check, r.node, r.device) for r in failed] == [("ip", "p1", 0)]
    assert not any(r.check == "ping" and r.device == 0 and r.node == "p1" for r in w.check_results())
    mark = calls.mark()

    await w.run_checks(rerun=failed)

    assert "pdw_call npusmi_info" in calls.results[mark].stdin and calls.results[mark].node == "p1"  # p1 discovered again first
    assert sorted(calls.scripts(mark + 1)) == ["d1", "d2", "p1"]
    assert _failed(w) == []
    assert any(r.check == "ping" and (r.node, r.device) == ("p1", 0) for r in w.check_results())


async def test_rerun_of_nothing_runs_nothing(wizard_on):
    w, calls = await wizard_on("")
    await w.run_checks()
    before = list(w.check_results())
    mark = calls.mark()
    await w.run_checks(rerun=[])
    assert calls.results[mark:] == []
    assert w.check_results() == before


async def test_tls_mismatch_is_judged_again_over_every_npu(wizard_on):
    """A re-run sees only its own NPUs: the agreement must still be taken over all of them."""
    w, calls = await wizard_on("tls = 1", node="d2")               # d2 disagrees with p1 and d1
    await w.run_checks()
    failed = _failed(w)
    assert {(r.check, r.node, r.device) for r in failed} == {("tls", "d2", 6), ("tls", "d2", 7)}
    mark = calls.mark()
    await w.run_checks(rerun=failed)
    assert calls.scripts(mark) == ["d2"] and calls.tool_calls(mark) == _expected_calls(failed, {})
    assert {(r.check, r.node, r.device) for r in _failed(w)} == {("tls", "d2", 6), ("tls", "d2", 7)}
    tls = [r for r in w.fabric_step.results if r.check == "tls"]
    assert len(tls) == 6 + 2                                         # one reading per NPU + the two mismatches


async def test_changing_the_instances_during_the_checks_drops_them(wizard_on):
    w, _calls = await wizard_on("")

    def change(node: str, results: list[CheckResult]) -> None:
        w.data["instances"][0]["devices"] = [2, 3]

    with pytest.raises(PdwError, match="changed while the checks ran"):
        await w.run_checks(on_results=change)
    assert w.fabric_step is None


def test_a_node_whose_whole_script_failed_is_rerun_whole_and_its_verdicts_replaced():
    """A node whose fabric script failed as a whole (a timeout: one "fabric" verdict) runs all of
    it again; the merge keeps the other nodes' verdicts and takes the node's fresh ones."""
    from pdwizard.flow import RerunScope, merge_fabric
    from pdwizard.report import StepReport

    def v(check: str, node: str, device: int | None = None, status: Status = Status.OK, target=None) -> CheckResult:
        return CheckResult(check=check, node=node, device=device, status=status, target=target)

    old = StepReport(name="fabric", note="ping matrix: 2 pings")
    for r in (v("link", "p1", 0), v("ping", "p1", 0, target="29.0.2.1 (d1 NPU 0)"),
              v("fabric", "d1", status=Status.FAIL)):
        old.add(r)
    failed = [r for r in old.results if r.status is Status.FAIL]
    scope = RerunScope.of(failed)
    assert scope.nodes == {"d1"} and not scope.npus and not scope.pings and not scope.discover
    assert scope.covers(v("link", "d1", 3)) and scope.covers(v("ping", "d1", 0, target="x"))
    assert not scope.covers(v("link", "p1", 0))
    new = StepReport(name="fabric")
    for r in (v("link", "d1", 0), v("ping", "d1", 0, target="29.0.1.1 (p1 NPU 0)")):
        new.add(r)
    merged = merge_fabric(old, new, failed)
    assert [(r.check, r.node) for r in merged.results] == [("link", "p1"), ("ping", "p1"), ("link", "d1"),
                                                           ("ping", "d1")]
    assert merged.status is Status.OK and merged.note == old.note
