"""Container runtime command construction, and the plan built from a real session.

Docker is not available here (no daemon): the command construction is unit-tested, checked
through a real shell against a recording `docker`, and the whole launch/status/logs/stop path
runs through a fake `docker exec` put on a simulated node's PATH.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import pid_alive
from simfiles import guide_pair
from test_deploy_support import plan, pool_for, run_dir_of, standin

from pdwizard.deploy import LogSource, LogTail, Runtime, launch, plan_for, runtime_for, sim_addresses, status, stop
from pdwizard.remote.quoting import join_argv
from pdwizard.render import render_all
from pdwizard.scripts import script_texts
from pdwizard.session import load_session

EXEC = 'exec docker exec {}-e "PDWIZARD_RUN_ID=$PDWIZARD_RUN_ID" "$0" "$@"'

FAKE_DOCKER = r"""#!/bin/sh
# fake docker for tests: `docker exec [-i] [-e K=V]... NAME CMD...` runs CMD on this (simulated) node
[ "$1" = exec ] || { echo "fake docker: only exec is simulated" >&2; exit 125; }
shift
while [ $# -gt 0 ]; do
  case $1 in
    -i|-t|-d) shift ;;
    -e) export "$2"; shift 2 ;;
    -*) echo "fake docker: unknown option $1" >&2; exit 125 ;;
    *) break ;;
  esac
