"""pdwizard's PD proxy: one entry point in front of vLLM prefill (P) and decode (D) servers.

    python -m pdwizard.proxy --host 0.0.0.0 --port 8080 \\
        --prefiller-hosts 10.0.0.1 --prefiller-ports 13700 \\
        --decoder-hosts 10.0.0.2 10.0.0.3 --decoder-ports 13700 13700

It speaks the protocol of vllm-ascend's example proxy (load_balance_proxy_server_example.py;
pd-proxy-protocol.md), so one can replace the other: the same flags and endpoints, and per request
a prefill call (`max_tokens: 1`, no streaming, `kv_transfer_params` asking for remote decode) then
a decode call carrying P's `kv_transfer_params` verbatim, both with one fresh `X-Request-Id`.

Unlike the example it times out every backend call, passes backend errors through with their
status, never answers 200 with an empty body, streams SSE as `text/event-stream` chunk by chunk,
never re-sends a decode stream that already reached the client, releases its counters on every
path, cancels upstream calls when the client goes away, takes dead backends out of rotation
until their /health answers, and balances by tokens in flight rather than by index.

Endpoints: POST /v1/completions, /v1/chat/completions; GET /v1/models (from the first healthy
backend that answers), /health (200, empty, while each role has a healthy backend; else 503),
/healthcheck (upstream's JSON plus healthy counts), /status (per-backend load and counts).

Every completion answer carries `X-Request-Id` (the id P and D saw), `X-PD-Prefill` and
`X-PD-Decode` (host:port of the instances used) and `X-PD-KV-Params` (`forwarded`, or `absent` when
P returned no transfer params and D prefilled itself). Errors the proxy makes are vLLM-shaped JSON
(`{"error": {...}, "proxy": {"request_id", "role", "backend"}}`): 400 bad request, 502 backend
failed, 503 no healthy backend, 504 backend timed out; a backend's own HTTP error keeps its
status and body, with that "proxy" key added. One log line per request (INFO; WARNING if it failed):

    req=<id> path=/v1/completions stream=0|1 prefill=<host:port> decode=<host:port>
        kv=forwarded|absent|- status=<code> prefill_ms=<ms> total_ms=<ms> [retried="..."] [error="..."]

Self-contained on purpose: it imports only aiohttp and the standard library, so pdwizard copies
this one file to the proxy node and runs it with that node's Python (`python proxy.py ...`).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import os
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

log = logging.getLogger("pdwizard.proxy")

COMPLETION_PATHS = ("/v1/completions", "/v1/chat/completions")
# What P must see to keep the KV blocks for D (pd-proxy-protocol.md §5, v0.11.0/main template).
PREFILL_KV_PARAMS = {"do_remote_decode": True, "do_remote_prefill": False, "remote_engine_id": None,
                     "remote_block_ids": None, "remote_host": None, "remote_port": None}
CHARS_PER_TOKEN = 4  # no tokenizer here: the body size is the prompt-length estimate
DEFAULT_MAX_TOKENS = {"/v1/completions": 16, "/v1/chat/completions": 256}  # estimate when unset
EJECT_AFTER = 3  # transport errors in a row (other than connect failures/timeouts) before ejection
MAX_BODY = 128 * 2**20
SSE = "text/event-stream"
AIOHTTP_VERSION = tuple(int(x) for x in aiohttp.__version__.split(".")[:2] if x.isdigit())
# Failures that prove the request never reached the backend: the only ones we retry elsewhere.
NOT_SENT = (aiohttp.ClientConnectorError,) + (
    (aiohttp.ConnectionTimeoutError,) if hasattr(aiohttp, "ConnectionTimeoutError") else ())
UPSTREAM_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError)


# ---------------------------------------------------------------------------------------
# configuration


@dataclass
class Config:
    prefill: list[tuple[str, int]]
    decode: list[tuple[str, int]]
    host: str = "localhost"
    port: int = 8000
    max_retries: int = 3
    retry_delay: float = 0.001
    timeout: float = 600.0
    connect_timeout: float = 5.0
    recheck_interval: float = 5.0
    log_level: str = "INFO"
    api_key: str | None = field(default_factory=lambda: os.environ.get("OPENAI_API_KEY"))


def parse_args(argv: list[str] | None = None) -> Config:
    """The example proxy's flags (argparse prefixes too: the guide writes `--prefiller-port`), plus ours."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="localhost", help="address to listen on (default localhost)")
    ap.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    ap.add_argument("--prefiller-hosts", nargs="+", default=["localhost"], metavar="HOST")
    ap.add_argument("--prefiller-ports", nargs="+", type=int, default=[8001], metavar="PORT")
    ap.add_argument("--decoder-hosts", nargs="+", default=["localhost"], metavar="HOST")
    ap.add_argument("--decoder-ports", nargs="+", type=int, default=[8002], metavar="PORT")
    ap.add_argument("--max-retries", type=int, default=3,
                    help="attempts per backend call, the first included (as upstream); only a call "
                         "that could not connect is retried, on another backend (default 3)")
    ap.add_argument("--retry-delay", type=float, default=0.001,
                    help="seconds before the 2nd attempt, doubling after (default 0.001)")
    ap.add_argument("--timeout", type=float, default=600.0,
                    help="seconds a backend may stay silent: waiting for its answer or between two "
                         "stream chunks (default 600)")
    ap.add_argument("--connect-timeout", type=float, default=5.0,
                    help="seconds to open a connection to a backend (default 5)")
    ap.add_argument("--recheck-interval", type=float, default=5.0,
                    help="longest pause between /health probes of a backend out of rotation (default 5)")
    ap.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                    help="INFO logs one line per request (default INFO)")
    a = ap.parse_args(argv)
    for role, hosts, ports in (("prefiller", a.prefiller_hosts, a.prefiller_ports),
                               ("decoder", a.decoder_hosts, a.decoder_ports)):
        if len(hosts) != len(ports):
            ap.error(f"{len(hosts)} --{role}-hosts but {len(ports)} --{role}-ports: give one port per host")
        for p in ports + [a.port]:
            if not 0 <= p <= 65535:
                ap.error(f"port {p} is out of range 0-65535")
    if a.max_retries < 1:
        ap.error("--max-retries counts attempts: 1 or more")
    return Config(prefill=list(zip(a.prefiller_hosts, a.prefiller_ports)),
                  decode=list(zip(a.decoder_hosts, a.decoder_ports)), host=a.host, port=a.port,
                  max_retries=a.max_retries, retry_delay=a.retry_delay, timeout=a.timeout,
                  connect_timeout=a.connect_timeout, recheck_interval=a.recheck_interval,
                  log_level=a.log_level)


