"""The simulator's fake `vllm serve` (pdwizard/sim/vllm.py), launched over real SSH on sim nodes
with the exact commands pdwizard renders for the guide's 1P2D session.

Protocol: pd-proxy-protocol.md, llmdatadist-connector.md. Every wait is a deadline on a
condition (health, a pid gone, a task done), never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from conftest import next_sim_net, pid_alive, wait_until
from simfiles import guide_pair

from pdwizard.parsers.npusmi import parse_info
from pdwizard.remote.quoting import join_argv
from pdwizard.render import render_instance
from pdwizard.scripts import instance_script, shell_value
from pdwizard.session import load_session
from pdwizard.sim import SimCluster, load_spec

RANKTABLE = Path(__file__).resolve().parent / "fixtures" / "ranktable" / "a-1p2d-guide" / "ranktable.json"
MODEL = "qwen3-moe"
PORT = 13700
# what the v0.10.1rc1 proxy sends the prefill (pd-proxy-protocol.md §5)
PREFILL_PARAMS = {"do_remote_decode": True, "do_remote_prefill": False, "remote_engine_id": None,
                  "remote_block_ids": None, "remote_host": None, "remote_port": None, "aborted_request": []}
PROMPT = "Explain prefill-decode disaggregation on Ascend NPUs in one sentence."


# --------------------------------------------------------------------------------------- helpers

async def setup_guide(tmp_path: Path, faults: dict[str, dict]):
    """(cluster, session, {node: ssh connection}) with the guide's ranktable in every home."""
    spec, session_path = guide_pair(tmp_path, faults)
    session = load_session(session_path)
    cluster = SimCluster(load_spec(spec), workdir=tmp_path / "sim")
    await cluster.start()
    for n in cluster.nodes:
        target = n.home / ".pdwizard" / "runs" / "test-1p2d" / "ranktable.json"
        target.parent.mkdir(parents=True)
        target.write_bytes(RANKTABLE.read_bytes())
    return cluster, session


async def connect(cluster: SimCluster, name: str):
    import asyncssh

    n = cluster.node(name)
    return await asyncssh.connect(n.host, n.port, username="root", client_keys=[str(cluster.client_key_path)],
                                  known_hosts=str(cluster.known_hosts_path), agent_path=None)


async def put_script(conn, name: str, text: str) -> None:
    await conn.run(f"mkdir -p ~/run && cat > ~/run/{name}.sh", input=text, check=True)


async def launch(conn, name: str) -> int:
    """Start ~/run/NAME.sh in the background the way an orchestrator does; its pid (that of vllm)."""
    r = await conn.run(f"cd / && nohup setsid bash ~/run/{name}.sh > ~/run/{name}.log 2>&1 < /dev/null & echo $!",
                       check=True)
    return int(r.stdout)


def command(r, env: dict[str, str] | None = None, drop: tuple[str, ...] = (), argv: list[str] | None = None) -> str:
    """The rendered instance as one sh command, with environment changes."""
    env = env or {}
    pairs = [(k, v) for k, v in r.env if k not in drop and k not in env] + list(env.items())
    return "; ".join([f"export {k}={shell_value(v)}" for k, v in pairs] + ["exec " + join_argv(argv or r.argv)])


def with_flag(argv: list[str], flag: str, value: str) -> list[str]:
    out = list(argv)
    out[out.index(flag) + 1] = value
    return out


async def wait_healthy(host: str, port: int = PORT, timeout: float = 15.0) -> float:
    """Poll /health until 200; the time it took."""
    start = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.5)) as s:
        while True:
            try:
                async with s.get(f"http://{host}:{port}/health") as resp:
                    if resp.status == 200:
                        return time.monotonic() - start
            except (aiohttp.ClientError, asyncio.TimeoutError):
                pass
            if time.monotonic() - start > timeout:
                raise AssertionError(f"{host}:{port} not healthy after {timeout}s")
            await asyncio.sleep(0.05)