done
[ "$1" = vllm-ascend ] || { echo "Error response from daemon: No such container: $1" >&2; exit 1; }
shift
echo "$*" >> "$HOME/docker-exec.log"
exec "$@"
"""


def test_host_runtime_runs_commands_as_they_are() -> None:
    rt = Runtime()
    assert rt.script_argv() == ["sh", "-s"]
    assert rt.argv(["tail", "-F", "x"]) == ["tail", "-F", "x"]
    assert rt.describe == "host"


def test_container_runtime_wraps_in_docker_exec() -> None:
    rt = Runtime("vllm-ascend")
    assert rt.script_argv() == ["sh", "-c", EXEC.format("-i "), "vllm-ascend", "sh", "-s"]
    assert rt.argv(["tail", "-F", "a b"]) == ["sh", "-c", EXEC.format(""), "vllm-ascend", "tail", "-F", "a b"]
    assert rt.describe == "container vllm-ascend (docker exec)"


def test_container_command_reaches_docker_with_every_argument_intact(tmp_path: Path) -> None:
    fake = tmp_path / "docker"
    fake.write_text('#!/bin/sh\nfor a in "$@"; do printf "<%s>" "$a"; done\n')
    fake.chmod(0o755)
    line = join_argv(Runtime("vllm-ascend").argv(["echo", "it's $(a) b", "*"]))
    out = subprocess.run(["sh", "-c", f"PDWIZARD_RUN_ID=r1; export PDWIZARD_RUN_ID; {line}"], capture_output=True,
                         text=True, env={"PATH": f"{tmp_path}:/usr/bin:/bin"}, check=True).stdout
    assert out == "<exec><-e><PDWIZARD_RUN_ID=r1><vllm-ascend><echo><it's $(a) b><*>"


def test_runtime_for_reads_stack_container(tmp_path: Path) -> None:
    _, path = guide_pair(tmp_path, session_extra={"stack": {"container": "vllm-ascend"}})
    assert runtime_for(load_session(path)) == Runtime("vllm-ascend")


async def test_launch_status_logs_and_stop_through_docker_exec(sim_cluster_factory) -> None:
    cluster = await sim_cluster_factory({"name": "p1"})
    (p1,) = cluster.nodes
    docker = p1.bin_dir / "docker"
    docker.write_text(FAKE_DOCKER)
    docker.chmod(0o755)
    rt = Runtime("vllm-ascend")
    deploy = plan("c1", standin("p1-prefill-0", p1, env={"STANDIN_SPAM": "3"}), runtime=rt)
    async with pool_for(cluster) as pool:
        result = await launch(pool, deploy, poll_interval=0.05, ranktable="{}")
        assert result.ok, result.lines()
        pid = result.processes["p1-prefill-0"].pid
        state = await status(pool, ["p1"], "c1", runtime=rt)
        assert [(p.state, p.pid, p.answering) for p in state.processes] == [("running", pid, True)]
        assert state.records["p1"]["runtime"] == {"container": "vllm-ascend"}
        async with LogTail(pool, "c1", LogSource.of(deploy.processes), runtime=rt) as tail:
            texts = []
            async for line in tail:
                texts.append(line.text)
                if line.text == "spam 00000002":
                    break
        report = await stop(pool, ["p1"], "c1", runtime=rt, grace_s=2)
        assert report.ok and not pid_alive(pid)
        missing = await stop(pool, ["p1"], "c1", runtime=Runtime("nope"), grace_s=1)
        assert not missing.ok and "No such container" in (missing.nodes["p1"].error or "")
    calls = (p1.home / "docker-exec.log").read_text().splitlines()
    assert calls.count("sh -s") >= 4  # upload, launch, poll rounds, status, stop: all inside the container
    assert any(c.startswith("sh -c") for c in calls)  # the log tail
    assert (run_dir_of(cluster, "p1", "c1") / "ranktable.json").read_text() == "{}"


# ------------------------------------------------------------------ plan_for from a real session


def _plan(tmp_path: Path, **extra):
    _, path = guide_pair(tmp_path, session_extra=extra)
    session = load_session(path)
    return session, render_all(session)


def test_plan_from_the_guide_session_with_the_builtin_proxy(tmp_path: Path) -> None:
    session, deployment = _plan(tmp_path, stack={"prefill_startup_timeout_s": 300, "stop_grace_s": 5})
    p = plan_for(session, deployment, proxy_text="# the proxy\n")
    assert [(s.name, s.node, s.role, s.port) for s in p.processes] == [
        ("p1-prefill-0", "p1", "prefill", 13700), ("d1-decode-0", "d1", "decode", 13700),
        ("d2-decode-0", "d2", "decode", 13700), ("p1-proxy-0", "p1", "proxy", 8080)]
    assert [s.health_host for s in p.instances] == [session.node(n).host for n in ("p1", "d1", "d2")]
    texts = script_texts(deployment, session_name=session.name)  # the very scripts --out writes
    assert [s.script for s in p.instances] == [texts[f"{s.name}.sh"] for s in p.instances]
    assert p.processes[0].argv == tuple(deployment.instances[0].argv)
    proxy = p.proxy
    assert proxy.argv[:2] == ("python3", ".pdwizard/runs/test-1p2d/proxy.py")
    assert proxy.argv[2:] == tuple(deployment.proxy.argv[3:])  # the rendered flags, as rendered
    assert proxy.files == (("proxy.py", "# the proxy\n"),)
    assert proxy.health_host == "192.0.0.1" and proxy.health_paths[0] == "/healthcheck"
    assert p.timeout_for("prefill") == 300.0 and p.timeout_for("decode") == 1200.0 and p.stop_grace_s == 5.0
    assert p.ranktable_path == "~/.pdwizard/runs/test-1p2d/ranktable.json"
    assert p.runtime == Runtime()


def test_sim_addresses_rewrite_the_proxy_hosts(tmp_path: Path) -> None:
    session, deployment = _plan(tmp_path)
    p = plan_for(session, deployment, addresses=sim_addresses(session), proxy_text="")
    host = {n.name: n.host for n in session.nodes}
    argv = list(p.proxy.argv)
    assert argv[argv.index("--host") + 1] == host["p1"]
    i = argv.index("--prefiller-hosts")
    assert argv[i + 1] == host["p1"]
    i = argv.index("--decoder-hosts")
    assert argv[i + 1:i + 3] == [host["d1"], host["d2"]]
    assert p.proxy.health_host == host["p1"]


def test_upstream_proxy_runs_the_checkout_script_and_requires_it(tmp_path: Path) -> None:
    script = "~/vllm-ascend/examples/disaggregated_prefill_v1/load_balance_proxy_server_example.py"
    session, deployment = _plan(tmp_path, proxy={"kind": "upstream", "script": script})
    proxy = plan_for(session, deployment).proxy
    assert proxy.argv[:2] == ("python", script[2:])
    assert proxy.requires == (script[2:],) and proxy.files == ()
    assert proxy.health_paths == ("/healthcheck",)


def test_without_pdwizard_proxy_py_the_plan_says_what_to_do(tmp_path: Path, monkeypatch) -> None:
    from pdwizard.deploy import plan as plan_module
    from pdwizard.errors import PdwError

    session, deployment = _plan(tmp_path)
    monkeypatch.setattr(plan_module, "PROXY_FILE", "no-such-proxy.py")
    with pytest.raises(PdwError, match="upstream"):
        plan_for(session, deployment)
    assert plan_for(session, deployment, with_proxy=False).proxy is None


async def test_a_missing_upstream_script_fails_before_the_proxy_node_starts_anything(sim_cluster_factory) -> None:
    cluster = await sim_cluster_factory({"name": "p1"}, {"name": "d1"})
    p1, d1 = cluster.nodes
    proxy = standin("p1-proxy-0", p1, "proxy")
    proxy = type(proxy)(**{**proxy.__dict__, "requires": ("vllm-ascend/examples/proxy.py",)})
    deploy = plan("m1", standin("p1-prefill-0", p1), standin("d1-decode-0", d1, "decode"), proxy)
    async with pool_for(cluster) as pool:
        result = await launch(pool, deploy, poll_interval=0.05)
    assert any(f.node == "p1" and "vllm-ascend/examples/proxy.py" in f.reason for f in result.failures)
    assert result.processes["p1-prefill-0"].pid is None  # p1 started nothing
    decode = result.processes["d1-decode-0"]
    assert decode.pid is None or not pid_alive(decode.pid)  # d1 may have started: cleaned up
    record = json.loads((run_dir_of(cluster, "d1", "m1") / "launched.json").read_text())
    assert record["session"] == "m1"