# ---------------------------------------------------------------------------------------
# backends


class Backend:
    """One vLLM server of one role, and the load and health the proxy tracks for it."""

    def __init__(self, role: str, host: str, port: int) -> None:
        self.role, self.host, self.port = role, host, port
        self.address = f"{host}:{port}"
        self.base = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"  # IPv6 literal
        self.healthy = True
        self.in_flight = 0
        self.tokens = 0  # estimated tokens of the requests in flight: the balancing key
        self.requests = 0
        self.failures = 0
        self.consecutive_failures = 0
        self.last_error: str | None = None
        self.down_since: float | None = None
        self.last_pick = 0  # tie-break: the least recently picked wins, so serial traffic rotates

    def acquire(self, tokens: int) -> None:
        self.in_flight += 1
        self.tokens += tokens
        self.requests += 1

    def release(self, tokens: int) -> None:
        self.in_flight -= 1
        self.tokens -= tokens

    def answered(self) -> None:
        self.consecutive_failures = 0

    def failed(self, reason: str, *, eject: bool) -> bool:
        """Record a transport failure; True if this takes the backend out of rotation."""
        self.failures += 1
        self.consecutive_failures += 1
        self.last_error = reason
        if self.healthy and (eject or self.consecutive_failures >= EJECT_AFTER):
            self.healthy = False
            self.down_since = time.monotonic()
            return True
        return False

    def readmit(self) -> None:
        self.healthy, self.down_since, self.consecutive_failures = True, None, 0

    def status(self) -> dict:
        down = None if self.down_since is None else round(time.monotonic() - self.down_since, 3)
        return {"address": self.address, "healthy": self.healthy, "in_flight": self.in_flight,
                "tokens_in_flight": self.tokens, "requests": self.requests, "failures": self.failures,
                "consecutive_failures": self.consecutive_failures, "last_error": self.last_error,
                "down_for_s": down}


