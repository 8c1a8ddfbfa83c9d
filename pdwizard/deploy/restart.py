"""Restart one process of a running launch: stop it, start it again with the same spec, wait
until it is healthy again. The other processes are not touched.

Why it reuses the launch's pieces: the restarted process must look exactly like one the
launch started, so that stop, status and the launch's own cleanup find it like any other:

- it runs under the **same launch id** (`PDWIZARD_LAUNCH`) and the session marker, from the
  same launcher (`<name>.sh`, installed again) through the same detached wrapper, and appends
  to the same log after a new `=== pdwizard launch` header (a live log tail keeps following it);
- **launched.json is not rewritten**: it describes the whole plan and its launch id, which
  stay true; writing a one-process record would make `--status` / `--stop` of a later run see
  only that process.

Steps: (1) stop only `name` on its node (`stop(..., launch_id=, names={node: [name]})`: a process
of another launch under that name is never touched); (2) refuse to go on when it is still
alive, or its port still answers (something else holds it: the health check would pass for
the wrong process); (3) one launch-script round trip starting it (its busy check covers only
this name); (4) the launch's poll loop until it is healthy or its role's deadline passes;
a failure is diagnosed from its log like a launch failure, and the process this restart
started is stopped again (never the others).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from pdwizard.deploy.health import port_answers
from pdwizard.deploy.launch import Failure, LaunchedProcess, LaunchObserver, LaunchResult, _Launch, launch_script
from pdwizard.deploy.plan import DeployPlan, ProcessSpec
from pdwizard.deploy.stop import StopReport, stop
from pdwizard.probe import new_nonce
from pdwizard.remote.pool import RemotePool


@dataclass
class RestartResult:
    """What a restart did: the old process's stop, the new one, and why it failed if it did."""

    ok: bool
    name: str
    process: LaunchedProcess                   # the new process (state healthy when ok)
    stopped: StopReport | None = None          # the stop of the old one (None: refused before)
    failures: list[Failure] = field(default_factory=list)
    cleanup: StopReport | None = None          # the new process stopped again after it failed
    duration_s: float = 0.0

    def lines(self) -> list[str]:
        head = f"restart of {self.name} {'ready' if self.ok else 'FAILED'} ({self.duration_s:.1f} s)"
        out = [head]
        if self.stopped is not None:
            out += [f"  stop: {ln}" for ln in self.stopped.lines()]
        for f in self.failures:
            out += [f"  {ln}" for ln in f.lines()]
        if self.cleanup is not None:
            out += [f"  cleanup: {ln}" for ln in self.cleanup.lines()]
        return out


async def restart(pool: RemotePool, plan: DeployPlan, name: str, *, launch_id: str,
                  observer: LaunchObserver | None = None, states: Mapping[str, str] | None = None,
                  poll_interval: float = 1.0, liveness_interval: float | None = None) -> RestartResult:
    """Restart process `name` of the launch `launch_id` of `plan` (see the module docstring).

    `states` (process name -> state) are the other processes' states, so the readiness line
    the observer hears counts them. Never raises for a failed restart, only for bugs and
    ValueError when `name` is not in the plan; cancellation stops what it started, then re-raises.
    """
    spec = next((p for p in plan.processes if p.name == name), None)
    if spec is None:
        raise ValueError(f"no process {name!r} in the plan of session {plan.session}")
    live = poll_interval if liveness_interval is None else max(poll_interval, liveness_interval)
    run = _Restart(pool, plan, spec, launch_id, observer or LaunchObserver(), poll_interval, live, states or {})
    result = await run.run(None, True)
    return run.outcome(result)


class _Restart(_Launch):
    """A launch of one process of an existing launch: its steps are stop, check, start, watch."""

    def __init__(self, pool: RemotePool, plan: DeployPlan, spec: ProcessSpec, launch_id: str,
                 observer: LaunchObserver, interval: float, liveness_interval: float,
                 states: Mapping[str, str]) -> None:
        super().__init__(pool, plan, observer, interval, liveness_interval)
        self.launch_id = launch_id          # the launch's own id: its cleanup and stop find the new process
        self.spec = spec
        self.stopped: StopReport | None = None
        for other, state in states.items():
            if other != spec.name and other in self.ready.states:
                self.ready.set(other, state)

    def outcome(self, result: LaunchResult) -> RestartResult:
        return RestartResult(ok=result.ok, name=self.spec.name, process=result.processes[self.spec.name],
                             stopped=self.stopped, failures=result.failures, cleanup=result.cleanup,
                             duration_s=round(time.monotonic() - self.t0, 3))

    async def _steps(self, ranktable: str | None) -> list[Failure]:
        spec = self.spec
        self.obs.event(f"restart {spec.name} ({spec.label}): stopping it")
        failures = await self._stop_old()
        if failures:
            return failures
        nonce = new_nonce()
        script = launch_script(self.plan, spec.node, start=[spec], install=[spec], busy_check=[spec.name],
                               requires=spec.requires, launch_id=self.launch_id, nonce=nonce)
        failures = await self._run_launch(spec.node, [spec], script, nonce)
        if failures:
            return failures
        self.ready.set(spec.name, "starting")  # the launch leaves an early proxy "waiting" here
        self._tick()
        return await self._watch({spec.name})

    async def _stop_old(self) -> list[Failure]:
        spec = self.spec
        self.stopped = await stop(self.pool, [spec.node], self.plan.session, runtime=self.plan.runtime,
                                  grace_s=self.plan.stop_grace_s, launch_id=self.launch_id,
                                  names={spec.node: [spec.name]})
        for line in self.stopped.lines():
            self.obs.event(f"restart: {line}")
        node = self.stopped.nodes[spec.node]
        if node.error:
            return [self._refused(f"could not stop it: {node.error}", "check the node, then restart again")]
        outcomes = {p.name: p.outcome for p in node.processes}
        if outcomes.get(spec.name) == "left":
            return [self._refused("still alive after SIGKILL: not started again",
                                  "see what holds it on the node (ps, npu-smi info), then restart again")]
        if outcomes.get(spec.name) == "not_ours":
            return [self._refused("a process of another launch runs under this name: not touched",
                                  "stop the session (Stop all), then launch again")]
        self.ready.set(spec.name, "pending")
        if await port_answers(spec.health_host, spec.port):
            return [self._refused(f"port {spec.port} on {spec.health_host} still answers after the stop",
                                  "another program holds the port: stop it, then restart again")]
        return []

    def _refused(self, reason: str, hint: str) -> Failure:
        return Failure(self.spec.node, reason, process=self.spec.name, role=self.spec.role, hint=hint)


__all__ = ["RestartResult", "restart"]
