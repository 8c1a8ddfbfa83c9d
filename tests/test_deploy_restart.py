"""Restart one process of a running launch (pdwizard.deploy.restart) over real SSH to the
simulator, and the process board the TUI's launch step shows (pdwizard.deploy.board).

The guide's 1P2D runs with the fake `vllm serve` and pdwizard's proxy; the failing restart
uses stand-ins (tests/test_deploy_support.py) so that only the restarted launcher fails.
"""

from __future__ import annotations

import socket
from pathlib import Path

import aiohttp
import pytest
from conftest import listening, pid_alive
from test_deploy_support import guide, plan, pool_for, run_dir_of, standin

from pdwizard.deploy import LaunchObserver, launch, plan_for, sim_addresses, stop, stop_session
from pdwizard.deploy.board import ProcessBoard
from pdwizard.deploy.plan import DeployPlan
from pdwizard.deploy.restart import restart


class Clock:
    """A clock the test moves by hand: the board's times are exact."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Feed(LaunchObserver):
    """Feeds a board as the TUI does, and keeps the events for asserts."""

    def __init__(self, board: ProcessBoard) -> None:
        self.board, self.events, self.failures, self.lines = board, [], [], []

    def readiness(self, line: str, elapsed_s: float) -> None:
        self.lines.append(line)

    def event(self, text: str) -> None:
        self.events.append(text)
        self.board.event(text)

    def failure(self, failure) -> None:
        self.failures.append(failure)
        self.board.failure(failure)


def env_of(pid: int) -> set[str]:
    return set(Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0"))


async def health(host: str, port: int) -> int:
    async with aiohttp.ClientSession() as client:
        async with client.get(f"http://{host}:{port}/health") as r:
            return r.status


async def test_restarting_the_decode_keeps_the_others_and_the_launch_record(tmp_path: Path) -> None:
    async with guide(tmp_path, own_net=True) as (session, cluster, pool, art):
        deploy = plan_for(session, art.deployment, addresses=sim_addresses(session))
        clock = Clock()
        board = ProcessBoard(clock)
        board.load(deploy.processes)
        seen = Feed(board)
        first = await launch(pool, deploy, observer=seen, ranktable=art.ranktable, poll_interval=0.1)
        assert first.ok, "\n".join(first.lines())
        board.settle(first)
        assert board.all_healthy()
        pids = {n: p.pid for n, p in first.processes.items()}
        records = {n: (run_dir_of(cluster, n, session.name) / "launched.json").read_bytes() for n in ("p1", "d1", "d2")}

        clock.now = 130.0
        board.restarting("d1-decode-0")
        states = {n: p.state for n, p in first.processes.items()}
        result = await restart(pool, deploy, "d1-decode-0", launch_id=first.launch_id, observer=seen,
                               states=states, poll_interval=0.1)
        assert result.ok, "\n".join(result.lines())
        new = result.process
        assert new.pid != pids["d1-decode-0"] and pid_alive(new.pid)
        assert not pid_alive(pids["d1-decode-0"])
        assert [p.outcome for p in result.stopped.nodes["d1"].processes] == ["terminated"]
        spec = next(p for p in deploy.processes if p.name == "d1-decode-0")
        assert await health(spec.health_host, spec.port) == 200
        # the restarted process is one of this launch: same launch id and session marker
        assert f"PDWIZARD_LAUNCH={first.launch_id}" in env_of(new.pid)
        assert (run_dir_of(cluster, "d1", session.name) / "d1-decode-0.pid").read_text().strip() == str(new.pid)
        log = (run_dir_of(cluster, "d1", session.name) / "d1-decode-0.log").read_text()
        assert log.count("=== pdwizard launch d1-decode-0 ") == 2
        # the others kept their processes; launched.json is the launch's, untouched
        for name in ("p1-prefill-0", "d2-decode-0", "p1-proxy-0"):
            assert pid_alive(pids[name]), name
        assert {n: (run_dir_of(cluster, n, session.name) / "launched.json").read_bytes()
                for n in ("p1", "d1", "d2")} == records
        # the readiness line counted the others as they were
        assert seen.lines[-1] == "P 1/1  D 2/2  proxy ready"
        # the board followed it: stopped for the restart, then started, then healthy, new pid
        row = board.rows["d1-decode-0"]
        assert (row.state, row.pid, row.since, row.until) == ("healthy", new.pid, 130.0, 130.0)
        assert any(e.startswith("restart: d1: d1-decode-0 (pgid ") and e.endswith(" terminated")
                   for e in seen.events)
        assert [r.pid for n, r in board.rows.items() if n != "d1-decode-0"] == \
            [pids[n] for n in board.rows if n != "d1-decode-0"]

        # the proxy shares node p1 with the prefill: restarting it leaves the prefill alone
        proxy = deploy.proxy
        again = await restart(pool, deploy, proxy.name, launch_id=first.launch_id, poll_interval=0.1)
        assert again.ok, "\n".join(again.lines())
        assert again.process.pid != pids[proxy.name] and pid_alive(again.process.pid)
        assert [(p.name, p.outcome) for p in again.stopped.nodes["p1"].processes] == [(proxy.name, "terminated")]
        assert pid_alive(pids["p1-prefill-0"]) and pid_alive(new.pid)
        async with aiohttp.ClientSession() as client:  # the deployment still serves
            for _ in range(2):
                async with client.post(f"http://{proxy.health_host}:{proxy.port}/v1/completions",
                                       json={"model": "qwen3-moe", "prompt": "Who are you?", "max_tokens": 4}) as r:
                    assert r.status == 200, await r.text()

        report = await stop_session(pool, session)  # a later stop finds the restarted one too
        assert report.ok, report.lines()
        assert {p.name for n in report.nodes.values() for p in n.processes if p.outcome == "terminated"} == \
            set(pids)
        for proc in [*first.processes.values(), new, again.process]:
            assert not pid_alive(proc.pid)
            assert not listening(proc.spec.health_host, proc.spec.port)
        assert (await stop_session(pool, session)).nothing_to_do


async def test_a_failing_restart_is_diagnosed_and_stops_only_what_it_started(sim_cluster_factory) -> None:
    cluster = await sim_cluster_factory({"name": "p1"}, {"name": "d1"})
    p1, d1 = cluster.nodes
    good = plan("rs", standin("p1-prefill-0", p1), standin("d1-decode-0", d1, "decode"))
    # the same process, whose launcher now fails at start-up (say its NPUs are held meanwhile)
    failing = standin("d1-decode-0", d1, "decode", port=good.processes[1].port,
                      env={"STANDIN_FAIL": "RuntimeError: NPU out of memory. Tried to allocate 2.00 GiB"})
    bad = DeployPlan(session="rs", processes=(good.processes[0], failing), startup_timeout_s=good.startup_timeout_s,
                     stop_grace_s=good.stop_grace_s, command_timeout_s=good.command_timeout_s)
    async with pool_for(cluster) as pool:
        first = await launch(pool, good, poll_interval=0.05)
        assert first.ok, first.lines()
        record = (run_dir_of(cluster, "d1", "rs") / "launched.json").read_bytes()
        board = ProcessBoard(Clock())
        board.load(good.processes)
        board.settle(first)
        seen = Feed(board)
        result = await restart(pool, bad, "d1-decode-0", launch_id=first.launch_id, observer=seen,
                               poll_interval=0.05)
        assert not result.ok
        [failure] = result.failures
        assert (failure.process, failure.exit_status) == ("d1-decode-0", 1)
        assert [d.id for d in failure.diagnoses][:1] == ["npu_out_of_memory"], failure.lines()
        assert any("NPU out of memory" in ln for ln in failure.log_tail)
        assert result.cleanup is not None and result.cleanup.ok
        assert set(result.cleanup.nodes) == {"d1"}  # the cleanup went nowhere else
        assert not pid_alive(first.processes["d1-decode-0"].pid)
        assert result.process.pid is None or not pid_alive(result.process.pid)
        assert pid_alive(first.processes["p1-prefill-0"].pid)  # the prefill was never touched
        assert (run_dir_of(cluster, "d1", "rs") / "launched.json").read_bytes() == record
        assert (board.rows["d1-decode-0"].state, board.rows["p1-prefill-0"].state) == ("failed", "healthy")
        assert board.rows["d1-decode-0"].note == "exit 1 · npu_out_of_memory"
        assert "restart of d1-decode-0 FAILED" in result.lines()[0]

        # restarting it with its good launcher brings it back
        again = await restart(pool, good, "d1-decode-0", launch_id=first.launch_id, poll_interval=0.05)
        assert again.ok, again.lines()
        assert pid_alive(again.process.pid)
        report = await stop(pool, ["p1", "d1"], "rs")
        assert report.ok and not any(pid_alive(p.pid) for p in (again.process, first.processes["p1-prefill-0"]))


async def test_a_restart_refuses_a_port_someone_else_holds(sim_cluster_factory) -> None:
    cluster = await sim_cluster_factory({"name": "p1"})
    [p1] = cluster.nodes
    good = plan("rp", standin("p1-prefill-0", p1))
    async with pool_for(cluster) as pool:
        first = await launch(pool, good, poll_interval=0.05)
        assert first.ok, first.lines()
        spec = good.processes[0]
        with socket.socket() as squatter:  # a stranger takes the port the moment it is free
            await stop(pool, ["p1"], "rp", launch_id=first.launch_id, names={"p1": [spec.name]})
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            squatter.bind((spec.health_host, spec.port))
            squatter.listen(1)
            result = await restart(pool, good, spec.name, launch_id=first.launch_id, poll_interval=0.05)
        assert not result.ok
        assert "still answers after the stop" in result.failures[0].reason
        assert result.process.pid is None and result.cleanup is None  # nothing was started
        assert not (run_dir_of(cluster, "p1", "rp") / f"{spec.name}.pid").exists()


def test_restart_names_a_process_of_the_plan() -> None:
    import asyncio

    with pytest.raises(ValueError, match="no process 'x0'"):
        asyncio.run(restart(None, plan("rn"), "x0", launch_id="0"))  # type: ignore[arg-type]


def test_the_board_follows_a_failed_launch_and_its_cleanup() -> None:
    from pdwizard.deploy.launch import Failure, LaunchedProcess, LaunchResult
    from pdwizard.deploy.stop import NodeStop, StopReport, StoppedProcess

    clock = Clock()
    board = ProcessBoard(clock)
    specs = [standin_spec("p1-prefill-0", "p1", "prefill"), standin_spec("d1-decode-0", "d1", "decode")]
    board.load(specs)
    assert [r.state for r in board.rows.values()] == ["pending", "pending"]
    assert board.event("started p1-prefill-0 (prefill p1:1) pid 11")
    assert board.event("started d1-decode-0 (decode d1:2) pid 12")
    assert not board.event("started 2 instance(s); the proxy waits for them")
    clock.now = 103.0
    assert board.rows["p1-prefill-0"].elapsed(clock()) == 3.0
    assert board.failure(Failure("d1", "exited with status 1 after 3.0 s", process="d1-decode-0"))
    assert not board.failure(Failure("d1", "node lost"))
    clock.now = 104.0
    assert board.event("cleanup: p1: p1-prefill-0 (pgid 11) terminated")
    assert not board.event("cleanup: d1: d1-decode-0 (pgid 12) not_running")  # it stays failed
    rows = board.rows
    assert (rows["p1-prefill-0"].state, rows["p1-prefill-0"].note, rows["p1-prefill-0"].elapsed(200.0)) == \
        ("stopped", "stopped by the cleanup", 4.0)
    assert (rows["d1-decode-0"].state, rows["d1-decode-0"].elapsed(200.0)) == ("failed", 3.0)
    # the result agrees; a stop that left a process says so
    result = LaunchResult(ok=False, launch_id="x", processes={
        "p1-prefill-0": LaunchedProcess(specs[0], pid=11, state="starting"),
        "d1-decode-0": LaunchedProcess(specs[1], pid=12, state="failed")})
    board.settle(result)
    assert [r.state for r in board.rows.values()] == ["stopped", "failed"]
    board.stopped(StopReport({"p1": NodeStop("p1", [StoppedProcess("p1-prefill-0", 11, "left", (11,))])}))
    assert "still alive" in board.rows["p1-prefill-0"].note
    assert board.counts() == {"pending": 0, "starting": 0, "healthy": 0, "failed": 1, "stopped": 1}


def standin_spec(name: str, node: str, role: str):
    from pdwizard.deploy.plan import ProcessSpec

    return ProcessSpec.make(name, node, role, 1, ["true"], health_host="127.0.0.1")
