"""Fake `vllm serve` backends for the PD proxy's tests and benchmark.

FakeVllm answers what pd-proxy-protocol.md §13 says a vLLM 0.10.1.1 prefill or decode server
answers: /v1/completions and /v1/chat/completions (ids from X-Request-Id; `kv_transfer_params` at
the top level when the request asked for remote decode and ended length-capped; SSE streams ending
with `data: [DONE]`), /v1/models and /health. Hooks inject failures: an HTTP error, a hang, a
stream held after its first token, a connection cut after N tokens, no transfer params.

It runs in-process on 127.0.0.1 (port 0: a free port; stop() and start() again keep the port, to
model a backend that dies and comes back). `python tests/pd_backends.py PORT...` serves one fake
per port in the foreground (the benchmark runs its backends that way, in their own process).
"""

from __future__ import annotations

import socket

import argparse
import asyncio
import json
import time
import uuid
from dataclasses import dataclass

from aiohttp import web
from multidict import CIMultiDict

MODEL = "fake-model"


@dataclass
class Seen:
    """One completion request as the backend received it."""

    path: str
    headers: CIMultiDict  # case-insensitive, as HTTP
    body: dict

    @property
    def is_prefill(self) -> bool:
        return (self.body.get("kv_transfer_params") or {}).get("do_remote_decode") is True