async def post(s: aiohttp.ClientSession, host: str, path: str, body: dict, rid: str | None = None):
    headers = {"X-Request-Id": rid} if rid else {}
    async with s.post(f"http://{host}:{PORT}{path}", json=body, headers=headers) as resp:
        return resp.status, await resp.json()


async def kv_status(s: aiohttp.ClientSession, host: str) -> dict:
    async with s.get(f"http://{host}:{PORT}/sim/kv") as resp:
        return await resp.json()


async def sse(s: aiohttp.ClientSession, host: str, path: str, body: dict, rid: str | None = None):
    """(content type, [parsed events], raw text) of a streaming request."""
    headers = {"X-Request-Id": rid} if rid else {}
    async with s.post(f"http://{host}:{PORT}{path}", json={**body, "stream": True}, headers=headers) as resp:
        raw = await resp.text()
        ctype = resp.headers["Content-Type"]
    events = [e[len("data: "):] for e in raw.split("\n\n") if e]
    assert events[-1] == "[DONE]" and all(e.startswith("data: ") for e in raw.split("\n\n") if e)
    return ctype, [json.loads(e) for e in events[:-1]], raw


def read_log(cluster: SimCluster, node: str, name: str) -> str:
    return (cluster.node(node).home / "run" / f"{name}.log").read_text()


# --------------------------------------------------------------------------------------- tests

