"""The check flow, shared by the headless replay and the TUI.

connect -> discover -> node checks -> preflight -> fabric checks and ping matrix. Nodes run in
parallel, one round trip per node per phase; one failing node never stops the
others' checks. Results land in a `Report`; nothing here prints: it tells a
`Progress`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Awaitable, Callable, Sequence, TypeVar

from pdwizard.discovery import discovery_batch, parse_facts
from pdwizard.errors import InputError, RemoteError
from pdwizard.fabric import NPU_CHECKS, evaluate_npu, evaluate_pings, fabric_batch, ping_target, tls_agreement
from pdwizard.models import Session
from pdwizard.nodechecks import check_node, check_versions, missing_devices, selected_devices
from pdwizard.pingplan import Endpoint, Ping, PingPlan, plan_pings
from pdwizard.preflight import run_preflight
from pdwizard.probe import Batch, ToolOutput, build_script, new_nonce, split_output
from pdwizard.progress import Progress
from pdwizard.remote.pool import RemotePool
from pdwizard.report import CheckResult, NodeFacts, Report, Status, StepReport, worst

T = TypeVar("T")

#: Seconds a batch may take per tool call it holds, on top of a fixed allowance:
#: a real `hccn_tool -ping` of 3 packets can take a few seconds.
PER_CALL_TIMEOUT_S = 6.0

#: Verdicts judged from discovery's facts: re-running one means discovering its node again
#: ("discovery": the node could not be discovered at all; hccn_conf reads /etc/hccn.conf there).
FACT_CHECKS = frozenset({"discovery", "node_ip", "nic", "health", "free", "ip", "versions", "hccn_conf"})
#: Per-NPU verdicts of the fabric script (hccn_conf is judged with them, per NPU).
FABRIC_NPU_CHECKS = frozenset({*NPU_CHECKS, "hccn_conf"})


@dataclass(frozen=True)
class RerunScope:
    """What re-running some (failed) verdicts repeats: the nodes discovered again, the nodes
    whose whole fabric script failed (run again whole), the NPUs whose fabric checks run again,
    and the pings sent again (source node, source NPU, target as the verdict names it)."""

    discover: frozenset[str]
    nodes: frozenset[str]
    npus: frozenset[tuple[str, int]]
    pings: frozenset[tuple[str, int | None, str | None]]

    @classmethod
    def of(cls, rerun: Sequence[CheckResult]) -> RerunScope:
        return cls(discover=frozenset(r.node for r in rerun if r.check in FACT_CHECKS),
                   nodes=frozenset(r.node for r in rerun if r.check == "fabric"),
                   npus=frozenset((r.node, r.device) for r in rerun
                                  if r.check in FABRIC_NPU_CHECKS and r.device is not None),
                   pings=frozenset((r.node, r.device, r.target) for r in rerun if r.check == "ping"))

    def covers(self, r: CheckResult) -> bool:
        """Whether a fabric re-run of this scope gives a fresh verdict in place of `r`."""
        if r.node in self.nodes:
            return True
        if r.check == "ping":
            return (r.node, r.device, r.target) in self.pings
        return r.device is not None and (r.node, r.device) in self.npus


class CheckFlow:
    """Runs the checks of one session over one pool, filling one report."""

    def __init__(self, session: Session, pool: RemotePool, report: Report, progress: Progress) -> None:
        self.session = session
        self.pool = pool
        self.report = report
        self.progress = progress
        self.facts: dict[str, NodeFacts] = {}
        self.reachable: list[str] = []
        self.ping_plan: PingPlan | None = None
        #: Called with (node, results) as each node's fabric checks arrive (the TUI fills its table).
        self.on_results: Callable[[str, list[CheckResult]], None] | None = None

    @property
    def nodes(self) -> list[str]:
        return [n.name for n in self.session.nodes]

    async def run(self) -> Report:
        """All phases in order; later phases run on the nodes earlier ones reached."""
        await self.connect()
        await self.discover()
        self.check_nodes()
        self.preflight()
        await self.fabric()
        return self.report

    async def connect(self) -> StepReport:
        step = self.report.step("connect")
        errors = await connect_nodes(self.pool, self.nodes, self.progress, step)
        self.reachable.extend(n for n, err in errors.items() if err is None)
        return step

    async def discover(self) -> StepReport:
        step = self.report.step("discovery")
        container = self.session.stack.container if self.session.stack else None
        serving = {i.node for i in self.session.instances}  # the model is probed where it is served
        model = {n: self.session.model.path if n in serving else None for n in self.reachable}
        found = await discover_nodes(self.pool, self.reachable, self.progress, step, container=container,
                                     model_paths=model, timeout_base=self._timeout(0))
        self.facts.update(found)
        self.report.nodes.update(found)
        return step

    def input_errors(self, source: str | None = None) -> list[InputError]:
        """Instance devices the nodes lack: known only after discovery, exit 2."""
        return missing_devices(self.session, self.facts, source)

    def check_nodes(self) -> StepReport:
        step = self.report.step("node")
        with _timed(step):
            for name, facts in self.facts.items():
                for r in check_node(self.session, facts):
                    step.add(r)
            skip = set(self.session.checks.skip) if self.session.checks else set()
            if "versions" not in skip:
                for r in check_versions(self.facts):
                    step.add(r)
        return step

    def preflight(self, source: str | None = None) -> list[InputError]:
        """The preflight checks (pdwizard.preflight) into a "preflight" step; returns those of its
        failures that are input errors (exit 2). Node-state failures only fail the step."""
        step = self.report.step("preflight")
        with _timed(step):
            outcome = run_preflight(self.session, self.facts, source)
            for r in outcome.results:
                step.add(r)
        return outcome.input_errors

    def plan(self) -> PingPlan:
        """The ping plan over the selected NPUs whose IP is known."""
        checks = self.session.checks
        endpoints: dict[str, list[Endpoint]] = {}
        for name, devices in selected_devices(self.session).items():
            facts = self.facts.get(name)
            if facts is None:
                continue
            endpoints[name] = [Endpoint(name, d, facts.npu(d).ip) for d in devices
                               if facts.npu(d) is not None and facts.npu(d).ip]
        return plan_pings(endpoints, mode=checks.ping if checks else "auto",
                          budget=checks.ping_budget if checks else 48)

    async def fabric(self, rerun: Sequence[CheckResult] | None = None) -> StepReport:
        """Per-NPU checks and the ping matrix, one round trip per node. `rerun`: only the NPUs,
        pings and failed nodes behind these (failed) results (see RerunScope), with the ping plan
        of the last full run (the TUI's "re-run failed"); merge the step into the last full one
        with `merge_fabric`. `on_results(node, results)` hears each node as soon as it answers."""
        step = self.report.step("fabric")
        skip = set(self.session.checks.skip) if self.session.checks else set()
        plan = self.ping_plan if rerun is not None and self.ping_plan is not None else self.plan()
        self.ping_plan = plan
        devices: dict[str, list[int]] = {n: self._present(n, d) for n, d in selected_devices(self.session).items()
                                         if n in self.facts}
        pings = dict(plan.by_node)
        if rerun is None:
            step.note = plan.describe()
            self.progress.say(plan.describe())
        else:
            devices, pings = _only(RerunScope.of(rerun), devices, pings)
            step.note = f"re-run of {len(rerun)} failed result(s)"
        nodes = [n for n in self.facts if devices.get(n) or pings.get(n)]

        async def one(node: str) -> list[CheckResult]:
            out = await self._batch(node, fabric_batch(devices.get(node, []), pings.get(node, []), skip), "checking")
            results = self._evaluate(node, devices.get(node, []), out, pings.get(node, []), skip)
            self.progress.node(node, _tally(results), worst([r.status for r in results]))
            if self.on_results is not None:
                self.on_results(node, results)
            return results

        with _timed(step):
            outs = await self._each(nodes, one, step)
            for name in nodes:
                for r in outs.get(name, []):
                    step.add(r)
            for r in tls_agreement(step.results):
                step.add(r)
        return step

    def _present(self, node: str, devices: list[int]) -> list[int]:
        facts = self.facts[node]
        return [d for d in devices if facts.npu(d) is not None]

    def _evaluate(self, node: str, devices: list[int], out: dict[str, ToolOutput],
                  pings: list[Ping], skip: set[str]) -> list[CheckResult]:
        results: list[CheckResult] = []
        for d in devices:
            results.extend(evaluate_npu(node, d, out, self.facts[node], skip))
        if "ping" not in skip:
            results.extend(evaluate_pings(node, pings, out))
        return results

    async def _batch(self, node: str, batch: Batch, verb: str) -> dict[str, ToolOutput]:
        return await run_batch(self.pool, node, batch, verb, self.progress, self._timeout(0))

    def _timeout(self, calls: int) -> float:
        base = self.session.ssh.command_timeout if self.session.ssh else 60.0
        return float(base or 60.0) + PER_CALL_TIMEOUT_S * calls

    async def _each(self, nodes: list[str], fn: Callable[[str], Awaitable[T]],
                    step: StepReport) -> dict[str, T]:
        return await each_node(nodes, fn, step, self.progress)


async def each_node(nodes: list[str], fn: Callable[[str], Awaitable[T]], step: StepReport,
                    progress: Progress) -> dict[str, T]:
    """Run fn on every node in parallel; a node that fails is reported, not fatal."""
    results = await asyncio.gather(*(fn(n) for n in nodes), return_exceptions=True)
    done: dict[str, T] = {}
    for node, res in zip(nodes, results):
        if isinstance(res, RemoteError):
            step.add(_remote_failure(step.name, res))
            progress.node(node, f"{step.name} failed: {res.kind}", Status.FAIL)
        elif isinstance(res, BaseException):
            raise res
        else:
            done[node] = res
    return done


async def run_batch(pool: RemotePool, node: str, batch: Batch, verb: str, progress: Progress,
                    timeout_base: float) -> dict[str, ToolOutput]:
    """One batch of tool calls on one node, in one round trip; the outputs by call id."""
    nonce = new_nonce()
    calls = sum(1 for line in batch.lines if line.startswith("pdw_call"))
    progress.node(node, f"{verb} (one round trip)")
    result = await pool.run_script(node, build_script(batch, nonce), timeout=timeout_base + PER_CALL_TIMEOUT_S * calls)
    return split_output(result.stdout, nonce)


async def connect_nodes(pool: RemotePool, nodes: list[str], progress: Progress,
                        step: StepReport) -> dict[str, RemoteError | None]:
    """Connect every node in parallel into `step`: per node (in the given order) its RemoteError, or
    None when it is reachable. The error is kept whole: a TUI asks about an unknown host key from it."""
    async def one(node: str) -> RemoteError | None:
        progress.node(node, "connecting")
        try:
            await pool.connect(node)
        except RemoteError as exc:
            progress.node(node, f"connect failed: {exc.kind}", Status.FAIL)
            return exc
        progress.node(node, "connected")
        return None

    with _timed(step):
        results = await asyncio.gather(*(one(n) for n in nodes))
        for name, err in zip(nodes, results):
            if err is None:
                step.add(CheckResult(check="ssh", node=name, status=Status.OK, value="connected"))
            else:
                step.add(_remote_failure("ssh", err))
    return dict(zip(nodes, results))


async def discover_nodes(pool: RemotePool, nodes: list[str], progress: Progress, step: StepReport, *,
                         container: str | None = None, model_paths: dict[str, str | None] | None = None,
                         timeout_base: float = 60.0) -> dict[str, NodeFacts]:
    """Discovery of `nodes` (one round trip each, in parallel) into `step`: the facts by node.
    The TUI's node step runs it before any instance exists; the flow runs it for a session."""
    model = model_paths or {}
    facts: dict[str, NodeFacts] = {}

    async def one(node: str) -> dict[str, ToolOutput]:
        batch = discovery_batch(container, model_path=model.get(node))
        return await run_batch(pool, node, batch, "discovering", progress, timeout_base)

    with _timed(step):
        outs = await each_node(nodes, one, step, progress)
        for name in nodes:
            if name not in outs:
                continue
            found, results = parse_facts(name, outs[name], model_path=model.get(name))
            facts[name] = found
            for r in results:
                step.add(r)
            step.add(CheckResult(check="discovery", node=name, status=Status.OK,
                                 value=f"{found.soc or '?'}, {len(found.npus)} NPUs"))
            progress.node(name, f"discovered {found.soc or '?'} with {len(found.npus)} NPUs")
    return facts


def _only(scope: RerunScope, devices: dict[str, list[int]],
          pings: dict[str, list[Ping]]) -> tuple[dict[str, list[int]], dict[str, list[Ping]]]:
    """The NPUs and the pings behind a re-run (a ping result's target names its peer); a node
    whose whole script failed runs all of it again."""
    devs = {n: [d for d in ds if n in scope.nodes or (n, d) in scope.npus] for n, ds in devices.items()}
    only = {n: [p for p in ps if n in scope.nodes or (n, p.src.device, ping_target(p)) in scope.pings]
            for n, ps in pings.items()}
    return devs, only


def merge_fabric(old: StepReport, new: StepReport, rerun: Sequence[CheckResult]) -> StepReport:
    """The last full fabric step with a re-run's verdicts in place of the ones it repeated.

    The TLS agreement is judged again over the merged NPUs (a re-run alone sees only its own
    NPUs): the old mismatch verdicts (a failed "tls" beside a passing one for the same NPU)
    are dropped and the agreement is taken anew."""
    scope = RerunScope.of(rerun)
    kept = [r for r in old.results if not scope.covers(r)] + list(new.results)
    merged = StepReport(name=old.name, note=old.note)
    for r in _retally_tls(kept):
        merged.add(r)
    merged.finish(old.duration_s)
    return merged


def _retally_tls(results: list[CheckResult]) -> list[CheckResult]:
    read = {(r.node, r.device) for r in results if r.check == "tls" and r.status is Status.OK}
    kept = [r for r in results
            if not (r.check == "tls" and r.status is Status.FAIL and (r.node, r.device) in read)]
    return kept + tls_agreement(kept)


def _remote_failure(check: str, err: RemoteError) -> CheckResult:
    return CheckResult(check=check, node=err.node, status=Status.FAIL, value=err.kind,
                       message=err.message, hint=err.hint)


def _tally(results: list[CheckResult]) -> str:
    n = {s: sum(1 for r in results if r.status is s) for s in Status}
    return f"{n[Status.OK]} ok, {n[Status.WARN]} warn, {n[Status.FAIL]} fail"


class _timed:
    """Context manager that closes a step with its duration and worst status."""

    def __init__(self, step: StepReport) -> None:
        self.step = step

    def __enter__(self) -> StepReport:
        self.start = time.monotonic()
        return self.step

    def __exit__(self, *exc: object) -> None:
        self.step.finish(time.monotonic() - self.start)
