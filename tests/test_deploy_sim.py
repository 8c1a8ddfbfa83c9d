"""End to end on the simulator: the guide's 1P2D rendered from its session, launched with the
fake `vllm serve` and pdwizard's own proxy, a completion through the proxy, status, logs, stop;
and a start-up fault diagnosed from the fake vllm's real error text."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from conftest import listening, pid_alive
from test_deploy_support import guide

from pdwizard.deploy import (LaunchObserver, LogSource, LogTail, launch, plan_for, sim_addresses,
                             status_session, stop_session)


class _Lines(LaunchObserver):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def readiness(self, line: str, elapsed_s: float) -> None:
        if not self.lines or self.lines[-1] != line:
            self.lines.append(line)


async def test_the_guide_1p2d_launches_serves_a_completion_and_stops(tmp_path: Path) -> None:
    async with guide(tmp_path) as (session, cluster, pool, art):
        plan = plan_for(session, art.deployment, addresses=sim_addresses(session))
        seen = _Lines()
        result = await launch(pool, plan, observer=seen, ranktable=art.ranktable, poll_interval=0.1)
        assert result.ok, "\n".join(result.lines())
        assert seen.lines[0] == "P 0/1  D 0/2  proxy waiting" and seen.lines[-1] == "P 1/1  D 2/2  proxy ready"

        proxy = plan.proxy
        async with aiohttp.ClientSession() as client:
            async with client.post(f"http://{proxy.health_host}:{proxy.port}/v1/completions",
                                   json={"model": "qwen3-moe", "prompt": "Who are you?", "max_tokens": 8}) as r:
                body = await r.json()
                assert r.status == 200, body
                assert r.headers.get("X-PD-KV-Params") == "forwarded"
        assert body["choices"][0]["text"]

        state = await status_session(pool, session, addresses=sim_addresses(session))
        assert {(p.name, p.state, p.answering) for p in state.processes} == {
            ("p1-prefill-0", "running", True), ("d1-decode-0", "running", True),
            ("d2-decode-0", "running", True), ("p1-proxy-0", "running", True)}

        async with LogTail(pool, session.name, LogSource.of(plan.processes)) as tail:
            async for line in tail:
                if line.process == "p1-proxy-0" and "kv=forwarded" in line.text:
                    break

        report = await stop_session(pool, session)
        assert report.ok, report.lines()
        for proc in result.processes.values():
            assert not pid_alive(proc.pid) and not listening(proc.spec.health_host, proc.spec.port)
        assert (await stop_session(pool, session)).nothing_to_do


@pytest.mark.parametrize(("fault", "diagnosis"), [
    ("oom", "npu_out_of_memory"), ("port_in_use", "hccl_port_in_use"), ("hccl_timeout", "hccl_socket_timeout")])
async def test_a_start_up_fault_is_diagnosed_from_the_fake_vllm_log(tmp_path: Path, fault: str,
                                                                    diagnosis: str) -> None:
    async with guide(tmp_path, {"d2": {"vllm_fault": fault}}) as (session, cluster, pool, art):
        plan = plan_for(session, art.deployment, addresses=sim_addresses(session))
        result = await launch(pool, plan, ranktable=art.ranktable, poll_interval=0.1)
        assert not result.ok
        [failure] = result.failures
        assert failure.process == "d2-decode-0" and failure.exit_status == 1
        assert [d.id for d in failure.diagnoses][:1] == [diagnosis], failure.lines()
        assert result.cleanup is not None and result.cleanup.ok
        for proc in result.processes.values():
            assert proc.pid is None or not pid_alive(proc.pid)