async def test_guide_pd_flow_over_ssh(tmp_path: Path) -> None:
    cluster, session = await setup_guide(tmp_path, {
        "p1": {"vllm_startup_s": 1.0},       # slow start
        "d1": {"token_delay_ms": 5},         # slow tokens
        "d2": {"vllm_fault": "die_after:2"},
    })
    conns = {}
    try:
        conns = {n: await connect(cluster, n) for n in ("p1", "d1", "d2")}
        p_host, d_host, d2_host = (cluster.node(n).host for n in ("p1", "d1", "d2"))
        rendered = [render_instance(session, i) for i in range(3)]
        for r in rendered:
            await put_script(conns[r.node], r.node, instance_script(r))
        t0 = time.monotonic()
        p_pid = await launch(conns["p1"], "p1")
        d_pid = await launch(conns["d1"], "d1")
        d2_run = asyncio.ensure_future(conns["d2"].run("bash ~/run/d2.sh", check=False))
        await asyncio.gather(wait_healthy(p_host), wait_healthy(d_host), wait_healthy(d2_host))
        assert time.monotonic() - t0 >= 1.0  # vllm_startup_s = 1.0 on p1

        p_log = read_log(cluster, "p1", "p1")
        for text in ("[api_server.py:1880] Starting vLLM API server 0 on http://" + f"{p_host}:{PORT}",
                     "INFO:     Application startup complete.", "vLLM API server version 0.10.1.1",
                     f"--host 0.0.0.0: binding the node's own loopback address {p_host}",
                     "Creating v1 connector with name: LLMDataDistCMgrConnector and engine_id: 0"):
            assert text in p_log, text
        assert all(line.endswith(" [SIMULATED]") for line in p_log.splitlines())
        # the process is recognisable as vllm, and npu-smi shows it on its NPUs
        assert Path(f"/proc/{p_pid}/comm").read_text().strip() == "vllm"
        assert b"pdwizard.sim.vllm\0serve\0/model/Qwen3-30B-A3B" in Path(f"/proc/{p_pid}/cmdline").read_bytes()
        procs = parse_info((await conns["p1"].run("npu-smi info", check=True)).stdout).processes
        assert sorted((p.npu_id, p.pid) for p in procs) == [(0, p_pid), (1, p_pid)]
        procs = parse_info((await conns["d1"].run("npu-smi info", check=True)).stdout).processes
        assert sorted((p.npu_id, p.pid) for p in procs) == [(6, d_pid), (7, d_pid)]

        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://{d_host}:{PORT}/v1/models") as resp:
                models = await resp.json()
            assert [m["id"] for m in models["data"]] == [MODEL] and models["data"][0]["root"] == "/model/Qwen3-30B-A3B"

            # plain decode without a prefill: it recomputes the prompt and says so
            body = {"model": MODEL, "prompt": PROMPT, "max_tokens": 64, "temperature": 0}
            t = time.monotonic()
            status, ref = await post(s, d_host, "/v1/completions", body, "plain-1")
            assert time.monotonic() - t >= 0.1  # token_delay_ms = 5 on d1, > 20 tokens
            assert status == 200 and ref["id"] == "cmpl-plain-1" and ref["kv_transfer_params"] is None
            text = ref["choices"][0]["text"]
            assert "SIMULATED" in text and ref["choices"][0]["finish_reason"] == "stop"
            assert (await post(s, d_host, "/v1/completions", body, "plain-2"))[1]["choices"][0]["text"] == text
            assert "request cmpl-plain-1-0: it came without kv_transfer_params: this decode instance recomputes" \
                in read_log(cluster, "d1", "d1")
            # streaming: SSE events that add up to the same text
            ctype, events, _ = await sse(s, d_host, "/v1/completions", {**body, "stream_options": {"include_usage": True}})
            assert ctype.startswith("text/event-stream")
            assert "".join(e["choices"][0]["text"] for e in events[:-1]) == text
            assert events[-2]["choices"][0]["finish_reason"] == "stop" and events[-1]["choices"] == []
            assert events[-1]["usage"]["completion_tokens"] == ref["usage"]["completion_tokens"]
            # chat, streaming and not
            chat = {"model": MODEL, "messages": [{"role": "user", "content": "Who are you?"}]}
            status, c = await post(s, d_host, "/v1/chat/completions", chat, "chat-1")
            assert status == 200 and c["id"] == "chatcmpl-chat-1" and c["object"] == "chat.completion"
            content = c["choices"][0]["message"]["content"]
            assert content.startswith("I am a SIMULATED Qwen3-30B-A3B")
            _, events, _ = await sse(s, d_host, "/v1/chat/completions", chat)
            assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
            assert "".join(e["choices"][0]["delta"].get("content", "") for e in events) == content

            # PD: prefill with max_tokens 1 returns kv_transfer_params and holds the blocks
            pbody = {**body, "max_tokens": 1, "min_tokens": 1, "stream": False, "kv_transfer_params": PREFILL_PARAMS}
            status, pre = await post(s, p_host, "/v1/completions", pbody, "req-1")
            assert status == 200 and pre["choices"][0]["finish_reason"] == "length"
            kvp = pre["kv_transfer_params"]
            assert {k: v for k, v in kvp.items() if k != "remote_block_ids"} == {
                "do_remote_prefill": True, "do_remote_decode": False, "remote_engine_id": "0",
                "remote_host": "192.0.0.1", "remote_port": 5557, "remote_tp_size": "2"}
            assert kvp["remote_block_ids"]
            st = await kv_status(s, p_host)
            assert st["requests_held"] == 1 and st["held"][0]["request_id"] == "cmpl-req-1-0"
            # decode with the same X-Request-Id pulls them, and the prefill frees them
            status, dec = await post(s, d_host, "/v1/completions", {**body, "kv_transfer_params": kvp}, "req-1")
            assert status == 200 and dec["choices"][0]["text"] == text and dec["kv_transfer_params"] is None
            st = await kv_status(s, p_host)
            assert st["requests_held"] == 0 and st["blocks_held"] == 0 and st["counters"]["freed"] == 1
            assert (await kv_status(s, d_host))["counters"]["remote_prefill"] == 1
            assert "request cmpl-req-1-0: pulled" in read_log(cluster, "d1", "d1")
            # the same params again are stale: the decode recomputes (and still answers)
            status, again = await post(s, d_host, "/v1/completions", {**body, "kv_transfer_params": kvp}, "req-1")
            assert status == 200 and again["choices"][0]["text"] == text
            assert "its kv_transfer_params are stale" in read_log(cluster, "d1", "d1")
            # a proxy that does not reuse the X-Request-Id leaves the prefill's blocks held
            _, pre2 = await post(s, p_host, "/v1/completions", pbody, "req-2")
            _, dec2 = await post(s, d_host, "/v1/completions", {**body, "kv_transfer_params": pre2["kv_transfer_params"]},
                                 "req-2-other")
            assert dec2["choices"][0]["text"] == text
            st = await kv_status(s, p_host)
            assert [h["request_id"] for h in st["held"]] == ["cmpl-req-2-0"] and st["held"][0]["pulls"] == 1
            assert st["counters"]["unknown_finished"] == 1 and st["blocks_held"] > 0
            assert "but reported request cmpl-req-2-other-0 as finished" in read_log(cluster, "p1", "p1")
            async with s.get(f"http://{p_host}:{PORT}/metrics") as resp:
                assert "pdwizard_sim_kv_requests_held{" in (metrics := await resp.text())
                assert 'pdwizard_sim_kv_requests_held{engine="0",model_name="qwen3-moe"} 1' in metrics
            # chat PD, streamed decode
            cpre = {**chat, "max_tokens": 1, "kv_transfer_params": PREFILL_PARAMS}
            _, cp = await post(s, p_host, "/v1/chat/completions", cpre, "chat-pd")
            assert cp["kv_transfer_params"]["do_remote_prefill"] is True
            _, events, _ = await sse(s, d_host, "/v1/chat/completions",
                                     {**chat, "kv_transfer_params": cp["kv_transfer_params"]}, "chat-pd")
            assert "".join(e["choices"][0]["delta"].get("content", "") for e in events) == content
            assert [h["request_id"] for h in (await kv_status(s, p_host))["held"]] == ["cmpl-req-2-0"]
            # the first token is EOS: no kv_transfer_params and nothing held, unless min_tokens = 1
            eos = {**pbody, "prompt": "[sim:eos] stop at once"}
            _, r = await post(s, p_host, "/v1/completions", {k: v for k, v in eos.items() if k != "min_tokens"})
            assert r["choices"][0]["finish_reason"] == "stop" and r["kv_transfer_params"] is None
            _, r = await post(s, p_host, "/v1/completions", eos, "eos-min")
            assert r["choices"][0]["finish_reason"] == "length" and r["kv_transfer_params"]
            # errors in vLLM's shape
            status, e = await post(s, p_host, "/v1/completions", {**body, "stream_options": {"include_usage": True}})
            assert status == 400 and "Stream options can only be defined when `stream=True`" in e["error"]["message"]
            status, e = await post(s, p_host, "/v1/completions", {**body, "model": "gpt-4"})
            assert status == 404 and e["error"]["type"] == "NotFoundError"

            # co-located trouble on d1: the HTTP port, then the LLMDataDist RPC port, are taken
            r = await conns["d1"].run(command(rendered[1]), check=False)
            assert r.exit_status == 1 and "OSError: [Errno 98] Address already in use" in r.stderr
            r = await conns["d1"].run(command(rendered[1], argv=with_flag(rendered[1].argv, "--port", "13800")),
                                      check=False)
            assert r.exit_status == 1 and "zmq.error.ZMQError: Address already in use (addr='tcp://0.0.0.0:5557')" \
                in r.stdout

            # die_after:2 on d2: two completed requests, then the engine dies (exit 1)
            for i in range(2):
                assert (await post(s, d2_host, "/v1/completions", body, f"d2-{i}"))[0] == 200
            done = await asyncio.wait_for(d2_run, 10)
            assert done.exit_status == 1
            assert "EngineDeadError: EngineCore encountered an issue" in done.stdout
            assert 'vllm_fault = "die_after:2"' in done.stdout

        # SIGTERM: a clean shutdown, and npu-smi no longer lists the process
        await conns["p1"].run(f"kill -TERM {p_pid}", check=True)
        await wait_until(lambda: not pid_alive(p_pid), 10, "the prefill to exit")
        assert "INFO:     Application shutdown complete." in read_log(cluster, "p1", "p1")
        assert parse_info((await conns["p1"].run("npu-smi info", check=True)).stdout).processes == []
    finally:
        for c in conns.values():
            c.close()
        await cluster.stop()
    # nothing outlives the cluster: the decode still running was stopped with it
    assert cluster.processes() == []
    await wait_until(lambda: not pid_alive(d_pid), 5, "the decode to be gone")


