"""Launch, health, failure diagnosis, cleanup, stop and status over real SSH to the simulator.

The processes are stand-ins (tests/test_deploy_support.py) launched through the real path:
launch script, detached wrapper, pid files, logs, liveness rounds, HTTP health, stop script.
Nothing of the remote layer is mocked.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from conftest import listening, pid_alive, wait_until
from test_deploy_support import group_members, plan, pool_for, run_dir_of, standin

from pdwizard.deploy import LaunchObserver, launch, status, stop


class Recorder(LaunchObserver):
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.events: list[str] = []
        self.failures: list = []

    def readiness(self, line: str, elapsed_s: float) -> None:
        if not self.lines or self.lines[-1] != line:
            self.lines.append(line)

    def event(self, text: str) -> None:
        self.events.append(text)

    def failure(self, failure) -> None:
        self.failures.append(failure)


def gone(pgid: int, host: str, port: int) -> bool:
    return not pid_alive(pgid) and not group_members(pgid) and not listening(host, port)


def marked(cluster, session: str, node: str) -> list[int]:
    """Live processes of this cluster's `node` carrying the session marker (children that left
    their group included; other test runs on this machine use the same names)."""
    n = cluster.node(node)
    needles = {f"PDWIZARD_SESSION={n.home}/.pdwizard/runs/{session}".encode(),
               f"PDWIZARD_SIM_NODE={n.state_dir}".encode()}
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if needles <= set(f.read().split(b"\0")) and pid_alive(int(entry)):
                        out.append(int(entry))
            except OSError:
                pass
    return out


async def test_instances_start_together_and_the_proxy_once_they_are_healthy(sim_cluster_factory) -> None:
    cluster = await sim_cluster_factory({"name": "p1"}, {"name": "d1"}, {"name": "d2"})
    p1, d1, d2 = cluster.nodes
    deploy = plan("s1",
                  standin("p1-prefill-0", p1),
                  standin("d1-decode-0", d1, "decode", env={"STANDIN_DELAY": "0.6"}),
                  standin("d2-decode-0", d2, "decode", env={"STANDIN_DELAY": "0.3"}),
                  standin("p1-proxy-0", p1, "proxy", health_paths=("/healthcheck",)))
    seen = Recorder()
    async with pool_for(cluster) as pool:
        result = await launch(pool, deploy, observer=seen, poll_interval=0.05, ranktable='{"version": "1.2"}')
    assert result.ok, result.lines()
    assert seen.lines[0] == "P 0/1  D 0/2  proxy waiting"
    assert "P 1/1  D 1/2  proxy waiting" in seen.lines
    assert seen.lines[-1] == "P 1/1  D 2/2  proxy ready"
    order = [e.split()[0] for e in seen.events if e.endswith(tuple("0123456789s"))]
    assert order  # events were reported
    started = [e for e in seen.events if e.startswith("started ") and "pid" in e]
    assert [e.split()[1] for e in started][-1] == "p1-proxy-0"
    last_healthy_instance = max(i for i, e in enumerate(seen.events) if e.startswith(("d1-decode-0 healthy",
                                                                                        "d2-decode-0 healthy")))
    assert seen.events.index(started[-1]) > last_healthy_instance
    # all instances were started in the same round trip per node, before any was healthy
    assert all(seen.events.index(e) < last_healthy_instance for e in started[:-1])

    for proc in result.processes.values():
        run = run_dir_of(cluster, proc.spec.node, "s1")
        assert (run / f"{proc.spec.name}.pid").read_text().strip() == str(proc.pid)
        assert (run / f"{proc.spec.name}.log").read_text().startswith(f"=== pdwizard launch {proc.spec.name} ")
        assert os.access(run / f"{proc.spec.name}.sh", os.X_OK)
        assert group_members(proc.pid)  # its own process group, led by the wrapper
        env = set(Path(f"/proc/{proc.pid}/environ").read_bytes().decode().split("\0"))
        assert {f"PDWIZARD_SESSION={run}", f"PDWIZARD_PROCESS={proc.spec.name}",
                f"PDWIZARD_LAUNCH={result.launch_id}"} <= env
        ignored = next(ln for ln in Path(f"/proc/{proc.pid}/status").read_text().splitlines()
                       if ln.startswith("SigIgn:"))
        assert int(ignored.split()[1], 16) & 0b110 == 0  # SIGINT and SIGQUIT are not ignored
    for name in ("p1", "d1", "d2"):
        record = json.loads((run_dir_of(cluster, name, "s1") / "launched.json").read_text())
        assert record["launch_id"] == result.launch_id
        assert [p["name"] for p in record["processes"]] == [p.name for p in deploy.processes]
    assert (run_dir_of(cluster, "d1", "s1") / "ranktable.json").read_text() == '{"version": "1.2"}'
    assert not (run_dir_of(cluster, "p1", "s1") / "ranktable.json").with_suffix(".tmp").exists()


async def test_processes_survive_the_connection_and_a_later_run_stops_them(sim_cluster_factory) -> None:
    cluster = await sim_cluster_factory({"name": "p1"}, {"name": "d1"})
    p1, d1 = cluster.nodes
    deploy = plan("s2", standin("p1-prefill-0", p1), standin("d1-decode-0", d1, "decode"))
    async with pool_for(cluster) as pool:
        result = await launch(pool, deploy, poll_interval=0.05)
        assert result.ok, result.lines()
    # the pool (and every SSH connection) is closed: the processes live on
    pids = {n: p.pid for n, p in result.processes.items()}
    assert all(pid_alive(pid) for pid in pids.values())
    specs = {p.name: p for p in deploy.processes}
    assert all(listening(specs[n].health_host, specs[n].port) for n in pids)

    async with pool_for(cluster) as later:  # a later run: nothing in memory but the session
        state = await status(later, ["p1", "d1"], "s2")
        assert {(p.name, p.state, p.pid, p.answering) for p in state.processes} == {
            ("p1-prefill-0", "running", pids["p1-prefill-0"], True),
            ("d1-decode-0", "running", pids["d1-decode-0"], True)}
        assert {p.role for p in state.processes} == {"prefill", "decode"}
        report = await stop(later, ["p1", "d1"], "s2", grace_s=5)
        assert report.ok and not report.nothing_to_do
        assert {(p.name, p.outcome) for n in report.nodes.values() for p in n.processes} == {
            ("p1-prefill-0", "terminated"), ("d1-decode-0", "terminated")}
        for name, pid in pids.items():
            assert gone(pid, specs[name].health_host, specs[name].port)
            run = run_dir_of(cluster, specs[name].node, "s2")
            assert not (run / f"{name}.pid").exists()
            assert (run / f"{name}.log").exists()  # logs stay
        state = await status(later, ["p1", "d1"], "s2")
        assert {(p.name, p.state) for p in state.processes} == {("p1-prefill-0", "not_running"),
                                                                ("d1-decode-0", "not_running")}
        again = await stop(later, ["p1", "d1"], "s2", grace_s=5)
        assert again.ok and again.nothing_to_do


async def test_early_exit_is_diagnosed_and_the_launch_cleans_up(sim_cluster_factory) -> None:
    cluster = await sim_cluster_factory({"name": "p1"}, {"name": "d1"})
    p1, d1 = cluster.nodes
    hccl = ("[ERROR] HCCL(60570,):2025-12-04-14:46:07.911.312 [hccl_socket.cc:106] [60570][HcclSocket][Listen] "
            "socket type[0], listen on ip[192.0.0.1] and specific port[16666] fail. Please check the port status "
            "and whether the port is being used by other process.")
    deploy = plan("s3",
                  standin("p1-prefill-0", p1, env={"STANDIN_DELAY": "0.3", "STANDIN_FAIL": hccl,
                                                   "STANDIN_SPAM": "40"}),
                  standin("d1-decode-0", d1, "decode", env={"STANDIN_CHILD": "1"}),
                  standin("p1-proxy-0", p1, "proxy", health_paths=("/healthcheck",)), grace=0.5)
    seen = Recorder()
    async with pool_for(cluster) as pool:
        result = await launch(pool, deploy, observer=seen, poll_interval=0.05)
    assert not result.ok
    [failure] = result.failures
    assert seen.failures == [failure]
    assert (failure.process, failure.node, failure.exit_status) == ("p1-prefill-0", "p1", 1)
    assert failure.reason.startswith("exited with status 1")
    assert len(failure.log_tail) == 30
    assert failure.log_tail[-3:-1] == ["Traceback (most recent call last):", hccl]
    assert failure.log_tail[-1].startswith("=== pdwizard: p1-prefill-0 exited with status 1")
    assert [d.id for d in failure.diagnoses] == ["hccl_port_in_use"]
    assert "16666" in "\n".join(failure.lines())
    assert result.readiness.startswith("P 0/1 (1 failed)")
    # cleanup: the decode instance (and its child that ignores SIGTERM) is gone, by pid and by port
    assert result.cleanup is not None and result.cleanup.ok
    [cleaned] = result.cleanup.nodes["d1"].processes
    assert cleaned.name == "d1-decode-0" and cleaned.outcome in ("killed", "terminated")  # killed once its child runs
    assert result.cleanup.nodes["p1"].processes[0].outcome == "not_running"
    decode = result.processes["d1-decode-0"]
    assert decode.pid is not None
    assert gone(decode.pid, d1.host, decode.spec.port)
    assert marked(cluster, "s3", "d1") == []
    assert not (run_dir_of(cluster, "d1", "s3") / "d1-decode-0.pid").exists()
    # the proxy was never started
    assert result.processes["p1-proxy-0"].pid is None
    assert not (run_dir_of(cluster, "p1", "s3") / "p1-proxy-0.pid").exists()
    assert not listening(p1.host, deploy.proxy.port)
    # a later --status still tells what happened; a full stop then clears it
    async with pool_for(cluster) as pool:
        state = await status(pool, ["p1", "d1"], "s3")
        assert {(p.name, p.state, p.exit_status) for p in state.processes} == {
            ("p1-prefill-0", "exited", 1), ("d1-decode-0", "not_running", None), ("p1-proxy-0", "not_running", None)}
        report = await stop(pool, ["p1", "d1"], "s3", grace_s=1)
        assert report.ok and [p.outcome for p in report.nodes["p1"].processes] == ["not_running"]
        assert not (run_dir_of(cluster, "p1", "s3") / "p1-prefill-0.pid").exists()


async def test_a_process_that_never_answers_fails_at_its_role_deadline(sim_cluster_factory) -> None:
    cluster = await sim_cluster_factory({"name": "p1"})
    (p1,) = cluster.nodes
    deploy = plan("s4", standin("p1-decode-0", p1, "decode", env={"STANDIN_DELAY": "60"}),
                  timeouts={"decode": 0.5})
    async with pool_for(cluster) as pool:
        result = await launch(pool, deploy, poll_interval=0.05)
    [failure] = result.failures
    assert failure.reason.startswith("not healthy after 0 s (decode deadline)") or \
        failure.reason.startswith("not healthy after 1 s (decode deadline)")
    assert any("stand-in vllm starting" in ln for ln in failure.log_tail)
    assert failure.hint and "decode_startup_timeout_s" in failure.hint
    pid = result.processes["p1-decode-0"].pid
    assert pid is not None and gone(pid, p1.host, deploy.processes[0].port)


async def test_stop_escalates_to_sigkill_and_catches_children_that_left_the_group(sim_cluster_factory) -> None:
    cluster = await sim_cluster_factory({"name": "p1"})
    (p1,) = cluster.nodes
    deploy = plan("s5", standin("p1-prefill-0", p1, env={"STANDIN_IGNORE_TERM": "1", "STANDIN_CHILD": "1",
                                                         "STANDIN_ESCAPE": "1"}))
    async with pool_for(cluster) as pool:
        result = await launch(pool, deploy, poll_interval=0.05)
        assert result.ok, result.lines()
        pid = result.processes["p1-prefill-0"].pid
        await wait_until(lambda: len(marked(cluster, "s5", "p1")) >= 5, 5, "the children to start")
        report = await stop(pool, ["p1"], "s5", grace_s=0.3)
    assert report.ok, report.lines()
    [stopped] = report.nodes["p1"].processes
    assert (stopped.name, stopped.pgid, stopped.outcome) == ("p1-prefill-0", pid, "killed")
    assert gone(pid, p1.host, deploy.processes[0].port)
    assert marked(cluster, "s5", "p1") == []


async def test_stop_leaves_a_reused_pid_alone(sim_cluster_factory) -> None:
    cluster = await sim_cluster_factory({"name": "p1"})
    run = run_dir_of(cluster, "p1", "s6")
    run.mkdir(parents=True)
    stranger = subprocess.Popen(["sleep", "30"], start_new_session=True)  # a group leader, not ours
    try:
        (run / "p1-prefill-0.pid").write_text(f"{stranger.pid}\n")
        (run / "d1-decode-0.pid").write_text("999999999\n")  # long gone
        async with pool_for(cluster) as pool:
            report = await stop(pool, ["p1"], "s6", grace_s=1)
        outcomes = {p.name: p.outcome for p in report.nodes["p1"].processes}
        assert outcomes == {"p1-prefill-0": "stale", "d1-decode-0": "not_running"}
        assert stranger.poll() is None  # untouched
        assert not (run / "p1-prefill-0.pid").exists() and not (run / "d1-decode-0.pid").exists()
    finally:
        stranger.kill()
        stranger.wait()


async def test_a_second_launch_is_refused_and_never_touches_the_first(sim_cluster_factory) -> None:
    cluster = await sim_cluster_factory({"name": "p1"}, {"name": "d1"})
    p1, d1 = cluster.nodes
    first = plan("s7", standin("p1-prefill-0", p1, env={"STANDIN_DELAY": "60"}), timeouts={"prefill": 0.2})
    async with pool_for(cluster) as pool:
        # the first launch's prefill is still loading (its port does not answer yet) ...
        started = await launch(pool, first, poll_interval=0.05, cleanup_on_failure=False)
        assert not started.ok and started.cleanup is None
        pid = started.processes["p1-prefill-0"].pid
        assert pid_alive(pid)
        # ... when another launch of the session is attempted: d1 starts, p1 refuses, d1 is cleaned up
        second = plan("s7", standin("p1-prefill-0", p1), standin("d1-decode-0", d1, "decode"))
        result = await launch(pool, second, poll_interval=0.05)
        assert not result.ok
        assert any("earlier launch still run" in f.reason and f.node == "p1" for f in result.failures)
        assert pid_alive(pid)  # the first launch's process is untouched
        assert (run_dir_of(cluster, "p1", "s7") / "p1-prefill-0.pid").read_text().strip() == str(pid)
        decode = result.processes["d1-decode-0"]
        if decode.pid is not None:
            assert gone(decode.pid, d1.host, decode.spec.port)
        report = await stop(pool, ["p1", "d1"], "s7", grace_s=2)
        assert report.ok and not pid_alive(pid)


async def test_a_port_already_answering_refuses_the_launch_before_anything_starts(sim_cluster_factory) -> None:
    cluster = await sim_cluster_factory({"name": "p1"})
    (p1,) = cluster.nodes
    import socket

    with socket.socket() as busy:
        busy.bind((p1.host, 0))
        busy.listen()
        port = busy.getsockname()[1]
        deploy = plan("s8", standin("p1-prefill-0", p1, port=port))
        async with pool_for(cluster) as pool:
            result = await launch(pool, deploy, poll_interval=0.05)
    [failure] = result.failures
    assert "already answers" in failure.reason and result.processes["p1-prefill-0"].pid is None
    assert not run_dir_of(cluster, "p1", "s8").exists()


async def test_an_interrupted_launch_stops_what_it_started(sim_cluster_factory) -> None:
    import asyncio

    import pytest

    cluster = await sim_cluster_factory({"name": "p1"})
    (p1,) = cluster.nodes
    deploy = plan("s9", standin("p1-prefill-0", p1, env={"STANDIN_DELAY": "60"}), timeouts={"prefill": 60})
    pid_file = run_dir_of(cluster, "p1", "s9") / "p1-prefill-0.pid"
    async with pool_for(cluster) as pool:
        task = asyncio.create_task(launch(pool, deploy, poll_interval=0.05))
        await wait_until(pid_file.exists, 10, "the instance to start")
        pid = int(pid_file.read_text())
        task.cancel()  # Ctrl-C in the replay, or the TUI's cancel
        with pytest.raises(asyncio.CancelledError):
            await task
    assert gone(pid, p1.host, deploy.processes[0].port)
    assert not pid_file.exists()


async def test_a_proxy_that_dies_takes_the_healthy_instances_down_with_it(sim_cluster_factory) -> None:
    cluster = await sim_cluster_factory({"name": "p1"}, {"name": "d1"})
    p1, d1 = cluster.nodes
    deploy = plan("s10", standin("p1-prefill-0", p1), standin("d1-decode-0", d1, "decode"),
                  standin("p1-proxy-0", p1, "proxy", env={"STANDIN_FAIL": "error: unrecognized arguments: --bogus"}))
    async with pool_for(cluster) as pool:
        result = await launch(pool, deploy, poll_interval=0.05)
    [failure] = result.failures
    assert failure.process == "p1-proxy-0" and [d.id for d in failure.diagnoses] == ["unknown_flag"]
    assert result.readiness == "P 1/1  D 1/1  proxy failed"
    assert result.cleanup is not None and result.cleanup.ok
    for name in ("p1-prefill-0", "d1-decode-0"):
        proc = result.processes[name]
        assert proc.state == "healthy" and proc.pid is not None
        assert gone(proc.pid, proc.spec.health_host, proc.spec.port)


async def test_one_launch_at_a_time_per_run_directory(sim_cluster_factory) -> None:
    cluster = await sim_cluster_factory({"name": "p1"})
    (p1,) = cluster.nodes
    lock = run_dir_of(cluster, "p1", "s11") / ".launching"
    lock.mkdir(parents=True)
    (lock / "pid").write_text(f"{os.getpid()}\n")  # a live launch script holds it
    deploy = plan("s11", standin("p1-prefill-0", p1))
    async with pool_for(cluster) as pool:
        refused = await launch(pool, deploy, poll_interval=0.05)
        assert "in progress" in refused.failures[0].reason and refused.processes["p1-prefill-0"].pid is None
        (lock / "pid").write_text("999999999\n")  # its owner died: the lock is stale
        result = await launch(pool, deploy, poll_interval=0.05)
        assert result.ok, result.lines()
        assert not lock.exists()  # released when the launch script ended
        assert (await stop(pool, ["p1"], "s11", grace_s=1)).ok


async def test_a_setsid_without_fork_option_still_detaches(sim_cluster_factory) -> None:
    cluster = await sim_cluster_factory({"name": "p1"})
    (p1,) = cluster.nodes
    old_setsid = p1.bin_dir / "setsid"  # busybox / util-linux < 2.31: no -f
    old_setsid.write_text('#!/bin/sh\ncase $1 in -f) echo "setsid: invalid option -- \'f\'" >&2; exit 1 ;; esac\n'
                          'exec /usr/bin/setsid "$@"\n')
    old_setsid.chmod(0o755)
    deploy = plan("s12", standin("p1-prefill-0", p1))
    async with pool_for(cluster) as pool:
        result = await launch(pool, deploy, poll_interval=0.05)
        assert result.ok, result.lines()
    pid = result.processes["p1-prefill-0"].pid
    assert pid_alive(pid) and group_members(pid)  # survived the connection, in its own group
    async with pool_for(cluster) as pool:
        assert (await stop(pool, ["p1"], "s12", grace_s=1)).ok
    assert gone(pid, p1.host, deploy.processes[0].port)