def pick(pool: list[Backend], exclude: list[Backend], counter: itertools.count) -> Backend | None:
    """The healthy backend with the fewest tokens in flight; ties go to the least recently picked."""
    best = None
    for b in pool:
        if b.healthy and b not in exclude and (
                best is None or (b.tokens, b.last_pick) < (best.tokens, best.last_pick)):
            best = b
    if best is not None:
        best.last_pick = next(counter)
    return best


def describe(exc: BaseException) -> str:
    """A short reason for a log line or an error message."""
    if isinstance(exc, asyncio.TimeoutError):
        return f"timed out ({exc})" if str(exc) else "timed out"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect: {os.strerror(exc.errno) if exc.errno else exc}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the response was cut short"
    return f"{type(exc).__name__}: {exc}"


# ---------------------------------------------------------------------------------------
# requests


class ProxyError(Exception):
    """A request the proxy answers itself: JSON error, `status`, naming `backend` when there is one."""

    def __init__(self, status: int, message: str, backend: Backend | None = None, role: str | None = None,
                 body: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.backend = status, message, backend
        self.role = backend.role if backend else role
        self.body = body  # a backend's own error body, passed through


@dataclass
class Trace:
    """One client request: what its log line and response headers say."""

    request_id: str
    path: str
    start: float = field(default_factory=time.perf_counter)
    stream: bool = False
    prefill: Backend | None = None
    decode: Backend | None = None
    kv: str | None = None  # "forwarded": P returned kv_transfer_params; "absent": D prefills itself
    prefill_ms: float | None = None
    status: int = 0
    error: str | None = None
    retried: list[str] = field(default_factory=list)  # calls that could not connect, retried elsewhere

    def headers(self) -> dict[str, str]:
        h = {"X-Request-Id": self.request_id}
        if self.prefill:
            h["X-PD-Prefill"] = self.prefill.address
        if self.decode:
            h["X-PD-Decode"] = self.decode.address
        if self.kv:
            h["X-PD-KV-Params"] = self.kv
        return h

    def line(self) -> str:
        s = (f"req={self.request_id} path={self.path} stream={int(self.stream)} "
             f"prefill={self.prefill.address if self.prefill else '-'} "
             f"decode={self.decode.address if self.decode else '-'} kv={self.kv or '-'} status={self.status} "
             f"prefill_ms={'-' if self.prefill_ms is None else f'{self.prefill_ms:.1f}'} "
             f"total_ms={(time.perf_counter() - self.start) * 1000:.1f}")
        if self.retried:
            s += f" retried={json.dumps('; '.join(self.retried))}"
        return s + (f" error={json.dumps(self.error)}" if self.error else "")


def prefill_request(req: dict) -> dict:
    """The client's request as P must see it: one token, no streaming, keep the KV for a remote D."""
    p = dict(req)
    p["kv_transfer_params"] = dict(PREFILL_KV_PARAMS)
    p["stream"] = False
    p["max_tokens"] = 1
    p["min_tokens"] = 1  # an EOS first token would end "stopped", and P would return no params
    if "max_completion_tokens" in p:
        p["max_completion_tokens"] = 1  # vLLM prefers it over max_tokens
    p.pop("stream_options", None)  # vLLM refuses stream_options without stream
    return p


def pd_unsafe(req: dict) -> str | None:
    """Why a request cannot go through PD, or None. P returns transfer params for one sequence only."""
    n = req.get("n")
    if isinstance(n, int) and n > 1:
        return "n > 1 is not supported by prefill-decode disaggregation: send n = 1"
    prompt = req.get("prompt")
    if isinstance(prompt, list) and len(prompt) > 1 and not all(isinstance(x, int) for x in prompt):
        return ("a list of prompts is not supported by prefill-decode disaggregation "
                "(P returns KV transfer parameters for the first prompt only): send one prompt per request")
    return None


def estimate(req: dict, body_len: int, path: str) -> tuple[int, int]:
    """(prompt tokens, tokens to generate), estimated without a tokenizer."""
    out = req.get("max_completion_tokens") or req.get("max_tokens")
    if not isinstance(out, int) or isinstance(out, bool) or out < 0:
        out = DEFAULT_MAX_TOKENS.get(path, 16)
    return body_len // CHARS_PER_TOKEN, out


def error_body(status: int, message: str, t: Trace | None, role: str | None, backend: str | None) -> dict:
    """vLLM's error shape, so OpenAI clients show the message, plus who failed."""
    etype = {400: "BadRequestError", 502: "BadGateway", 503: "ServiceUnavailable", 504: "GatewayTimeout"}
    return {"error": {"message": message, "type": etype.get(status, "ProxyError"), "param": None, "code": status},
            "proxy": {"request_id": t.request_id if t else None, "role": role, "backend": backend}}


def sse_error(body: dict, tail: bytes) -> bytes:
    """An error event then [DONE], as vLLM ends a stream that fails, after whatever D already sent.
    Blank lines first if D's last chunk stopped mid-event, so the error stays a separate event."""
    sep = b"" if tail.endswith(b"\n\n") else b"\n\n"
    return sep + b"data: " + json.dumps(body).encode() + b"\n\ndata: [DONE]\n\n"


# ---------------------------------------------------------------------------------------
# the proxy


class PDProxy:
    """The aiohttp application, the backend pools and one shared client session."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.prefillers = [Backend("prefill", h, p) for h, p in cfg.prefill]
        self.decoders = [Backend("decode", h, p) for h, p in cfg.decode]
        self.session: aiohttp.ClientSession | None = None
        self.timeout = aiohttp.ClientTimeout(total=None, sock_connect=cfg.connect_timeout, sock_read=cfg.timeout)
        self.probe_timeout = aiohttp.ClientTimeout(total=cfg.connect_timeout + 5.0, sock_connect=cfg.connect_timeout)
        self._picks = itertools.count(1)
        self._rechecks: dict[Backend, asyncio.Task] = {}
        self.started = time.monotonic()
        self.total = self.in_flight = self.errors = 0

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        for path in COMPLETION_PATHS:
            app.router.add_post(path, self.handle_completion)
        app.router.add_get("/v1/models", self.handle_models)
        app.router.add_get("/health", self.handle_health)
        app.router.add_get("/healthcheck", self.handle_healthcheck)
        app.router.add_get("/status", self.handle_status)
        app.on_startup.append(self._open)
        app.on_cleanup.append(self._close)
        return app

    async def _open(self, _app: web.Application) -> None:
        # Keep-alive shorter than uvicorn's 5 s (vLLM's default), so we never reuse a connection
        # the backend is closing; no connection limit, as upstream (100000).
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=4.0, ttl_dns_cache=300)
        # Bodies pass through as they come: ask for no compression, decompress nothing, keep no cookies.
        self.session = aiohttp.ClientSession(connector=connector, timeout=self.timeout, auto_decompress=False,
                                             skip_auto_headers=("Accept-Encoding",),
                                             cookie_jar=aiohttp.DummyCookieJar())

    async def _close(self, _app: web.Application) -> None:
        for task in self._rechecks.values():
            task.cancel()
        await asyncio.gather(*self._rechecks.values(), return_exceptions=True)
        if self.session:
            await self.session.close()

    # -- completions -------------------------------------------------------------------

    async def handle_completion(self, request: web.Request) -> web.StreamResponse:
        """POST /v1/completions and /v1/chat/completions: prefill on P, then decode on D."""
        t = Trace(str(uuid.uuid4()), request.path)
        self.total += 1
        self.in_flight += 1
        try:
            resp = await self._complete(request, t)
            t.status = resp.status
            return resp
        except ProxyError as e:
            t.status, t.error = e.status, t.error or e.message
            headers = {**t.headers(), **({"Retry-After": "1"} if e.status == 503 else {})}
            body = e.body or error_body(e.status, e.message, t, e.role, e.backend.address if e.backend else None)
            return web.json_response(body, status=e.status, headers=headers)
        except asyncio.CancelledError:  # the client went away: upstream calls close on the way out
            t.status, t.error = 499, "client disconnected"
            raise
        except ConnectionResetError:  # the same, noticed by a write to the client (upstream errors
            t.status, t.error = 499, "client disconnected"  # are caught where we read from a backend)
            return web.Response(status=499)  # nobody reads it; aiohttp drops the connection
        finally:
            self.in_flight -= 1
            if t.error:
                self.errors += 1
                log.warning("%s", t.line())
            elif log.isEnabledFor(logging.INFO):
                log.info("%s", t.line())

    async def _complete(self, request: web.Request, t: Trace) -> web.StreamResponse:
        body = await request.read()
        try:
            req = json.loads(body)
        except ValueError:
            req = None
        if not isinstance(req, dict):
            raise ProxyError(400, "the request body is not a JSON object")
        problem = pd_unsafe(req)
        if problem:
            raise ProxyError(400, problem)
        t.stream = req.get("stream") is True
        prompt_tokens, max_tokens = estimate(req, len(body), t.path)
        headers = self._backend_headers(request, t)
        if not any(b.healthy for b in self.decoders):  # no prefill whose KV no decode would pull
            raise self._unavailable("decode", self.decoders)

        kv = await self._prefill(req, headers, prompt_tokens, t)
        t.kv = "forwarded" if kv else "absent"
        if kv:
            body = json.dumps({**req, "kv_transfer_params": kv}).encode()
        return await self._decode(request, body, headers, prompt_tokens + max_tokens, t)

    def _backend_headers(self, request: web.Request, t: Trace) -> dict[str, str]:
        """The same X-Request-Id to P and D: vLLM derives the engine request id from it, and P frees
        the KV blocks by the id D reports (pd-proxy-protocol.md §7). The key: OPENAI_API_KEY as
        upstream, else the client's own Authorization."""
        h = {"Content-Type": "application/json", "X-Request-Id": t.request_id}
        auth = f"Bearer {self.cfg.api_key}" if self.cfg.api_key else request.headers.get("Authorization")
        if auth:
            h["Authorization"] = auth
        return h

    async def _prefill(self, req: dict, headers: dict, tokens: int, t: Trace) -> dict | None:
        """Run the prefill; P's kv_transfer_params (opaque to us), or None if it returned none."""
        data = json.dumps(prefill_request(req)).encode()
        p, resp = await self._send(self.prefillers, data, headers, tokens, t)
        try:
            if resp.status != 200:
                raise await self._backend_error(p, resp, t)
            try:
                payload = await resp.read()
            except UPSTREAM_ERRORS as e:
                raise self._failure(p, e) from None
        finally:
            p.release(tokens)
            resp.release()
        t.prefill_ms = (time.perf_counter() - t.start) * 1000
        try:
            kv = json.loads(payload).get("kv_transfer_params")
        except (ValueError, AttributeError):
            raise ProxyError(502, f"prefill {p.address} answered 200 with a body that is not a JSON object", p) from None
        if not kv:
            log.debug("req=%s prefill %s returned no kv_transfer_params: decode prefills locally", t.request_id, p.address)
        return kv

    async def _decode(self, request: web.Request, data: bytes, headers: dict, tokens: int,
                      t: Trace) -> web.StreamResponse:
        """Run the decode and pass its answer on: SSE chunk by chunk, anything else whole."""
        d, resp = await self._send(self.decoders, data, headers, tokens, t)
        try:
            if resp.status != 200:
                raise await self._backend_error(d, resp, t)
            if resp.content_type == SSE:
                return await self._relay(request, d, resp, t)
            try:
                payload = await resp.read()
            except UPSTREAM_ERRORS as e:
                raise self._failure(d, e) from None
            ctype = resp.headers.get("Content-Type", "application/json")
            return web.Response(body=payload, headers={**t.headers(), "Content-Type": ctype})
        finally:
            d.release(tokens)
            resp.release()  # closes the connection if D's body was not read to the end: D aborts

    async def _relay(self, request: web.Request, d: Backend, resp: aiohttp.ClientResponse,
                     t: Trace) -> web.StreamResponse:
        """Pass D's stream through as it comes. Headers go out only with D's first chunk, so a D that
        fails before it still gets a proper error status. Once bytes reached the client the stream
        is never re-sent (that would duplicate text): a failure ends it with an error event."""
        chunks = resp.content.iter_any()
        try:
            tail = await chunks.__anext__()
        except StopAsyncIteration:
            raise ProxyError(502, f"decode {d.address} answered 200 with an empty stream", d) from None
        except UPSTREAM_ERRORS as e:
            raise self._failure(d, e) from None
        out = web.StreamResponse(headers={**t.headers(), "Content-Type": resp.headers.get("Content-Type", SSE)})
        await out.prepare(request)
        await out.write(tail)
        while True:
            try:
                chunk = await chunks.__anext__()
            except StopAsyncIteration:
                break
            except UPSTREAM_ERRORS as e:
                err = self._failure(d, e, "the stream broke: ")
                t.error = err.message
                await out.write(sse_error(error_body(err.status, err.message, t, "decode", d.address), tail))
                break
            await out.write(chunk)
            tail = chunk
        await out.write_eof()
        return out

    async def _send(self, pool: list[Backend], data: bytes, headers: dict, tokens: int,
                    t: Trace) -> tuple[Backend, aiohttp.ClientResponse]:
        """POST to the least loaded healthy backend of `pool`, holding its load; the caller releases
        both. A call that could not connect never reached the backend, so it is retried on another
        one; anything else is not (P or D may already be working on it)."""
        role = pool[0].role if pool else "?"
        tried: list[Backend] = []
        failure: ProxyError | None = None
        for attempt in range(self.cfg.max_retries):
            if attempt:
                await asyncio.sleep(self.cfg.retry_delay * 2 ** (attempt - 1))
            b = pick(pool, tried, self._picks)
            if b is None:
                break
            tried.append(b)
            setattr(t, role, b)
            b.acquire(tokens)
            try:
                resp = await self.session.post(b.base + t.path, data=data, headers=headers)
            except NOT_SENT as e:
                b.release(tokens)
                failure = self._failure(b, e)
                continue
            except BaseException as e:
                b.release(tokens)
                if isinstance(e, UPSTREAM_ERRORS):
                    raise self._failure(b, e) from None
                raise
            b.answered()
            if failure:
                t.retried.append(failure.message)
            return b, resp
        if failure:
            raise failure
        raise self._unavailable(role, pool)

    def _unavailable(self, role: str, pool: list[Backend]) -> ProxyError:
        down = "; ".join(f"{b.address} ({b.last_error or 'down'})" for b in pool) or "none configured"
        return ProxyError(503, f"no healthy {role} backend: {down}", role=role)

    def _failure(self, b: Backend, exc: BaseException, when: str = "") -> ProxyError:
        """Record a transport failure of `b` (ejecting it if needed) and the error for the client."""
        reason = describe(exc)
        timed_out = isinstance(exc, asyncio.TimeoutError)
        if b.failed(reason, eject=timed_out or isinstance(exc, NOT_SENT)):
            log.warning("%s %s out of rotation: %s", b.role, b.address, reason)
            self._start_recheck(b)
        return ProxyError(504 if timed_out else 502, f"{b.role} {b.address}: {when}{reason}", b)

    async def _backend_error(self, b: Backend, resp: aiohttp.ClientResponse, t: Trace) -> ProxyError:
        """A backend's HTTP error, passed on with its status and body, plus who answered it."""
        try:
            raw = await resp.read()
        except UPSTREAM_ERRORS as e:
            return self._failure(b, e)
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        message = f"{b.role} {b.address} answered {resp.status}"
        if not isinstance(data, dict):
            text = raw.decode("utf-8", "replace")[:2000]
            data = error_body(resp.status, f"{message}: {text}", t, b.role, b.address)
        data["proxy"] = {"request_id": t.request_id, "role": b.role, "backend": b.address}
        t.error = message
        return ProxyError(resp.status, message, b, body=data)

    # -- health --------------------------------------------------------------------------

    def _start_recheck(self, b: Backend) -> None:
        if b not in self._rechecks or self._rechecks[b].done():
            self._rechecks[b] = asyncio.ensure_future(self._recheck(b))

    async def _recheck(self, b: Backend) -> None:
        """Probe an ejected backend's /health, backing off to --recheck-interval, until it answers 200."""
        delay = min(0.25, self.cfg.recheck_interval)
        while True:
            await asyncio.sleep(delay)
            try:
                async with self.session.get(b.base + "/health", timeout=self.probe_timeout) as r:
                    if r.status == 200:
                        b.readmit()
                        log.warning("%s %s back in rotation", b.role, b.address)
                        return
                    b.last_error = f"/health answered {r.status}"
            except UPSTREAM_ERRORS as e:
                b.last_error = describe(e)
            delay = min(delay * 2, self.cfg.recheck_interval)

    async def handle_models(self, request: web.Request) -> web.Response:
        """GET /v1/models from the first healthy backend that answers (P first, as upstream main)."""
        for b in self.prefillers + self.decoders:
            if not b.healthy:
                continue
            try:
                async with self.session.get(b.base + "/v1/models", timeout=self.probe_timeout) as r:
                    if r.status == 200:
                        body = await r.read()
                        return web.Response(body=body, content_type="application/json",
                                            headers={"X-PD-Backend": b.address})
            except UPSTREAM_ERRORS:
                continue
        return web.json_response(error_body(503, "no backend answered /v1/models", None, None, None), status=503)

    def _healthy(self, pool: list[Backend]) -> int:
        return sum(b.healthy for b in pool)

    async def handle_health(self, request: web.Request) -> web.Response:
        """GET /health: 200 with an empty body (as vLLM) while each role has a healthy backend."""
        missing = [r for r, pool in (("prefill", self.prefillers), ("decode", self.decoders)) if not self._healthy(pool)]
        if not missing:
            return web.Response(status=200)
        msg = f"no healthy {' or '.join(missing)} backend"
        return web.json_response(error_body(503, msg, None, missing[0], None), status=503)

    async def handle_healthcheck(self, request: web.Request) -> web.Response:
        """GET /healthcheck: upstream's answer (always "ok": the proxy is up) plus health counts."""
        return web.json_response({
            "status": "ok", "prefill_instances": len(self.prefillers), "decode_instances": len(self.decoders),
            "request_num": self.in_flight, "healthy_prefill_instances": self._healthy(self.prefillers),
            "healthy_decode_instances": self._healthy(self.decoders)})

    async def handle_status(self, request: web.Request) -> web.Response:
        """GET /status: per-backend load, health and counts."""
        return web.json_response({
            "uptime_s": round(time.monotonic() - self.started, 3),
            "requests": {"total": self.total, "in_flight": self.in_flight, "errors": self.errors},
            "prefill": [b.status() for b in self.prefillers], "decode": [b.status() for b in self.decoders]})


# ---------------------------------------------------------------------------------------
# running


async def start(cfg: Config) -> tuple[web.AppRunner, PDProxy]:
    """Start listening (port 0: any free port; see runner.addresses). Stop with runner.cleanup()."""
    proxy = PDProxy(cfg)
    # handler_cancellation: a client that goes away cancels its handler, and with it the upstream
    # calls (aiohttp >= 3.9 no longer does this by default; older versions always do).
    extra = {"handler_cancellation": True} if AIOHTTP_VERSION >= (3, 9) else {}
    runner = web.AppRunner(proxy.app(), access_log=None, **extra)
    await runner.setup()
    try:
        await web.TCPSite(runner, cfg.host, cfg.port, backlog=1024).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, proxy


async def serve_forever(cfg: Config) -> None:
    runner, _ = await start(cfg)
    pools = "; ".join(f"{role} {' '.join(f'{h}:{p}' for h, p in pool)}"
                      for role, pool in (("prefill", cfg.prefill), ("decode", cfg.decode)))
    where = ", ".join(f"{a[0]}:{a[1]}" for a in runner.addresses)
    log.info("pdwizard proxy listening on %s; %s", where, pools)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    logging.basicConfig(level=cfg.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run = asyncio.run
    try:  # vLLM nodes have uvloop; it is only faster
        import uvloop
        run = getattr(uvloop, "run", asyncio.run)
    except ImportError:
        pass
    try:
        run(serve_forever(cfg))
    except OSError as e:  # typically: the port is taken
        log.error("cannot listen on %s:%s: %s", cfg.host, cfg.port, e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
