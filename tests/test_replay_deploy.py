"""`pdwizard --replay` from nothing to a verified deployment and back to nothing, over real SSH
against the simulator, with every process accounted for: by pid (no process carries the
session's marker, every launched pid is gone) and by port (nothing answers on an instance's or
the proxy's port).

Most tests run the replay against a cluster started here (or a foreground `python -m
pdwizard.sim`), which outlives the replay: what the replay left running would still run, so
"nothing left" is the replay's doing, not the simulator's own sweep at exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import os
import re
import signal
import sys
from pathlib import Path

import tomli_w
import tomllib
from conftest import listening, pid_alive, wait_until
from simfiles import guide_pair

from pdwizard.cli import main
from pdwizard.client import send_prompt
from pdwizard.progress import PlainProgress
from pdwizard.replay import ReplayOptions, run_replay
from pdwizard.sim import SimCluster, spec_from_dict

ROOT = Path(__file__).resolve().parent.parent
_names = itertools.count()
DECODES = {"d1-decode-0", "d2-decode-0"}


# ------------------------------------------------------------------ helpers


def session_name() -> str:
    return f"rd{os.getpid()}-{next(_names)}"


def session_pids(name: str) -> list[int]:
    """Live processes carrying this session's marker (PDWIZARD_SESSION=<home>/.pdwizard/runs/<name>)."""
    suffix = f"/.pdwizard/runs/{name}".encode()
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if any(v.startswith(b"PDWIZARD_SESSION=") and v.endswith(suffix) for v in env) and pid_alive(int(entry)):
            out.append(int(entry))
    return out


def endpoints(session_path: Path) -> list[tuple[str, int]]:
    """Every instance's and the proxy's host:port (the sim binds each node's loopback host)."""
    data = tomllib.loads(session_path.read_text())
    host = {n["name"]: n["host"] for n in data["nodes"]}
    out = [(host[i["node"]], i["port"]) for i in data["instances"]]
    proxy_node = data.get("proxy", {}).get("node") or next(i["node"] for i in data["instances"]
                                                           if i["role"] == "prefill")
    return out + [(host[proxy_node], data.get("proxy", {}).get("port", 8080))]


def assert_nothing_left(name: str, session_path: Path, pids=()) -> None:
    assert session_pids(name) == [], f"processes of session {name} still run"
    assert [p for p in pids if p and pid_alive(p)] == []
    assert [(h, p) for h, p in endpoints(session_path) if listening(h, p)] == []


def step(report: dict, name: str) -> dict:
    return next(s for s in report["steps"] if s["name"] == name)


def launched_pids(report: dict) -> list[int]:
    return [r["data"]["pid"] for r in step(report, "launch")["results"] if r.get("data") and r["data"].get("pid")]


def pair(tmp_path: Path, faults=None, verify=None, **stack) -> tuple[Path, Path, str]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    name = session_name()
    extra = {"name": name, "stack": {"stop_grace_s": 2, **stack}}
    if verify is not None:
        extra["verify"] = verify
    spec, session = guide_pair(tmp_path, faults, session_extra=extra)
    return spec, session, name


@contextlib.asynccontextmanager
async def cluster_for(tmp_path: Path, spec: Path, session: Path):
    """The spec's cluster, started here; the session pointed at its client key and known_hosts."""
    cluster = SimCluster(spec_from_dict(tomllib.loads(spec.read_text()), source=str(spec)),
                         workdir=tmp_path / "sim")
    data = tomllib.loads(session.read_text())
    data["ssh"].update(identity_file=str(cluster.client_key_path), known_hosts=str(cluster.known_hosts_path))
    session.write_text(tomli_w.dumps(data))
    async with cluster:
        yield cluster


async def replay(session: Path, out: Path | None = None, **opts) -> tuple[int, str, dict | None]:
    buf = io.StringIO()
    code = await run_replay(ReplayOptions(session_path=session, out_dir=out, **opts), PlainProgress(buf))
    report = json.loads((out / "report.json").read_text()) if out and (out / "report.json").exists() else None
    return code, buf.getvalue(), report


