"""The built-in PD proxy (pdwizard/proxy.py) against fake vLLM backends (tests/pd_backends.py).

Protocol: pd-proxy-protocol.md. Every wait is a deadline on a condition or an event, never a sleep.
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from multidict import CIMultiDict

from conftest import wait_until
from pd_backends import FakeVllm
from pdwizard import proxy as px

PROXY_FILE = Path(px.__file__)
GUIDE_ARGV = ["--host", "192.0.0.1", "--port", "8080", "--prefiller-hosts", "192.0.0.1", "--prefiller-port", "13700",
              "--decoder-hosts", "192.0.0.2", "192.0.0.3", "--decoder-ports", "13700", "13700"]


@dataclass
class PD:
    p: list[FakeVllm]
    d: list[FakeVllm]
    proxy: px.PDProxy
    runner: object
    client: aiohttp.ClientSession
    url: str

    async def post(self, path: str = "/v1/completions", **body):
        body = {"model": "fake-model", "prompt": "Who are you?", "max_tokens": 3, **body}
        return await self.client.post(self.url + path, json=body)

    async def complete(self, path: str = "/v1/completions", **body) -> tuple[int, CIMultiDict, str]:
        async with await self.post(path, **body) as r:
            return r.status, r.headers.copy(), await r.text()

    async def status(self) -> dict:
        async with self.client.get(self.url + "/status") as r:
            return await r.json()

    def idle(self) -> bool:
        """Every counter back to zero."""
        return self.proxy.in_flight == 0 and all(
            b.in_flight == 0 and b.tokens == 0 for b in self.proxy.prefillers + self.proxy.decoders)


@pytest.fixture
async def make_pd():
    made: list[PD] = []

    async def make(n_p: int = 1, n_d: int = 1, **cfg) -> PD:
        ps = [await FakeVllm(f"p{i}").start() for i in range(n_p)]
        ds = [await FakeVllm(f"d{i}").start() for i in range(n_d)]
        config = px.Config(prefill=[("127.0.0.1", f.port) for f in ps], decode=[("127.0.0.1", f.port) for f in ds],
                           host="127.0.0.1", port=0, **{"recheck_interval": 0.1, "timeout": 10.0, **cfg})
        runner, proxy = await px.start(config)
        pd = PD(ps, ds, proxy, runner, aiohttp.ClientSession(), f"http://127.0.0.1:{runner.addresses[0][1]}")
        made.append(pd)
        return pd

    yield make
    for pd in made:
        await pd.client.close()
        await pd.runner.cleanup()
        for f in pd.p + pd.d:
            await f.stop()


async def read_until(r: aiohttp.ClientResponse, marker: bytes, timeout: float = 5.0) -> bytes:
    """What the response has delivered so far, once it contains marker (a deadline, not a sleep)."""
    async def read() -> bytes:
        got = b""
        while marker not in got:
            chunk = await r.content.readany()
            assert chunk, f"the stream ended before {marker!r}: {got!r}"
            got += chunk
        return got

    return await asyncio.wait_for(read(), timeout)


def sse_data(text: str) -> list[str]:
    return [line[len("data: "):] for line in text.split("\n") if line.startswith("data: ")]


def stream_text(text: str) -> str:
    out = []
    for data in sse_data(text):
        if data != "[DONE]" and "choices" in (obj := json.loads(data)):
            c = obj["choices"][0] if obj["choices"] else {}
            out.append(c.get("text") or c.get("delta", {}).get("content") or "")
    return "".join(out)


# ---------------------------------------------------------------------------------------
# command line and packaging


def test_guides_command_line_parses_with_prefix_and_multiple_decoders():
    cfg = px.parse_args(GUIDE_ARGV)
    assert (cfg.host, cfg.port) == ("192.0.0.1", 8080)
    assert cfg.prefill == [("192.0.0.1", 13700)]  # --prefiller-port: a prefix of --prefiller-ports
    assert cfg.decode == [("192.0.0.2", 13700), ("192.0.0.3", 13700)]


def test_upstream_defaults_and_flags():
    cfg = px.parse_args(["--max-retries", "5", "--retry-delay", "0.5", "--timeout", "7", "--connect-timeout", "2"])
    assert (cfg.host, cfg.port, cfg.prefill, cfg.decode) == ("localhost", 8000, [("localhost", 8001)],
                                                              [("localhost", 8002)])
    assert (cfg.max_retries, cfg.retry_delay, cfg.timeout, cfg.connect_timeout) == (5, 0.5, 7.0, 2.0)


def test_host_and_port_counts_must_match(capsys):
    with pytest.raises(SystemExit) as e:
        px.parse_args(["--decoder-hosts", "a", "b", "--decoder-ports", "1"])
    assert e.value.code == 2
    assert "2 --decoder-hosts but 1 --decoder-ports" in capsys.readouterr().err


def test_module_imports_only_aiohttp_and_the_standard_library():
    tree = ast.parse(PROXY_FILE.read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0}
    assert names - sys.stdlib_module_names - {"aiohttp", "uvloop"} == set()
    assert "pdwizard" not in names


def test_help_runs_as_module_and_as_a_copied_file(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pdwizard.proxy", "--help"], capture_output=True, text=True, timeout=30,
                       cwd=Path(__file__).resolve().parent.parent)
    assert r.returncode == 0 and "--prefiller-ports" in r.stdout
    shutil.copy(PROXY_FILE, tmp_path / "proxy.py")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, "proxy.py", "--help"], capture_output=True, text=True, timeout=30,
                       cwd=tmp_path, env=env)
    assert r.returncode == 0 and "--decoder-ports" in r.stdout, r.stderr


def test_port_taken_exits_1_saying_so():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        r = subprocess.run([sys.executable, str(PROXY_FILE), "--host", "127.0.0.1", "--port", str(s.getsockname()[1])],
                           capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "cannot listen on 127.0.0.1" in r.stderr and "Unclosed" not in r.stderr, r.stderr


async def test_copied_file_serves_the_guides_command_line(tmp_path):
    """The one file alone, started as the guide starts the example (`--prefiller-port`, 2 decoders)."""
    p, d0, d1 = [await FakeVllm(n).start() for n in ("p", "d0", "d1")]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    shutil.copy(PROXY_FILE, tmp_path / "proxy.py")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    argv = [sys.executable, "proxy.py", "--host", "127.0.0.1", "--port", str(port), "--prefiller-hosts", "127.0.0.1",
            "--prefiller-port", str(p.port), "--decoder-hosts", "127.0.0.1", "127.0.0.1",
            "--decoder-ports", str(d0.port), str(d1.port)]
    proc = await asyncio.create_subprocess_exec(*argv, cwd=tmp_path, env=env, stderr=subprocess.PIPE)
    try:
        async with aiohttp.ClientSession() as client:
            async def up() -> bool:
                try:
                    async with client.get(f"http://127.0.0.1:{port}/healthcheck") as r:
                        return r.status == 200
                except aiohttp.ClientError:
                    return False
            for _ in range(200):
                if await up():
                    break
                assert proc.returncode is None
                await asyncio.sleep(0.05)
            async with client.get(f"http://127.0.0.1:{port}/healthcheck") as r:
                hc = await r.json()
            assert hc["status"] == "ok" and (hc["prefill_instances"], hc["decode_instances"]) == (1, 2)
            async with client.post(f"http://127.0.0.1:{port}/v1/completions",
                                   json={"model": "m", "prompt": "hi", "max_tokens": 2}) as r:
                assert r.status == 200
                rid = r.headers["X-Request-Id"]
                assert (await r.json())["choices"][0]["text"] == "tok0 tok1 "
    finally:
        proc.terminate()
        _, err = await asyncio.wait_for(proc.communicate(), 10)
        for f in (p, d0, d1):
            await f.stop()
    assert proc.returncode == 0, err.decode()
    lines = [ln for ln in err.decode().splitlines() if f"req={rid}" in ln]
    assert len(lines) == 1 and f"prefill=127.0.0.1:{p.port}" in lines[0] and "status=200" in lines[0], err.decode()


# ---------------------------------------------------------------------------------------
# the request flow


async def test_completion_flow_matches_the_example_proxy(make_pd):
    pd = await make_pd()
    status, headers, text = await pd.complete(max_tokens=3, temperature=0, stream_options={"include_usage": True},
                                              kv_transfer_params={"client": "value"})
    assert status == 200
    assert json.loads(text)["choices"][0]["text"] == "tok0 tok1 tok2 "
    [pre], [dec] = pd.p[0].seen, pd.d[0].seen
    rid = headers["X-Request-Id"]
    assert pre.headers["X-Request-Id"] == dec.headers["X-Request-Id"] == rid
    assert pre.path == dec.path == "/v1/completions"
    assert "Authorization" not in pre.headers  # no key configured: none sent ("Bearer None" upstream)
    assert "Accept-Encoding" not in pre.headers  # bodies are passed on as they come: never compressed
    # P: one token, not streamed, asked to keep the KV for a remote decode
    assert pre.body["max_tokens"] == 1 and pre.body["min_tokens"] == 1 and pre.body["stream"] is False
    assert "stream_options" not in pre.body
    assert pre.body["kv_transfer_params"] == {"do_remote_decode": True, "do_remote_prefill": False,
                                              "remote_engine_id": None, "remote_block_ids": None,
                                              "remote_host": None, "remote_port": None}
    assert pre.body["temperature"] == 0 and pre.body["prompt"] == "Who are you?"
    # D: the client's request with P's kv_transfer_params verbatim
    assert dec.body["kv_transfer_params"] == {"do_remote_prefill": True, "do_remote_decode": False,
                                              "remote_block_ids": [1, 2, 3], "remote_engine_id": "0",
                                              "remote_host": "127.0.0.1", "remote_port": 5557, "remote_tp_size": "2"}
    assert {k: v for k, v in dec.body.items() if k != "kv_transfer_params"} == {
        "model": "fake-model", "prompt": "Who are you?", "max_tokens": 3, "temperature": 0,
        "stream_options": {"include_usage": True}}
    assert headers["X-PD-Prefill"] == pd.p[0].address and headers["X-PD-Decode"] == pd.d[0].address
    assert headers["X-PD-KV-Params"] == "forwarded"


async def test_chat_flow_caps_max_completion_tokens_on_prefill_only(make_pd, monkeypatch):
    pd = await make_pd()
    pd.proxy.cfg.api_key = "sk-test"
    status, headers, text = await pd.complete("/v1/chat/completions", messages=[{"role": "user", "content": "hi"}],
                                              max_completion_tokens=2, max_tokens=None, prompt=None)
    assert status == 200
    body = json.loads(text)
    assert body["id"] == f"chatcmpl-{headers['X-Request-Id']}" and body["choices"][0]["message"]["content"] == "tok0 tok1 "
    [pre], [dec] = pd.p[0].seen, pd.d[0].seen
    assert pre.path == dec.path == "/v1/chat/completions"
    assert pre.body["max_completion_tokens"] == 1 and dec.body["max_completion_tokens"] == 2
    assert pre.headers["Authorization"] == dec.headers["Authorization"] == "Bearer sk-test"


async def test_prefill_without_transfer_params_still_decodes(make_pd):
    pd = await make_pd()
    pd.p[0].no_kv = True
    status, headers, text = await pd.complete(max_tokens=2)
    assert status == 200 and json.loads(text)["choices"][0]["text"] == "tok0 tok1 "
    assert "kv_transfer_params" not in pd.d[0].seen[0].body  # the client's body, unchanged
    assert headers["X-PD-KV-Params"] == "absent"


async def test_stream_is_passed_through_chunk_by_chunk_as_sse(make_pd):
    pd = await make_pd()
    d = pd.d[0]
    d.hold = asyncio.Event()
    async with await pd.post(stream=True, max_tokens=4) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/event-stream")
        assert r.headers["X-PD-Decode"] == d.address
        first = await read_until(r, b"tok0")
        assert not d.last_token_sent.is_set()  # the first token reached us while D still holds the rest
        d.hold.set()
        rest = await asyncio.wait_for(r.content.read(), 5)
    text = (first + rest).decode()
    assert stream_text(text) == "tok0 tok1 tok2 tok3 "
    assert sse_data(text)[-1] == "[DONE]" and text.count("[DONE]") == 1
    await wait_until(pd.idle, 5, "counters back to zero")


async def test_chat_stream_with_usage(make_pd):
    pd = await make_pd()
    status, headers, text = await pd.complete("/v1/chat/completions", messages=[{"role": "user", "content": "x"}],
                                              stream=True, stream_options={"include_usage": True}, prompt=None)
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    assert stream_text(text) == "tok0 tok1 tok2 "
    assert json.loads(sse_data(text)[-2])["usage"]["completion_tokens"] == 3


# ---------------------------------------------------------------------------------------
# errors


async def test_prefill_error_keeps_its_status_and_body_and_names_the_backend(make_pd):
    pd = await make_pd()
    err = {"error": {"message": "This model's maximum context length is 4096", "type": "BadRequestError",
                     "param": None, "code": 400}}
    pd.p[0].error = (400, json.dumps(err), "application/json")
    status, headers, text = await pd.complete()
    body = json.loads(text)
    assert status == 400 and headers["Content-Type"].startswith("application/json")
    assert body["error"] == err["error"]
    assert body["proxy"] == {"request_id": headers["X-Request-Id"], "role": "prefill", "backend": pd.p[0].address}
    assert len(pd.p[0].seen) == 1 and pd.d[0].seen == []  # not retried, no decode

    pd.p[0].error = (500, "Internal Server Error", "text/plain")
    status, _, text = await pd.complete()
    body = json.loads(text)
    assert status == 500 and "Internal Server Error" in body["error"]["message"]
    assert pd.p[0].address in body["error"]["message"] and body["proxy"]["role"] == "prefill"


async def test_decode_errors_are_json_naming_the_backend_never_an_empty_200(make_pd):
    pd = await make_pd()
    d = pd.d[0]
    d.error = (500, json.dumps({"error": {"message": "engine dead", "type": "InternalServerError",
                                          "param": None, "code": 500}}), "application/json")
    for stream in (False, True):
        status, headers, text = await pd.complete(stream=stream)
        body = json.loads(text)
        assert status == 500 and body["error"]["message"] == "engine dead"
        assert body["proxy"]["role"] == "decode" and body["proxy"]["backend"] == d.address
        assert headers["X-PD-Decode"] == d.address
    d.error = None
    d.break_after = 0  # D drops the connection before a byte
    for stream in (False, True):
        status, _, text = await pd.complete(stream=stream)
        body = json.loads(text)
        assert status == 502, text
        assert body["proxy"] == {"request_id": body["proxy"]["request_id"], "role": "decode", "backend": d.address}
        assert d.address in body["error"]["message"]
    await wait_until(pd.idle, 5, "counters back to zero")


async def test_broken_decode_stream_is_not_resent_and_ends_with_an_error_event(make_pd):
    pd = await make_pd()
    d = pd.d[0]
    d.break_after = 2
    status, headers, text = await pd.complete(stream=True, max_tokens=5)
    assert status == 200  # headers went out with the first chunk
    assert stream_text(text) == "tok0 tok1 "  # each token once: nothing re-sent
    events = sse_data(text)
    err = json.loads(events[-2])
    assert events[-1] == "[DONE]" and err["proxy"]["backend"] == d.address and "decode" in err["error"]["message"]
    assert len(d.decodes) == 1
    await wait_until(pd.idle, 5, "counters back to zero")


async def test_backend_calls_time_out(make_pd):
    pd = await make_pd(n_p=1, n_d=1, timeout=0.3)
    p, d = pd.p[0], pd.d[0]
    p.hang = True
    status, _, text = await asyncio.wait_for(pd.complete(), 5)
    body = json.loads(text)
    assert status == 504 and body["proxy"]["backend"] == p.address and "timed out" in body["error"]["message"]
    await asyncio.wait_for(p.cancelled.wait(), 5)  # the proxy closed the hung call
    p.hang = False
    await wait_until(lambda: pd.proxy.prefillers[0].healthy, 5, "the prefiller back after its /health answered")

    d.hold = asyncio.Event()  # D stalls after its first token
    status, _, text = await asyncio.wait_for(pd.complete(stream=True), 5)
    assert status == 200 and stream_text(text) == "tok0 "
    err = json.loads(sse_data(text)[-2])
    assert err["proxy"]["backend"] == d.address and "timed out" in err["error"]["message"]
    await wait_until(pd.idle, 5, "counters back to zero")


async def test_bad_requests_never_reach_a_backend(make_pd):
    pd = await make_pd()
    async with pd.client.post(pd.url + "/v1/completions", data=b"not json") as r:
        assert r.status == 400 and "JSON" in (await r.json())["error"]["message"]
    for extra in ({"n": 2}, {"prompt": ["a", "b"]}):
        status, _, text = await pd.complete(**extra)
        assert status == 400 and "not supported" in json.loads(text)["error"]["message"]
    status, _, _ = await pd.complete(prompt=[1, 2, 3])  # one prompt given as token ids is fine
    assert status == 200
    assert len(pd.p[0].seen) == 1


# ---------------------------------------------------------------------------------------
# cancellation and counters


async def test_client_disconnect_mid_stream_cancels_decode_and_releases_counters(make_pd, caplog):
    pd = await make_pd()
    caplog.set_level("INFO")
    d = pd.d[0]
    d.hold = asyncio.Event()
    r = await pd.post(stream=True, max_tokens=100)
    await read_until(r, b"tok0")
    assert pd.proxy.decoders[0].tokens > 0
    r.close()  # the client goes away
    await asyncio.wait_for(d.cancelled.wait(), 5)
    await wait_until(pd.idle, 5, "counters back to zero")
    st = await pd.status()
    assert st["decode"][0]["in_flight"] == 0 and st["decode"][0]["tokens_in_flight"] == 0
    assert st["decode"][0]["healthy"] and st["decode"][0]["failures"] == 0  # the client left, not D
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == []  # no traceback from aiohttp
    assert any("status=499" in r.getMessage() and "client disconnected" in r.getMessage() for r in caplog.records)


async def test_client_disconnect_during_prefill_cancels_prefill(make_pd):
    pd = await make_pd()
    p = pd.p[0]
    p.hang = True
    task = asyncio.create_task(pd.post())
    await wait_until(lambda: p.active == 1, 5, "the prefill to arrive")
    task.cancel()
    await asyncio.wait_for(p.cancelled.wait(), 5)
    await wait_until(pd.idle, 5, "counters back to zero")
    assert pd.d[0].seen == [] and pd.proxy.prefillers[0].healthy


# ---------------------------------------------------------------------------------------
# health and balancing


async def test_dead_decoder_leaves_rotation_and_comes_back(make_pd):
    pd = await make_pd(n_d=2)
    d0, d1 = pd.d
    await d0.stop()
    for _ in range(4):
        status, headers, _ = await pd.complete()
        assert status == 200 and headers["X-PD-Decode"] == d1.address  # the refused call retried on d1
    st = await pd.status()
    assert st["decode"][0]["healthy"] is False and "cannot connect" in st["decode"][0]["last_error"]
    assert st["decode"][0]["requests"] == 1  # tried once, then out of rotation
    await d0.start()  # same port
    await wait_until(lambda: pd.proxy.decoders[0].healthy, 5, "d0 back in rotation")
    served = {(await pd.complete())[1]["X-PD-Decode"] for _ in range(2)}
    assert served == {d0.address, d1.address} and len(d0.decodes) == 1


async def test_no_healthy_backend_is_a_503_naming_it(make_pd):
    pd = await make_pd()
    p = pd.p[0]
    await p.stop()
    status, _, text = await pd.complete()
    assert status == 502 and p.address in json.loads(text)["error"]["message"]
    pd.proxy.cfg.recheck_interval = 60  # keep it out for the rest of the test
    async with await pd.post() as r:
        body = await r.json()
        assert r.status == 503 and r.headers["Retry-After"] == "1"
    assert "no healthy prefill backend" in body["error"]["message"] and p.address in body["error"]["message"]
    async with pd.client.get(pd.url + "/health") as r:
        assert r.status == 503 and "prefill" in (await r.json())["error"]["message"]
    async with pd.client.get(pd.url + "/healthcheck") as r:
        hc = await r.json()
    assert hc["status"] == "ok" and hc["healthy_prefill_instances"] == 0 and hc["healthy_decode_instances"] == 1
    assert pd.idle()


async def test_no_prefill_is_spent_when_no_decoder_is_healthy(make_pd):
    pd = await make_pd(recheck_interval=60)
    p, d = pd.p[0], pd.d[0]
    await d.stop()
    status, _, text = await pd.complete()
    assert status == 502 and d.address in json.loads(text)["error"]["message"] and len(p.seen) == 1
    status, _, text = await pd.complete()
    assert status == 503 and "no healthy decode backend" in json.loads(text)["error"]["message"]
    assert len(p.seen) == 1  # P was not asked to hold KV that no decoder would pull


async def test_serial_requests_rotate_instead_of_always_picking_the_first(make_pd):
    pd = await make_pd(n_p=2, n_d=2)
    for _ in range(4):
        assert (await pd.complete())[0] == 200
    assert [len(f.seen) for f in pd.p + pd.d] == [2, 2, 2, 2]


async def test_least_loaded_decoder_is_picked(make_pd):
    pd = await make_pd(n_d=2)
    for d in pd.d:
        d.hold = asyncio.Event()
    big = await pd.post(stream=True, max_tokens=1000)
    loaded = pd.d[0] if pd.d[0].seen else pd.d[1]
    other = pd.d[1] if loaded is pd.d[0] else pd.d[0]
    for _ in range(3):
        status, headers, _ = await pd.complete(max_tokens=2)
        assert status == 200 and headers["X-PD-Decode"] == other.address
    st = await pd.status()
    busy = next(b for b in st["decode"] if b["address"] == loaded.address)
    assert busy["in_flight"] == 1 and busy["tokens_in_flight"] >= 1000
    loaded.hold.set()
    await asyncio.wait_for(big.read(), 5)
    big.close()
    await wait_until(pd.idle, 5, "counters back to zero")


async def test_models_health_healthcheck_status(make_pd):
    pd = await make_pd(n_d=2)
    async with pd.client.get(pd.url + "/v1/models") as r:
        assert r.status == 200 and (await r.json())["data"][0]["id"] == "fake-model"
    async with pd.client.get(pd.url + "/health") as r:
        assert r.status == 200 and await r.read() == b""
    async with pd.client.get(pd.url + "/healthcheck") as r:
        assert await r.json() == {"status": "ok", "prefill_instances": 1, "decode_instances": 2, "request_num": 0,
                                  "healthy_prefill_instances": 1, "healthy_decode_instances": 2}
    assert (await pd.complete())[0] == 200
    st = await pd.status()
    assert st["requests"] == {"total": 1, "in_flight": 0, "errors": 0}
    assert [b["address"] for b in st["decode"]] == [d.address for d in pd.d]
    assert st["prefill"][0] | {"address": None} == {
        "address": None, "healthy": True, "in_flight": 0, "tokens_in_flight": 0, "requests": 1, "failures": 0,
        "consecutive_failures": 0, "last_error": None, "down_for_s": None}
    for f in pd.p + pd.d:
        await f.stop()
    async with pd.client.get(pd.url + "/v1/models") as r:
        assert r.status == 503


async def test_one_log_line_per_request_names_both_instances(make_pd, caplog):
    pd = await make_pd()
    caplog.set_level("INFO", logger="pdwizard.proxy")
    _, headers, _ = await pd.complete()
    lines = [r.getMessage() for r in caplog.records if headers["X-Request-Id"] in r.getMessage()]
    assert len(lines) == 1
    assert f"prefill={pd.p[0].address} decode={pd.d[0].address}" in lines[0] and "status=200" in lines[0]
