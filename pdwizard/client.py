"""The prompt client: send a prompt through the proxy and measure what came back.

Used by the replay's `[[verify]]` step and the TUI's prompt pane. It streams (SSE)
so time to first token and time per output token are real, reads which prefill and
decode instance served the request from the proxy's `X-PD-Prefill` / `X-PD-Decode`
headers, and never calls an empty answer a success (the example proxy's known flaw
is a 200 with an empty body).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable

import aiohttp


@dataclass
class PromptResult:
    """One answer with its timings and where it was served."""

    prompt: str
    text: str = ""
    chunks: int = 0
    status: int = 0
    error: str | None = None
    request_id: str = ""
    server_request_id: str | None = None  # the proxy's X-Request-Id: the id P and D logged
    prefill: str | None = None
    decode: str | None = None
    kv: str | None = None  # the proxy's X-PD-KV-Params: "forwarded", or "absent" (D prefilled itself)
    ttft_s: float | None = None
    total_s: float = 0.0
    finish_reason: str | None = None
    usage: dict = field(default_factory=dict)

    @property
    def tokens(self) -> int:
        """Output tokens: the server's count when it gives one, else the text chunks seen."""
        return int(self.usage.get("completion_tokens") or self.chunks)

    @property
    def tpot_s(self) -> float | None:
        """Time per output token after the first."""
        if self.ttft_s is None or self.tokens < 2:
            return None
        return (self.total_s - self.ttft_s) / (self.tokens - 1)

    @property
    def ok(self) -> bool:
        return self.error is None and self.status == 200 and bool(self.text.strip())


def _body(model: str, prompt: str, max_tokens: int, chat: bool, stream: bool,
          temperature: float) -> dict:
    body: dict = {"model": model, "max_tokens": max_tokens, "temperature": temperature,
                  "stream": stream}
    if chat:
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


def _piece(obj: dict, chat: bool) -> tuple[str, str | None]:
    """The text and finish reason of one completion object (streamed or whole)."""
    choices = obj.get("choices") or [{}]
    c = choices[0]
    if chat:
        text = (c.get("delta") or {}).get("content") or (c.get("message") or {}).get("content") or ""
    else:
        text = c.get("text") or ""
    return text, c.get("finish_reason")


async def send_prompt(base_url: str, model: str, prompt: str, *, max_tokens: int = 100,
                      chat: bool = False, stream: bool = True, temperature: float = 0.0,
                      timeout_s: float = 300.0, on_text: Callable[[str], None] | None = None,
                      http: aiohttp.ClientSession | None = None) -> PromptResult:
    """POST to `{base_url}/v1/completions` (or chat) and collect the answer.

    `on_text` gets every piece of text as it arrives (the TUI streams it).
    Errors are returned in the result, not raised: a verification reports them.
    """
    path = "/v1/chat/completions" if chat else "/v1/completions"
    result = PromptResult(prompt=prompt, request_id=f"pdwizard-{uuid.uuid4().hex[:12]}")
    own = http is None
    http = http or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s))
    start = time.perf_counter()
    try:
        async with http.post(base_url.rstrip("/") + path,
                             json=_body(model, prompt, max_tokens, chat, stream, temperature),
                             headers={"X-Request-Id": result.request_id}) as resp:
            result.status = resp.status
            result.prefill = resp.headers.get("X-PD-Prefill")
            result.decode = resp.headers.get("X-PD-Decode")
            result.kv = resp.headers.get("X-PD-KV-Params")
            result.server_request_id = resp.headers.get("X-Request-Id")
            if resp.status != 200:
                result.error = f"HTTP {resp.status}: {(await resp.text())[:500]}"
            elif stream and resp.content_type == "text/event-stream":
                await _read_stream(resp, result, chat, start, on_text)
            else:
                _read_whole(await resp.json(content_type=None), result, chat, start, on_text)
    except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        result.total_s = time.perf_counter() - start
        if own:
            await http.close()
    if result.error is None and not result.text.strip():
        result.error = "empty answer (HTTP 200 with no text)"
    return result


async def _read_stream(resp: aiohttp.ClientResponse, result: PromptResult, chat: bool,
                       start: float, on_text: Callable[[str], None] | None) -> None:
    async for raw in resp.content:
        line = raw.decode("utf-8", "replace").strip()
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        obj = json.loads(data)
        if "error" in obj:
            result.error = f"stream error: {obj['error']}"
            return
        if obj.get("usage"):
            result.usage = obj["usage"]
        text, reason = _piece(obj, chat)
        result.finish_reason = reason or result.finish_reason
        if text:
            _add(result, text, start, on_text)
    result.error = result.error or "stream ended without [DONE]"


def _read_whole(obj: dict, result: PromptResult, chat: bool, start: float,
                on_text: Callable[[str], None] | None) -> None:
    text, result.finish_reason = _piece(obj, chat)
    result.usage = obj.get("usage") or {}
    if text:
        _add(result, text, start, on_text)


def _add(result: PromptResult, text: str, start: float, on_text: Callable[[str], None] | None) -> None:
    if result.ttft_s is None:
        result.ttft_s = time.perf_counter() - start
    result.text += text
    result.chunks += 1
    if on_text:
        on_text(text)