async def test_faults_and_refusals(tmp_path: Path) -> None:
    fast = {"vllm_startup_s": 0.3}
    cluster, session = await setup_guide(tmp_path, {
        "p1": {**fast, "vllm_fault": "oom"},
        "d1": {**fast, "vllm_fault": "port_in_use"},
        "d2": {**fast, "vllm_fault": "hccl_timeout"},
    })
    conns = {}
    try:
        conns = {n: await connect(cluster, n) for n in ("p1", "d1", "d2")}
        rendered = {r.node: r for r in (render_instance(session, i) for i in range(3))}
        ok = {"PDWIZARD_SIM_VLLM_FAULT": ""}  # the same node without its fault
        p, d = rendered["p1"], rendered["d1"]
        ports = iter(range(13701, 13720))  # concurrent runs on d1: each its own HTTP port

        def d1(argv: list[str] | None = None) -> list[str]:
            return with_flag(argv or d.argv, "--port", str(next(ports)))

        kv_bad = with_flag(d.argv, "--kv-transfer-config", '{"kv_connector": "LLMDataDistCMgrConnector",}')
        runs = {
            "oom": ("p1", command(p)),
            "port_in_use": ("d1", command(d)),
            "hccl_timeout": ("d2", command(rendered["d2"])),
            "unknown_flag": ("d1", command(d, ok, argv=[*d1(), "--foo"])),
            "bad_kv_json": ("d1", command(d, ok, argv=d1(kv_bad))),
            "kv_engine_id_number": ("d1", command(d, ok, argv=d1(with_flag(
                d.argv, "--kv-transfer-config", '{"kv_connector": "LLMDataDistCMgrConnector", "kv_role": '
                                                '"kv_consumer", "engine_id": 0}')))),
            "bad_additional_json": ("d1", command(d, ok, argv=d1(with_flag(d.argv, "--additional-config",
                                                                          "{'a': True}")))),
            "no_ranktable": ("d1", command(d, {**ok, "DISAGGREGATED_PREFILL_RANK_TABLE_PATH": "/nonexistent.json"},
                                           argv=d1())),
            "ranktable_other_ip": ("d1", command(d, {**ok, "VLLM_HOST_IP": "10.9.9.9"}, argv=d1())),
            "ranktable_devices": ("d1", command(d, ok, drop=("ASCEND_RT_VISIBLE_DEVICES",), argv=d1())),
            "no_model": ("p1", command(p, ok, argv=with_flag(p.argv, "serve", "/model/missing"))),
        }
        results = dict(zip(runs, await asyncio.gather(
            *(conns[node].run(cmd, check=False, timeout=20) for node, cmd in runs.values()))))

        def out(key: str) -> str:
            return results[key].stdout + results[key].stderr

        expect = {
            "oom": (1, ["RuntimeError: NPU out of memory. Tried to allocate", 'vllm_fault = "oom"',
                        "RuntimeError: Engine core initialization failed"]),
            "port_in_use": (1, ["listen on ip[192.0.0.2] and specific port[16666] fail",
                                "port is been using by other process", "EJ0003"]),
            "hccl_timeout": (1, ["EI0006", "Getting socket times out", "HCCL_CONNECT_TIMEOUT"]),
            "unknown_flag": (2, ["vllm: error: unrecognized arguments: --foo"]),
            "bad_kv_json": (2, ["vllm serve: error: argument --kv-transfer-config: 1 validation error for "
                                "KVTransferConfig", "Invalid JSON"]),
            "kv_engine_id_number": (2, ["engine_id", "Input should be a valid string"]),
            "bad_additional_json": (2, ["vllm serve: error: argument --additional-config: invalid loads value"]),
            "no_ranktable": (1, ["FileNotFoundError: [Errno 2] No such file or directory: '/nonexistent.json'"]),
            "ranktable_other_ip": (1, ["Can't read the target server_id 10.9.9.9"]),
            "ranktable_devices": (1, ["ranktable config devId[6], but local devId[0]"]),
            "no_model": (1, ["Invalid repository ID or local directory specified: '/model/missing'"]),
        }
        for key, (rc, texts) in expect.items():
            assert results[key].exit_status == rc, (key, out(key))
            for text in texts:
                assert text in out(key), (key, text, out(key))
            assert all(line.endswith("[SIMULATED]") for line in out(key).splitlines() if line), key
        # the faulty start registered its NPUs and took them back when it failed
        for node in ("p1", "d1", "d2"):
            assert parse_info((await conns[node].run("npu-smi info", check=True)).stdout).processes == []
    finally:
        for c in conns.values():
            c.close()
        await cluster.stop()
    assert cluster.processes() == []