# ------------------------------------------------------------------ (a) the guide, end to end


async def test_guide_1p2d_from_nothing_to_verified_to_stopped(tmp_path):
    spec, session, name = pair(tmp_path, verify=[
        {"prompt": "Who are you?", "max_tokens": 100, "expect": "i am a simulated"},
        {"prompt": "Say hello", "max_tokens": 12, "chat": True},
    ])
    async with cluster_for(tmp_path, spec, session):
        assert_nothing_left(name, session)
        code, out, report = await replay(session, tmp_path / "out")
        assert code == 0, out
        names = [s["name"] for s in report["steps"]]
        assert names[-4:] == ["ranktable", "launch", "verify", "stop"], names
        assert all(step(report, s)["status"] == "ok" for s in ("launch", "verify", "stop")), out
        launch = step(report, "launch")
        assert {r["target"] for r in launch["results"]} == {"p1-prefill-0", "p1-proxy-0"} | DECODES
        assert launch["note"] == "P 1/1  D 2/2  proxy ready"
        verified = [r["data"] for r in step(report, "verify")["results"]]
        assert len(verified) == 2
        for v in verified:
            assert v["text"].strip() and v["prefill"] == "p1-prefill-0" and v["decode"] in DECODES
            assert v["ttft_s"] > 0 and v["total_s"] >= v["ttft_s"] and v["tpot_s"] is not None
            assert v["kv"] == "forwarded" and v["kv_recomputed"] is False
        assert {v["decode"] for v in verified} == DECODES  # serial requests rotate over both decoders
        assert "I am a SIMULATED" in verified[0]["text"]
        stopped = step(report, "stop")["results"]
        assert {(r["target"], r["value"]) for r in stopped if r["value"]} == {
            (n, "terminated") for n in {"p1-prefill-0", "p1-proxy-0"} | DECODES}
        # the readiness line, the answers and the summary's verify table
        assert "readiness: P 0/1  D 0/2  proxy waiting" in out and "readiness: P 1/1  D 2/2  proxy ready" in out
        assert re.search(r"verify OK: 'Who are you\?' -> .*TTFT \d+ ms.*served by p1-prefill-0 -> d[12]-decode-0",
                         out)
        assert "verify (through the proxy)" in out and "(exit 0)" in out
        # nothing left, by pid and by port, while the cluster still runs
        pids = launched_pids(report)
        assert len(pids) == 4
        assert_nothing_left(name, session, pids)


# ------------------------------------------------------------------ (b) start-up faults


async def _fault(tmp_path, faults, expect_ids, **stack):
    spec, session, name = pair(tmp_path, faults, **stack)
    async with cluster_for(tmp_path, spec, session):
        code, out, report = await replay(session, tmp_path / "out")
        assert code == 1, out
        failed = [r for r in step(report, "launch")["results"] if r["status"] == "fail"]
        assert [r["target"] for r in failed] == ["d2-decode-0"], out
        assert "verify" not in [s["name"] for s in report["steps"]]
        assert_nothing_left(name, session, launched_pids(report))
    assert "launch: FAILED d2-decode-0 on d2:" in out
    assert "cleaning up: stopping" in out and "last " in out  # the cleanup, and the log tail shown
    return out, failed[0]


async def test_each_start_up_fault_fails_with_the_diagnosis_and_leaves_nothing(tmp_path):
    cases = [("oom", "npu_out_of_memory", "ran out of memory"),
             ("port_in_use", "hccl_port_in_use", "HCCL could not listen on its port"),
             ("hccl_timeout", "hccl_socket_timeout", "HCCL timed out waiting for a peer socket")]
    for fault, diagnosis, meaning in cases:
        out, failed = await _fault(tmp_path / fault, {"d2": {"vllm_fault": fault}}, diagnosis)
        assert f"diagnosis {diagnosis}: " in out and meaning in out, out
        assert failed["value"].split(", ")[0] == diagnosis and failed["data"]["exit_status"] == 1
        assert "exited with status 1" in failed["message"] and failed["raw"]  # the log tail is kept
        assert "FAIL launch: node d2 -> d2-decode-0: decode d2:13700: exited with status 1" in out