class FakeVllm:
    def __init__(self, name: str = "fake", *, host: str = "127.0.0.1", port: int = 0,
                 token_delay: float = 0.0, engine_id: str = "0", record: bool = True) -> None:
        self.name, self.host, self.port = name, host, port
        self.token_delay = token_delay
        self.engine_id = engine_id
        self.record = record
        self.seen: list[Seen] = []
        # hooks
        self.error: tuple[int, str, str] | None = None  # (status, body, content type)
        self.hang = False  # take the request and never answer
        self.hold: asyncio.Event | None = None  # streams: after the first token, wait for this
        self.break_after: int | None = None  # cut the connection after this many tokens (0: before any byte)
        self.no_kv = False  # a prefill that returns "kv_transfer_params": null (EOS first token)
        # observations
        self.first_token_sent = asyncio.Event()
        self.last_token_sent = asyncio.Event()
        self.cancelled = asyncio.Event()  # a handler was cancelled: the client (the proxy) went away
        self.cancelled_count = 0
        self.active = 0
        self._runner: web.AppRunner | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def prefills(self) -> list[Seen]:
        return [s for s in self.seen if s.is_prefill]

    @property
    def decodes(self) -> list[Seen]:
        return [s for s in self.seen if not s.is_prefill]

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/completions", self._completion)
        app.router.add_post("/v1/chat/completions", self._completion)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        return app

    async def start(self) -> FakeVllm:
        self._runner = web.AppRunner(self.app(), access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=1024)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        """Die: close the listener and every connection."""
        if self._runner:
            await self._runner.cleanup()
            self._runner = None

    # -- handlers ----------------------------------------------------------------------

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": MODEL, "object": "model", "created": 0, "owned_by": "vllm", "root": MODEL, "parent": None,
             "max_model_len": 4096, "permission": []}]})

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def _completion(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if self.record:
            self.seen.append(Seen(request.path, request.headers.copy(), body))
        self.active += 1
        try:
            return await self._answer(request, body)
        except asyncio.CancelledError:
            self.cancelled_count += 1
            self.cancelled.set()
            raise
        finally:
            self.active -= 1

    async def _answer(self, request: web.Request, body: dict) -> web.StreamResponse:
        if self.error:
            status, text, ctype = self.error
            return web.Response(status=status, text=text, content_type=ctype)
        if self.hang:
            await asyncio.Event().wait()
        if self.break_after == 0:
            request.transport.close()
            return web.Response()
        chat = request.path.endswith("/chat/completions")
        rid = request.headers.get("X-Request-Id") or str(uuid.uuid4())
        rid = f"chatcmpl-{rid}" if chat else f"cmpl-{rid}"
        n = body.get("max_completion_tokens") or body.get("max_tokens") or 16
        kv_in = body.get("kv_transfer_params") or {}
        kv_out = None
        if kv_in.get("do_remote_decode") is True and not self.no_kv:  # every answer here is length-capped
            kv_out = {"do_remote_prefill": True, "do_remote_decode": False, "remote_block_ids": [1, 2, 3],
                      "remote_engine_id": self.engine_id, "remote_host": self.host, "remote_port": 5557,
                      "remote_tp_size": "2"}
        if body.get("stream") is True:
            return await self._stream(request, body, rid, chat, n)
        tokens = [f"tok{i} " for i in range(n)]
        for _ in tokens:
            if self.token_delay:
                await asyncio.sleep(self.token_delay)
        return web.json_response(_full(rid, chat, "".join(tokens), n, kv_out))

    async def _stream(self, request: web.Request, body: dict, rid: str, chat: bool, n: int) -> web.StreamResponse:
        out = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
        await out.prepare(request)
        created = int(time.time())
        if chat:
            await out.write(_event(_chunk(rid, chat, created, {"role": "assistant", "content": ""}, None)))
        for i in range(n):
            if self.break_after is not None and i == self.break_after:
                request.transport.close()
                return out
            if self.token_delay:
                await asyncio.sleep(self.token_delay)
            finish = "length" if i == n - 1 else None
            await out.write(_event(_chunk(rid, chat, created, f"tok{i} ", finish)))
            if i == 0:
                self.first_token_sent.set()
                if self.hold is not None:
                    await self.hold.wait()
        self.last_token_sent.set()
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {"prompt_tokens": 5, "total_tokens": 5 + n, "completion_tokens": n}
            await out.write(_event({"id": rid, "object": "chat.completion.chunk" if chat else "text_completion",
                                    "created": created, "model": MODEL, "choices": [], "usage": usage}))
        await out.write(b"data: [DONE]\n\n")
        await out.write_eof()
        return out


def free_ports(n: int) -> list[int]:
    """n free TCP ports on 127.0.0.1 (all bound at once, so they differ)."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _event(obj: dict) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def _chunk(rid: str, chat: bool, created: int, delta, finish: str | None) -> dict:
    if chat:
        d = delta if isinstance(delta, dict) else {"content": delta}
        choice = {"index": 0, "delta": d, "logprobs": None, "finish_reason": finish}
        if finish:
            choice["stop_reason"] = None
        return {"id": rid, "object": "chat.completion.chunk", "created": created, "model": MODEL, "choices": [choice]}
    return {"id": rid, "object": "text_completion", "created": created, "model": MODEL, "choices": [
        {"index": 0, "text": delta, "logprobs": None, "finish_reason": finish, "stop_reason": None}], "usage": None}


def _full(rid: str, chat: bool, text: str, n: int, kv: dict | None) -> dict:
    usage = {"prompt_tokens": 5, "total_tokens": 5 + n, "completion_tokens": n, "prompt_tokens_details": None}
    if chat:
        choice = {"index": 0, "message": {"role": "assistant", "reasoning_content": None, "content": text,
                                          "tool_calls": []},
                  "logprobs": None, "finish_reason": "length", "stop_reason": None}
        obj = "chat.completion"
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": "length", "stop_reason": None,
                  "prompt_logprobs": None}
        obj = "text_completion"
    return {"id": rid, "object": obj, "created": int(time.time()), "model": MODEL, "choices": [choice],
            "service_tier": None, "system_fingerprint": None, "usage": usage, "prompt_logprobs": None,
            "kv_transfer_params": kv}


async def _serve(ports: list[int], host: str) -> None:
    fakes = [await FakeVllm(f"fake{i}", host=host, port=p, record=False).start() for i, p in enumerate(ports)]
    print("ready " + " ".join(f.address for f in fakes), flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        for f in fakes:
            await f.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="serve fake vLLM PD backends (zero token delay)")
    ap.add_argument("ports", nargs="+", type=int)
    ap.add_argument("--host", default="127.0.0.1")
    a = ap.parse_args()
    try:
        asyncio.run(_serve(a.ports, a.host))
    except KeyboardInterrupt:
        pass