@pytest.mark.parametrize("argv, words", [
    (["--max_model_len", "4096", "--additional-config.torchair_graph_config.enabled", "false"], []),
    (["--port", "http"], ["argument --port: invalid int value: 'http'"]),
    (["--tensor-parallel-size"], ["argument --tensor-parallel-size: expected one argument"]),
])
def test_command_line_parsing(argv, words, capsys) -> None:
    from pdwizard.profiles import load_profile
    from pdwizard.sim.vllm import build_parser, normalize_argv

    profile = load_profile("vllm-ascend-0.10.1rc1")
    parser = build_parser(profile, "0.10.1.1")
    args = normalize_argv(["serve", "/m", *argv], {"--kv-transfer-config", "--additional-config"})
    if not words:
        ns = parser.parse_args(args)
        assert ns.max_model_len == 4096 and ns.additional_config == {"torchair_graph_config": {"enabled": False}}
        return
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("vllm serve: error: ") and err.rstrip().endswith("[SIMULATED]")
    for w in words:
        assert w in err


async def test_standalone_mooncake_on_main(tmp_path: Path) -> None:
    """Without a cluster (PDWIZARD_SIM_HOST only), as other tests may run it: vllm-ascend main's
    Mooncake returns list-of-lists block ids and remote_request_id, which frees the prefill's
    blocks even when the decode's X-Request-Id differs; equal engine ids are refused; blocks no
    decode pulls are force-freed after VLLM_MOONCAKE_ABORT_REQUEST_TIMEOUT."""
    net = next_sim_net()
    extra = {"prefill": {"tp_size": 1, "dp_size": 1}, "decode": {"tp_size": 1, "dp_size": 1}}
    procs, hosts = [], []
    for i, (role, kv_port) in enumerate((("kv_producer", 36000), ("kv_consumer", 36100)), start=1):
        host = f"127.0.{net}.{i}"
        kv = {"kv_connector": "MooncakeConnectorV1", "kv_role": role, "kv_port": kv_port, "engine_id": str(i),
              "kv_connector_extra_config": extra}
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PDWIZARD_SIM", "DISAGG", "VLLM"))}
        env.update({"PDWIZARD_SIM_HOST": host, "PDWIZARD_SIM_VLLM_PROFILE": "vllm-ascend-main",
                    "PDWIZARD_SIM_VLLM_STARTUP_S": "0", "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
                    "VLLM_MOONCAKE_ABORT_REQUEST_TIMEOUT": "0.5"})
        log = open(tmp_path / f"{role}.log", "w")  # noqa: SIM115 - closed below
        procs.append((await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pdwizard.sim.vllm", "serve", "/m/Qwen3-8B", "--port", str(PORT),
            "--served-model-name", MODEL, "--kv-transfer-config", json.dumps(kv),
            stdout=log, stderr=log, env=env, cwd=str(tmp_path)), log))
        hosts.append(host)
    p_host, d_host = hosts
    try:
        await asyncio.gather(wait_healthy(p_host), wait_healthy(d_host))
        body = {"model": MODEL, "prompt": PROMPT, "max_tokens": 8}
        async with aiohttp.ClientSession() as s:
            _, pre = await post(s, p_host, "/v1/completions",
                                {**body, "max_tokens": 1, "min_tokens": 1, "kv_transfer_params": PREFILL_PARAMS}, "x")
            kvp = pre["kv_transfer_params"]
            assert kvp["remote_block_ids"] and isinstance(kvp["remote_block_ids"][0], list)
            assert (kvp["remote_host"], kvp["remote_port"], kvp["remote_request_id"]) == (p_host, 36000, "cmpl-x-0")
            status, dec = await post(s, d_host, "/v1/completions", {**body, "kv_transfer_params": kvp}, "y")
            assert status == 200 and dec["choices"][0]["finish_reason"] == "length"
            st = await kv_status(s, p_host)
            assert st["requests_held"] == 0 and st["counters"]["freed"] == 1
            status, e = await post(s, d_host, "/v1/completions",
                                   {**body, "kv_transfer_params": {**kvp, "remote_engine_id": "2"}}, "z")
            assert status == 500 and "Conflict engine id 2" in e["error"]["message"]
            # a prefill nobody pulls: held, then force-freed after the timeout
            await post(s, p_host, "/v1/completions",
                       {**body, "max_tokens": 1, "min_tokens": 1, "kv_transfer_params": PREFILL_PARAMS}, "lost")
            assert (await kv_status(s, p_host))["held"][0]["request_id"] == "cmpl-lost-0"
            deadline = time.monotonic() + 5
            while (st := await kv_status(s, p_host))["requests_held"]:
                assert time.monotonic() < deadline, st
                await asyncio.sleep(0.1)
            assert st["counters"]["expired"] == 1
    finally:
        for proc, log in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 10) == 0
            log.close()
    assert "INFO:     Application shutdown complete." in (tmp_path / "kv_consumer.log").read_text()
    assert "Force freed expired request cmpl-lost-0" in (tmp_path / "kv_producer.log").read_text()


