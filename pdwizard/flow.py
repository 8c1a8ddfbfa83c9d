"""The check flow, shared by the headless replay and the TUI.

connect -> discover -> node checks -> preflight -> fabric checks and ping matrix. Nodes run in
parallel, one round trip per node per phase; one failing node never stops the
others' checks. Results land in a `Report`; nothing here prints: it tells a
`Progress`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable, TypeVar

from pdwizard.discovery import discovery_batch, parse_facts
from pdwizard.errors import InputError, RemoteError
from pdwizard.fabric import evaluate_npu, evaluate_pings, fabric_batch, tls_agreement
from pdwizard.models import Session
from pdwizard.nodechecks import check_node, check_versions, missing_devices, selected_devices
from pdwizard.pingplan import Endpoint, PingPlan, plan_pings
from pdwizard.preflight import run_preflight
from pdwizard.probe import Batch, ToolOutput, build_script, new_nonce, split_output
from pdwizard.progress import Progress
from pdwizard.remote.pool import RemotePool
from pdwizard.report import CheckResult, NodeFacts, Report, Status, StepReport, worst

T = TypeVar("T")

#: Seconds a batch may take per tool call it holds, on top of a fixed allowance:
#: a real `hccn_tool -ping` of 3 packets can take a few seconds.
PER_CALL_TIMEOUT_S = 6.0


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
        with _timed(step):
            results = await asyncio.gather(*(self._connect_one(n) for n in self.nodes))
            for name, err in zip(self.nodes, results):
                if err is None:
                    self.reachable.append(name)
                    step.add(CheckResult(check="ssh", node=name, status=Status.OK, value="connected"))
                else:
                    step.add(_remote_failure("ssh", err))
        return step

    async def _connect_one(self, node: str) -> RemoteError | None:
        self.progress.node(node, "connecting")
        try:
            await self.pool.connect(node)
        except RemoteError as exc:
            self.progress.node(node, f"connect failed: {exc.kind}", Status.FAIL)
            return exc
        self.progress.node(node, "connected")
        return None

    async def discover(self) -> StepReport:
        step = self.report.step("discovery")
        container = self.session.stack.container if self.session.stack else None
        serving = {i.node for i in self.session.instances}  # the model is probed where it is served
        model = {n: self.session.model.path if n in serving else None for n in self.reachable}
        with _timed(step):
            batches = {n: discovery_batch(container, model_path=model[n]) for n in self.reachable}
            outs = await self._each(self.reachable, lambda n: self._batch(n, batches[n], "discovering"), step)
            for name, out in outs.items():
                facts, results = parse_facts(name, out, model_path=model[name])
                self.facts[name] = facts
                self.report.nodes[name] = facts
                for r in results:
                    step.add(r)
                step.add(CheckResult(check="discovery", node=name, status=Status.OK,
                                     value=f"{facts.soc or '?'}, {len(facts.npus)} NPUs"))
                self.progress.node(name, f"discovered {facts.soc or '?'} with {len(facts.npus)} NPUs")
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

    async def fabric(self) -> StepReport:
        step = self.report.step("fabric")
        skip = set(self.session.checks.skip) if self.session.checks else set()
        plan = self.plan()
        self.ping_plan = plan
        step.note = plan.describe()
        self.progress.say(plan.describe())
        devices = selected_devices(self.session)
        with _timed(step):
            batches = {n: fabric_batch(self._present(n, devices.get(n, [])),
                                       plan.by_node.get(n, []), skip)
                       for n in self.facts}
            outs = await self._each(list(self.facts), lambda n: self._batch(n, batches[n], "checking"), step)
            for name, out in outs.items():
                results = self._evaluate(name, self._present(name, devices.get(name, [])),
                                         out, plan, skip)
                for r in results:
                    step.add(r)
                self.progress.node(name, _tally(results), worst([r.status for r in results]))
            for r in tls_agreement(step.results):
                step.add(r)
        return step

    def _present(self, node: str, devices: list[int]) -> list[int]:
        facts = self.facts[node]
        return [d for d in devices if facts.npu(d) is not None]

    def _evaluate(self, node: str, devices: list[int], out: dict[str, ToolOutput],
                  plan: PingPlan, skip: set[str]) -> list[CheckResult]:
        results: list[CheckResult] = []
        for d in devices:
            results.extend(evaluate_npu(node, d, out, self.facts[node], skip))
        if "ping" not in skip:
            results.extend(evaluate_pings(node, plan.by_node.get(node, []), out))
        return results

    async def _batch(self, node: str, batch: Batch, verb: str) -> dict[str, ToolOutput]:
        nonce = new_nonce()
        calls = sum(1 for line in batch.lines if line.startswith("pdw_call"))
        self.progress.node(node, f"{verb} (one round trip)")
        timeout = self._timeout(calls)
        result = await self.pool.run_script(node, build_script(batch, nonce), timeout=timeout)
        return split_output(result.stdout, nonce)

    def _timeout(self, calls: int) -> float:
        base = self.session.ssh.command_timeout if self.session.ssh else 60.0
        return float(base or 60.0) + PER_CALL_TIMEOUT_S * calls

    async def _each(self, nodes: list[str], fn: Callable[[str], Awaitable[T]],
                    step: StepReport) -> dict[str, T]:
        """Run fn on every node in parallel; a node that fails is reported, not fatal."""
        results = await asyncio.gather(*(fn(n) for n in nodes), return_exceptions=True)
        done: dict[str, T] = {}
        for node, res in zip(nodes, results):
            if isinstance(res, RemoteError):
                step.add(_remote_failure(step.name, res))
                self.progress.node(node, f"{step.name} failed: {res.kind}", Status.FAIL)
            elif isinstance(res, BaseException):
                raise res
            else:
                done[node] = res
        return done


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