async def test_a_start_up_past_the_deadline_fails_and_leaves_nothing(tmp_path):
    out, failed = await _fault(tmp_path, {"d2": {"vllm_startup_s": 30}}, None, decode_startup_timeout_s=1)
    assert "not healthy after 1 s (decode deadline)" in failed["message"]
    assert "raise [stack] decode_startup_timeout_s" in out


# ------------------------------------------------------------------ (c) a decoder dies mid-run


async def test_a_decoder_killed_mid_run_the_proxy_routes_to_the_other_then_stop(tmp_path, sim_run):
    spec, session, name = pair(tmp_path)
    async with cluster_for(tmp_path, spec, session) as cluster:
        code, out, report = await replay(session, tmp_path / "out", keep_running=True)
        assert code == 0, out
        assert "left running (--keep-running)" in out and step(report, "stop")["status"] == "skip"
        pids = launched_pids(report)
        assert len(session_pids(name)) >= 4 and all(pid_alive(p) for p in pids)

        # kill d1's process group, found through its pid file, over SSH
        run_dir = f".pdwizard/runs/{name}"
        r = await sim_run(cluster, "d1", f'pg=$(cat {run_dir}/d1-decode-0.pid) && kill -KILL "-$pg" && echo "$pg"')
        assert r.exit_status == 0, r.stderr
        d1 = cluster.node("d1")
        await wait_until(lambda: not listening(d1.host, 13700), 10, "d1's port to close")

        p1 = cluster.node("p1")
        for _ in range(4):
            answer = await send_prompt(f"http://{p1.host}:8080", "qwen3-moe", "Who are you?", max_tokens=16)
            assert answer.ok, answer.error
            assert answer.decode == f"{cluster.node('d2').host}:13700"

        code, out, _ = await replay(session, action="status")
        assert code == 0, out
        assert "d1-decode-0 (decode d1:13700) gone" in out
        assert re.search(r"d2-decode-0 \(decode d2:13700\) running pid \d+, answering", out)
        assert "status: 3 process(es) running" in out

        code, out, report = await replay(session, tmp_path / "stop", action="stop")
        assert code == 0, out
        assert [s["name"] for s in report["steps"]] == ["connect", "stop"]
        assert_nothing_left(name, session, pids)
        code, out, _ = await replay(session, action="status")
        assert code == 0 and "status: nothing running" in out


# ------------------------------------------------------------------ (d) + (e) a crash of pdwizard itself


async def _start(*args: str, env=None) -> asyncio.subprocess.Process:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env or {}))
    return await asyncio.create_subprocess_exec(sys.executable, *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE, cwd=str(ROOT), env=env)


async def _read_until(proc: asyncio.subprocess.Process, marker: str, timeout: float = 30) -> list[str]:
    lines: list[str] = []

    async def read() -> None:
        while True:
            line = await proc.stdout.readline()
            if not line:
                raise AssertionError(f"exited before {marker!r}: " + "".join(lines) + (await proc.stderr.read()).decode())
            lines.append(line.decode())
            if marker in lines[-1]:
                return

    await asyncio.wait_for(read(), timeout)
    return lines


async def _cli(*args: str, timeout: float = 60) -> tuple[int, str]:
    proc = await _start("-m", "pdwizard", *args)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode, out.decode() + err.decode()


