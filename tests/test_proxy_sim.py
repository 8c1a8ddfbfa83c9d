"""The built-in PD proxy in front of the simulator's fake `vllm serve` (pdwizard/sim/vllm.py), run
standalone as two processes (a Mooncake kv_producer and kv_consumer on 127.0.0.1): the decode
pulls the prefill's KV blocks by the params the proxy forwards, and the prefill frees them only when
the decode reports the same request id, so a proxy that broke the protocol leaves blocks held."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import aiohttp

from pdwizard import proxy as px

from pd_backends import free_ports

ROOT = Path(__file__).resolve().parent.parent
MODEL = "/model/qwen"


def kv_config(role: str, kv_port: int, engine_id: str) -> str:
    side = {"tp_size": 1, "dp_size": 1}
    return json.dumps({"kv_connector": "MooncakeConnectorV1", "kv_role": role, "kv_port": str(kv_port),
                       "engine_id": engine_id, "kv_connector_extra_config": {"prefill": side, "decode": side}})


async def start_sim(port: int, role: str, kv_port: int, engine_id: str, log: Path) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PDWIZARD_SIM_VLLM_STARTUP_S": "0.05"}
    for k in ("PDWIZARD_SIM_NODE", "PDWIZARD_SIM_HOST", "PDWIZARD_SIM_ROOT", "VLLM_HOST_IP"):
        env.pop(k, None)
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pdwizard.sim.vllm", "serve", MODEL, "--host", "127.0.0.1", "--port", str(port),
        "--kv-transfer-config", kv_config(role, kv_port, engine_id),
        env=env, stdout=log.open("wb"), stderr=asyncio.subprocess.STDOUT)


async def wait_healthy(client: aiohttp.ClientSession, port: int, proc, log: Path, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            async with client.get(f"http://127.0.0.1:{port}/health") as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        assert proc.returncode is None, log.read_text()
        assert asyncio.get_running_loop().time() < deadline, f"sim vllm on {port} not healthy: {log.read_text()}"
        await asyncio.sleep(0.05)


async def test_proxy_in_front_of_the_simulated_vllm(tmp_path):
    p_port, d_port, p_kv, d_kv = free_ports(4)
    procs = [await start_sim(p_port, "kv_producer", p_kv, "0", tmp_path / "p.log"),
             await start_sim(d_port, "kv_consumer", d_kv, "1", tmp_path / "d.log")]
    runner = None
    try:
        async with aiohttp.ClientSession() as client:
            await wait_healthy(client, p_port, procs[0], tmp_path / "p.log")
            await wait_healthy(client, d_port, procs[1], tmp_path / "d.log")
            cfg = px.Config(prefill=[("127.0.0.1", p_port)], decode=[("127.0.0.1", d_port)], host="127.0.0.1", port=0)
            runner, _ = await px.start(cfg)
            url = f"http://127.0.0.1:{runner.addresses[0][1]}"

            async with client.post(url + "/v1/completions",
                                   json={"model": MODEL, "prompt": "Who are you?", "max_tokens": 8}) as r:
                assert r.status == 200
                body = await r.json()
                assert body["id"] == f"cmpl-{r.headers['X-Request-Id']}" and body["choices"][0]["text"]
                assert r.headers["X-PD-KV-Params"] == "forwarded"
            async with client.post(url + "/v1/chat/completions",
                                   json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}],
                                         "max_tokens": 4, "stream": True}) as r:
                assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")
                text = await r.text()
                assert text.rstrip().endswith("data: [DONE]") and "SIMULATED" in text
            async with client.get(url + "/v1/models") as r:
                assert (await r.json())["data"][0]["id"] == MODEL

            async with client.get(f"http://127.0.0.1:{p_port}/sim/kv") as r:
                pk = await r.json()
            async with client.get(f"http://127.0.0.1:{d_port}/sim/kv") as r:
                dk = await r.json()
            # P held the KV of both requests and freed it when D reported the same request ids
            assert (pk["counters"]["held"], pk["counters"]["pulled"], pk["counters"]["freed"]) == (2, 2, 2), pk
            assert pk["blocks_held"] == 0 and pk["counters"]["unknown_finished"] == 0
            # D used the remote prefill both times: it never recomputed a prompt
            assert (dk["counters"]["remote_prefill"], dk["counters"]["recomputed"]) == (2, 0), dk
    finally:
        if runner:
            await runner.cleanup()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            await asyncio.wait_for(proc.wait(), 10)