async def test_a_log_burst_writes_numbered_lines_at_the_rate_asked(tmp_path: Path) -> None:
    """POST /sim/log (for bench/tui_logs.py): N lines a second for S seconds, every one numbered,
    none lost, spread over the burst rather than written at once; bad bodies are refused."""
    host = f"127.0.{next_sim_net()}.1"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PDWIZARD_SIM", "DISAGG", "VLLM"))}
    env.update({"PDWIZARD_SIM_HOST": host, "PDWIZARD_SIM_VLLM_STARTUP_S": "0",
                "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    log_path = tmp_path / "burst.log"
    with open(log_path, "w") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pdwizard.sim.vllm", "serve", "/m/Qwen3-8B", "--port", str(PORT),
            "--served-model-name", MODEL, stdout=log, stderr=log, env=env, cwd=str(tmp_path))
        try:
            await wait_healthy(host)
            async with aiohttp.ClientSession() as s:
                for bad in ({"lines_per_s": 0}, {"lines_per_s": 10, "seconds": 1e6}, {"seconds": 1}):
                    async with s.post(f"http://{host}:{PORT}/sim/log", json=bad) as resp:
                        assert resp.status == 400, bad
                started = time.monotonic()
                async with s.post(f"http://{host}:{PORT}/sim/log", json={"lines_per_s": 2000, "seconds": 1}) as resp:
                    assert resp.status == 202 and (await resp.json())["lines"] == 2000

            def burst() -> list[str]:
                return [ln for ln in log_path.read_text().splitlines() if "sim log burst line" in ln]

            await wait_until(lambda: len(burst()) >= 2000, timeout=10, what="2000 burst lines")
            took = time.monotonic() - started
            lines = burst()
            assert [int(ln.split("sim log burst line ")[1][:7]) for ln in lines] == list(range(1, 2001))
            assert all(ln.endswith("[SIMULATED]") and "/0002000: " in ln for ln in lines)
            assert 0.8 < took < 5.0, took  # paced over about a second, not dumped at once
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 10) == 0