async def test_stop_after_pdwizard_is_killed_mid_run_and_status_before_and_after(tmp_path):
    spec, session, name = pair(tmp_path, {n: {"token_delay_ms": 300} for n in ("p1", "d1", "d2")})
    sim = await _start("-m", "pdwizard.sim", str(spec), "--workdir", str(tmp_path / "w"))
    try:
        lines = await _read_until(sim, "SIMULATED running")
        key = next(ln.split(": ", 1)[1].strip() for ln in lines if "client key:" in ln)
        known = next(ln.split(": ", 1)[1].strip() for ln in lines if "known_hosts:" in ln)
        data = tomllib.loads(session.read_text())
        data["ssh"].update(identity_file=key, known_hosts=known)
        session.write_text(tomli_w.dumps(data))

        pdw = await _start("-m", "pdwizard", "--replay", str(session), "--keep-running")
        await _read_until(pdw, "p1-proxy-0 healthy")  # then it verifies, slowly (300 ms per token)
        pdw.kill()
        assert await asyncio.wait_for(pdw.wait(), 10) == -signal.SIGKILL
        assert len(session_pids(name)) >= 4  # the deployment outlived pdwizard

        code, out = await _cli("--replay", str(session), "--status")
        assert code == 0, out
        running = re.findall(r"^status: \w+: (\S+) \(.*\) running pid (\d+), answering", out, re.M)
        assert {n for n, _ in running} == {"p1-prefill-0", "p1-proxy-0"} | DECODES, out
        assert "status: 4 process(es) running" in out

        code, out = await _cli("--replay", str(session), "--stop")
        assert code == 0, out
        assert out.count(" terminated") == 4 and "(exit 0)" in out
        assert_nothing_left(name, session, [int(p) for _, p in running])

        code, out = await _cli("--replay", str(session), "--status")
        assert code == 0 and "status: nothing running" in out, out
    finally:
        sim.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(sim.wait(), 20) == 0


# ------------------------------------------------------------------ (f) what the answers must be


def test_an_expect_not_in_the_answer_fails_naming_the_prompt(tmp_path, capsys):
    spec, session, _ = pair(tmp_path, verify=[{"prompt": "Who are you?", "expect": "QWEN3"},
                                              {"prompt": "Name a colour", "expect": "vermilion"}])
    code = main(["--sim", str(spec), "--replay", str(session), "--out", str(tmp_path / "out"), "--keep-running"])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "verify OK: 'Who are you?'" in out  # "QWEN3" matches "Qwen3": the match ignores case
    assert "verify FAILED: 'Name a colour'" in out
    assert re.search(r"FAIL verify: node d[12] -> 'Name a colour': the answer does not contain 'vermilion'",
                     " ".join(out.split()))
    assert "the deployment dies with the simulator" in out
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [r["status"] for r in step(report, "verify")["results"]] == ["ok", "fail"]


def test_a_kv_recompute_fails_the_verification_and_says_so(tmp_path, capsys):
    spec, session, _ = pair(tmp_path, {"d1": {"vllm_fault": "kv_pull_fail"}, "d2": {"vllm_fault": "kv_pull_fail"}})
    code = main(["--sim", str(spec), "--replay", str(session), "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "KV recomputed instead of transferred on d" in out and "recomputes the whole prompt" in out
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    [v] = step(report, "verify")["results"]
    assert v["status"] == "fail" and v["data"]["kv_recomputed"] is True and v["data"]["text"]
    assert step(report, "stop")["status"] == "ok"  # stopped all the same


# ------------------------------------------------------------------ interrupted


async def test_an_interrupted_launch_stops_what_it_started(tmp_path):
    for sig, rc in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        spec, session, name = pair(tmp_path / sig.name, {n: {"vllm_startup_s": 60} for n in ("p1", "d1", "d2")})
        proc = await _start("-m", "pdwizard", "--sim", str(spec), "--replay", str(session))
        try:
            await _read_until(proc, "readiness: P 0/1  D 0/2  proxy waiting")
            assert len(session_pids(name)) >= 4
            proc.send_signal(sig)
            out, err = await asyncio.wait_for(proc.communicate(), 30)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert proc.returncode == rc, err.decode()
        assert "cleaning up: stopping 4 process(es)" in out.decode()
        assert out.decode().count(" terminated") == 4
        assert_nothing_left(name, session)


def test_flags_that_do_not_combine_are_input_errors(tmp_path, capsys):
    _, session, _ = pair(tmp_path)
    for args in (["--stop", "--status"], ["--stop", "--dry-run"], ["--status", "--keep-running"]):
        assert main(["--replay", str(session), *args]) == 2
        assert "cannot be combined" in capsys.readouterr().err
