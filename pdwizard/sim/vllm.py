"""The simulator's fake `vllm serve`: an aiohttp server that speaks vLLM's OpenAI API and the PD
protocol (SIMULATED: no NPU, no model weights; every line it prints ends with ``[SIMULATED]``).

Each sim node has it on PATH as ``vllm`` (``sim/bin/vllm``, a sh wrapper that execs the
cluster's python with ``-m pdwizard.sim.vllm``; the process renames itself ``vllm``). It runs
as its own process, started like the real one::

    vllm serve MODEL --host 0.0.0.0 --port P --tensor-parallel-size 2 ... \\
        --kv-transfer-config '{...}' --additional-config '{...}'

Command line: parsed with argparse against the node's version profile (``pdwizard.profiles``:
``vllm-ascend-<installed vllm_ascend version>``, else ``vllm-ascend-main``; override with
``PDWIZARD_SIM_VLLM_PROFILE``). Only the profile's serve flags exist; ``--flag=value``,
underscores (``--max_model_len``) and the dotted JSON form (``--additional-config.a.b v``) work as
in vLLM. An unknown flag is argparse's ``vllm: error: unrecognized arguments: --foo`` (exit 2);
``--kv-transfer-config`` is validated like vLLM 0.10.1.1's pydantic ``KVTransferConfig``
(unknown keys dropped, ``engine_id`` must be a string, ``kv_role`` a known role) and
``--additional-config`` with ``json.loads`` (``invalid loads value``), both exit 2.

Environment read:
    PDWIZARD_SIM_HOST       the node's loopback address: every socket binds there, never on
                            --host 0.0.0.0 (logged); unset: --host, or 127.0.0.1 for a wildcard
    PDWIZARD_SIM_NODE       node state dir: facts (ip, devices, the spec's vllm_* keys) and the
                            npu-smi process registrations; unset: standalone defaults
    PDWIZARD_SIM_ROOT       node filesystem root: the model path must exist under it with a
                            config.json (unset: not checked)
    PDWIZARD_SIM_VLLM_STARTUP_S, PDWIZARD_SIM_TOKEN_DELAY_MS, PDWIZARD_SIM_VLLM_FAULT
                            override the spec's vllm_startup_s, token_delay_ms, vllm_fault
    DISAGGREGATED_PREFILL_RANK_TABLE_PATH, ASCEND_RT_VISIBLE_DEVICES, VLLM_HOST_IP,
    VLLM_ASCEND_LLMDD_RPC_PORT, GLOO_SOCKET_IFNAME, HCCL_IF_BASE_PORT, timeouts of the connectors
                            as the real stack reads them (llmdatadist-connector.md)

Ports: the HTTP port (--port) is bound at once, as vLLM does, and listens (answers) only when
the start-up is over (vllm_startup_s after launch): connections are refused until then. The KV
side channel listens on the connector's ports from the worker start: LLMDataDist
``VLLM_ASCEND_LLMDD_RPC_PORT`` (5557) + tp_rank, Mooncake ``kv_port`` + tp_rank; a clash is the
real ``zmq.error.ZMQError: Address already in use``. The real channel is ZMQ plus HCCL; here it
is HTTP: the decode POSTs ``/pull`` to the prefill's ``remote_host:remote_port`` (a node IP is
mapped to that node's loopback address through the cluster's facts).

Endpoints: GET /health (200, empty), /v1/models, /version, /metrics (vLLM gauges plus
``pdwizard_sim_*`` lines), GET /sim/kv (JSON: KV blocks held for remote decodes, per request,
and the PD counters), POST /v1/completions and /v1/chat/completions (JSON or SSE), POST /sim/log
(JSON ``{"lines_per_s": N, "seconds": S}``: log N synthetic lines a second for S seconds, answered
202 at once; a chatty server for the TUI's log-pane benchmark, bench/tui_logs.py).

PD (pd-proxy-protocol.md §5-§7, llmdatadist-connector.md §6): a kv_producer given
``kv_transfer_params.do_remote_decode`` keeps the request's KV blocks when it ends length-capped
and returns ``kv_transfer_params`` (not when the token was EOS: ``min_tokens`` prevents that);
the blocks stay held until a decode pulls them and reports the same engine request id
(``cmpl-<X-Request-Id>-0`` / ``chatcmpl-<X-Request-Id>``; main's ``remote_request_id`` when
given). A pull that reports another id leaves the blocks held (logged: the leak of a proxy
that does not reuse X-Request-Id). A kv_consumer without (or with stale, invalid or
unreachable) params recomputes the prompt itself, slower, and logs it.

Faults (spec ``vllm_fault``): oom, port_in_use, hccl_timeout at start-up (exit 1, the real
error text), die_after:N (the engine dies after N completed requests, exit 1), kv_pull_fail (a
decode whose every KV pull fails: it serves, recomputing each prompt, and logs it). Other start-up
failures: model path missing, ranktable missing / unreadable / without this node's IP or devices
(``ranktable config devId[6], but local devId[0]``), NPUs held by another process (OOM), a
KV port or the HTTP port in use, a connector the version does not have.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import os
import re
import signal
import socket
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Optional



def _launched_at() -> float:
    """When this process was launched, on the monotonic clock, so the start-up counts the
    interpreter's own start too, as a real vllm's does. The `vllm` wrapper records the
    moment (wall clock) before it execs Python; /proc start times proved unreliable here
    (they can run ahead of the real launch). Falls back to now (module import)."""
    now = time.monotonic()
    try:
        age = time.time() - float(os.environ.get("PDWIZARD_SIM_LAUNCHED_AT", ""))
    except ValueError:
        return now
    return now - age if 0.0 <= age < 10.0 else now


T0 = _launched_at()
MARK = " [SIMULATED]"
EOS_MARK = "[sim:eos]"  # a prompt containing it makes the model's first token EOS (without min_tokens)
SUBCOMMANDS = ("chat", "complete", "serve", "bench", "collect-env", "run-batch")
ROUTES = [("/health", "GET"), ("/v1/models", "GET"), ("/version", "GET"), ("/metrics", "GET"),
          ("/v1/completions", "POST"), ("/v1/chat/completions", "POST"), ("/sim/kv", "GET"), ("/sim/log", "POST")]
LOG_BURST_MAX_RATE, LOG_BURST_MAX_S = 100_000.0, 600.0
LOG_BURST_TICK_S = 0.01
KV_ROLES = ("kv_producer", "kv_consumer", "kv_both")
STATS_INTERVAL_S = 10.0
BLOCKS_PER_RANK = 2048
PULL_TIMEOUT_S = 5.0
# time model: a prompt token costs a tenth of a generated token (token_delay_ms), at least
# PREFILL_MS_PER_TOKEN, so a decode that recomputes is slower than one that pulls (PULL_MS + per block)
PREFILL_MS_PER_TOKEN = 0.1
PULL_MS, PULL_MS_PER_BLOCK = 0.5, 0.01


# --------------------------------------------------------------------------------------- output

def _write(stream, text: str) -> None:
    try:
        stream.write("".join(line + MARK + "\n" for line in text.splitlines() or [""]))
        stream.flush()
    except (OSError, ValueError):
        pass


class Log:
    """vLLM's log shape: ``(Proc pid=N) LEVEL MM-DD HH:MM:SS [file.py:line] message [SIMULATED]``."""

    def __init__(self) -> None:
        self.pid = os.getpid()

    def __call__(self, where: str, msg: str, level: str = "INFO", proc: str | None = "APIServer",
                 err: bool = False) -> None:
        head = f"({proc} pid={self.pid}) " if proc else ""
        ts = time.strftime("%m-%d %H:%M:%S")
        _write(sys.stderr if err else sys.stdout,
               "\n".join(f"{head}{level} {ts} [{where}] {line}" for line in str(msg).splitlines() or [""]))

    def uvicorn(self, msg: str, level: str = "INFO") -> None:
        _write(sys.stdout, f"(APIServer pid={self.pid}) {(level + ':').ljust(10)}{msg}")

    def raw(self, text: str, err: bool = False) -> None:
        _write(sys.stderr if err else sys.stdout, text)


# --------------------------------------------------------------------------------------- argv

class _Parser(argparse.ArgumentParser):
    def _print_message(self, message: str, file=None) -> None:
        if message:
            _write(file or sys.stderr, message.rstrip("\n"))


def human_readable_int(value: str) -> int:
    """vLLM's --max-model-len: 32768, 32k, 1M (k = 1000, K = 1024 as in vLLM)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)\s*", value)
    if not m:
        raise ValueError(value)
    mult = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "K": 2**10, "M": 2**20, "G": 2**30}[m.group(2)]
    return int(float(m.group(1)) * mult)


_TYPES: dict[str, Any] = {
    "--port": int, "--tensor-parallel-size": int, "--seed": int, "--max-num-batched-tokens": int,
    "--max-num-seqs": int, "--block-size": int, "--max-model-len": human_readable_int,
    "--gpu-memory-utilization": float,
}
_NARGS = {"--served-model-name": "+"}


def _kv_transfer_config(value: str) -> dict[str, Any]:
    """vLLM 0.10.1.1: TypeAdapter(KVTransferConfig).validate_json, errors as argparse errors."""
    from pydantic import TypeAdapter, ValidationError

    try:
        cfg = TypeAdapter(_kv_config_class()).validate_json(value)
    except ValidationError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    from dataclasses import asdict

    out = asdict(cfg)
    raw = json.loads(value)
    out["_keys"] = list(raw) if isinstance(raw, dict) else []
    return out


_KV_CLASS = None


def _kv_config_class():
    """vLLM 0.10.1.1's KVTransferConfig: its 11 fields, lax types, unknown keys dropped."""
    global _KV_CLASS
    if _KV_CLASS is None:
        from pydantic.dataclasses import dataclass as pdc

        @pdc
        class KVTransferConfig:
            kv_connector: Optional[str] = None  # noqa: UP045 - the field types vLLM declares
            engine_id: Optional[str] = None  # noqa: UP045
            kv_buffer_device: Optional[str] = "cuda"  # noqa: UP045
            kv_buffer_size: float = 1e9
            kv_role: Optional[Literal["kv_producer", "kv_consumer", "kv_both"]] = None  # noqa: UP045
            kv_rank: Optional[int] = None  # noqa: UP045
            kv_parallel_size: int = 1
            kv_ip: str = "127.0.0.1"
            kv_port: int = 14579
            kv_connector_extra_config: dict[str, Any] = field(default_factory=dict)
            kv_connector_module_path: Optional[str] = None  # noqa: UP045

            def __post_init__(self) -> None:
                if self.kv_connector is not None and self.kv_role is None:
                    raise ValueError("Please specify kv_disagg_role when kv_connector is set, supported "
                                     f"roles are {list(KV_ROLES)}")

        _KV_CLASS = KVTransferConfig
    return _KV_CLASS


def loads(value: str) -> dict[str, Any]:  # the name argparse prints: "invalid loads value"
    data = json.loads(value)
    if not isinstance(data, dict):
        raise argparse.ArgumentTypeError(f"1 validation error for VllmConfig\nadditional_config\n  Input should "
                                         f"be a valid dictionary [type=dict_type, input_value={value!r}, "
                                         "input_type=str]")
    return data


def build_parser(profile, version: str) -> _Parser:
    top = _Parser(prog="vllm", allow_abbrev=False,
                  usage="vllm [-h] [-v] {" + ",".join(SUBCOMMANDS) + "} ...",
                  description="vLLM CLI (SIMULATED by pdwizard)")
    top.add_argument("-v", "--version", action="version", version=version)
    sub = top.add_subparsers(dest="subparser", metavar="{" + ",".join(SUBCOMMANDS) + "}")
    serve = sub.add_parser("serve", prog="vllm serve", usage="vllm serve [model_tag] [options]",
                           allow_abbrev=False, help="Start the vLLM OpenAI Compatible API server.")
    for name in SUBCOMMANDS:
        if name != "serve":
            sub.add_parser(name, prog=f"vllm {name}", allow_abbrev=False)
    serve.add_argument("model_tag", help="The model tag to serve")
    for flag, kind in profile.serve_flags.items():
        if kind == "switch":
            serve.add_argument(flag, action="store_true")
        elif kind == "json":
            typ = _kv_transfer_config if flag == "--kv-transfer-config" else loads
            serve.add_argument(flag, type=typ)
        else:
            serve.add_argument(flag, type=_TYPES.get(flag, str), nargs=_NARGS.get(flag))
    return top


def normalize_argv(argv: list[str], json_flags: set[str]) -> list[str]:
    """vLLM's FlexibleArgumentParser: --a_b is --a-b; --json-flag.x.y V merges into the JSON."""
    out: list[str] = []
    dotted: dict[str, dict] = {}
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok == "--":
            out.extend(argv[i:])
            break
        if tok.startswith("--"):
            key, eq, value = tok.partition("=")
            head, dot, rest = key.partition(".")
            head = "--" + head[2:].replace("_", "-")
            if dot and head in json_flags and rest:
                if not eq:
                    if i + 1 >= len(argv):
                        out.append(head + "." + rest)
                        break
                    value, i = argv[i + 1], i + 1
                try:
                    parsed = json.loads(value)
                except ValueError:
                    parsed = value
                d = dotted.setdefault(head, {})
                *path, last = rest.split(".")
                for p in path:
                    d = d.setdefault(p, {}) if isinstance(d.get(p, {}), dict) else d
                d[last] = parsed
                i += 1
                continue
            tok = head + (("." + rest) if dot else "") + (eq + value if eq else "")
        out.append(tok)
        i += 1
    for flag, d in dotted.items():
        if flag in out:  # merged into the JSON string given as well
            k = out.index(flag)
            if k + 1 < len(out):
                with contextlib.suppress(ValueError, AttributeError):
                    base = json.loads(out[k + 1])
                    base.update(d)
                    out[k + 1] = json.dumps(base)
                    continue
        out.extend([flag, json.dumps(d)])
    return out


# --------------------------------------------------------------------------------------- node

@dataclass
class NodeInfo:
    """What the process knows about the node it runs on (facts from the sim state dir)."""

    state: str | None
    facts: dict
    host: str                 # where every socket binds
    ip: str                   # get_ip(): VLLM_HOST_IP, else the node's address
    startup_s: float
    token_delay_ms: float
    fault: str

    @property
    def name(self) -> str:
        return self.facts.get("name") or socket.gethostname()

    def chip(self, phy: int) -> dict | None:
        for c in self.facts.get("chip", []):
            if c["phy"] == phy:
                return c
        return None

    def interfaces(self) -> list[str]:
        if not self.facts:
            return []
        try:
            from pdwizard.sim.render import _interfaces
            return [name for _i, name, _ip in _interfaces(self.facts)] + ["lo"]
        except Exception:  # noqa: BLE001 - a diagnostic only
            return [self.facts.get("nic", "eth0"), "lo"]


def load_node(host_arg: str | None) -> NodeInfo:
    state = os.environ.get("PDWIZARD_SIM_NODE") or None
    facts: dict = {}
    if state:
        with contextlib.suppress(OSError, ValueError, EOFError):
            from pdwizard.sim.state import read_facts
            facts = read_facts(state)
    v = dict(facts.get("vllm") or {})
    env = os.environ

    def num(name: str, default: float) -> float:
        try:
            return max(0.0, float(env[name]))
        except (KeyError, ValueError):
            return default

    host = env.get("PDWIZARD_SIM_HOST") or ""
    if not host:
        host = "127.0.0.1" if host_arg in (None, "", "0.0.0.0", "::") else host_arg
    return NodeInfo(
        state=state, facts=facts, host=host,
        ip=env.get("VLLM_HOST_IP") or facts.get("ip") or host,
        startup_s=num("PDWIZARD_SIM_VLLM_STARTUP_S", float(v.get("startup_s", 0.2))),
        token_delay_ms=num("PDWIZARD_SIM_TOKEN_DELAY_MS", float(v.get("token_delay_ms", 0.0))),
        fault=env.get("PDWIZARD_SIM_VLLM_FAULT", v.get("fault", "")) or "",
    )


def _json_response(data: Any, status: int = 200):
    """JSON as vLLM (FastAPI / pydantic) sends it: compact."""
    from aiohttp import web

    return web.json_response(data, status=status, dumps=lambda o: json.dumps(o, separators=(",", ":")))


def _dist_version(name: str) -> str | None:
    from importlib import metadata
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def choose_profile():
    from pdwizard.profiles import available_profiles, load_profile

    name = os.environ.get("PDWIZARD_SIM_VLLM_PROFILE")
    installed = _dist_version("vllm_ascend")
    if not name:
        name = f"vllm-ascend-{installed}"
        if name not in available_profiles():
            name = "vllm-ascend-main"
    return load_profile(name), installed


# --------------------------------------------------------------------------------------- text

_TOKEN = re.compile(r"\s*[A-Za-z0-9_']+|\s*[^\sA-Za-z0-9_']|\s+$")


def tokenize(text: str) -> list[str]:
    """The fake tokenizer: words and punctuation, each with its leading space."""
    return _TOKEN.findall(text)


def answer_text(prompt: str, model: str) -> str:
    """The deterministic answer to a prompt (temperature and seed do not change it)."""
    p = " ".join(prompt.replace(EOS_MARK, "").split())
    if re.search(r"\bwho are you\b", p, re.IGNORECASE):
        return (f" I am a SIMULATED {model} model: pdwizard's fake vLLM on a simulated Ascend node "
                "wrote this answer, and no NPU computed it.")
    digest = hashlib.sha256(p.encode()).hexdigest()[:8]
    tail = p[-60:]
    return (f" SIMULATED answer {digest} from a fake {model}: pdwizard's vLLM simulator replies to "
            f"\"{tail}\" with this text, the same every time.")


def chat_prompt(messages: list[dict]) -> tuple[str, str]:
    """(the templated prompt, the last user message) for a chat request (Qwen's template)."""
    parts, last_user = [], ""
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        content = "" if content is None else str(content)
        parts.append(f"<|im_start|>{m.get('role', 'user')}\n{content}<|im_end|>\n")
        if m.get("role") == "user":
            last_user = content
    return "".join(parts) + "<|im_start|>assistant\n", last_user


# --------------------------------------------------------------------------------------- KV

class EngineError(Exception):
    def __init__(self, status: int, message: str, kind: str = "BadRequestError") -> None:
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind


@dataclass
class Held:
    request_id: str
    blocks: list[int]
    prompt_tokens: int
    since: float = field(default_factory=time.monotonic)
    pulls: int = 0


class KVCache:
    """Paged KV blocks: allocated per running request, held after a remote-decode prefill."""

    def __init__(self, total: int) -> None:
        from collections import deque

        self.total = total
        self.free = deque(range(total))       # freed blocks go to the back: reused last
        self.held: dict[str, Held] = {}
        self.owner: dict[int, str] = {}       # held block -> request id
        self.cond = asyncio.Condition()
        self.counters = {"held": 0, "freed": 0, "pulled": 0, "unknown_finished": 0, "stale_pulls": 0,
                         "expired": 0, "remote_prefill": 0, "recomputed": 0, "pull_failed": 0}

    @property
    def used(self) -> int:
        return self.total - len(self.free)

    @property
    def held_blocks(self) -> int:
        return sum(len(h.blocks) for h in self.held.values())

    async def alloc(self, n: int) -> list[int]:
        n = min(n, self.total)
        async with self.cond:
            await self.cond.wait_for(lambda: len(self.free) >= n)  # a leak stalls the engine, as on NPUs
            return [self.free.popleft() for _ in range(n)]

    async def release(self, blocks: list[int]) -> None:
        async with self.cond:
            self.free.extend(blocks)
            self.cond.notify_all()

    def hold(self, request_id: str, blocks: list[int], prompt_tokens: int) -> None:
        old = self.held.pop(request_id, None)  # the same id twice: the first one's blocks leak for good
        if old:
            for b in old.blocks:
                self.owner.pop(b, None)
        self.held[request_id] = Held(request_id, blocks, prompt_tokens)
        for b in blocks:
            self.owner[b] = request_id
        self.counters["held"] += 1

    async def free_held(self, request_id: str) -> Held | None:
        h = self.held.pop(request_id, None)
        if h is not None:
            for b in h.blocks:
                self.owner.pop(b, None)
            await self.release(h.blocks)
        return h

    def status(self) -> dict:
        now = time.monotonic()
        return {
            "blocks_total": self.total, "blocks_used": self.used, "blocks_held": self.held_blocks,
            "requests_held": len(self.held),
            "held": [{"request_id": h.request_id, "blocks": len(h.blocks), "prompt_tokens": h.prompt_tokens,
                      "pulls": h.pulls, "age_s": round(now - h.since, 3)} for h in self.held.values()],
            "counters": dict(self.counters),
        }


@dataclass
class EngineRequest:
    request_id: str            # the engine request id (cmpl-<X-Request-Id>-<i>, chatcmpl-<X-Request-Id>)
    prompt_tokens: int
    answer_from: str           # the text the answer derives from
    max_tokens: int
    min_tokens: int
    kv_params: dict | None
    chat: bool
    out: list[str] = field(default_factory=list)
    finish: str | None = None
    kv_out: dict | None = None
    blocks: list[int] = field(default_factory=list)


# --------------------------------------------------------------------------------------- server

class Server:
    def __init__(self, args: argparse.Namespace, profile, installed: str | None, node: NodeInfo) -> None:
        self.args, self.profile, self.node = args, profile, node
        self.log = Log()
        self.version = _dist_version("vllm") or profile.vllm or "0.10.1.1"
        self.ascend_version = installed or profile.vllm_ascend
        def opt(name: str, default: Any = None) -> Any:  # flags the profile may not have
            value = getattr(args, name, None)
            return default if value is None else value

        self.model = args.model_tag
        self.served = list(opt("served_model_name") or [self.model])
        self.tp = max(1, opt("tensor_parallel_size", 1))
        self.block_size = opt("block_size") or 128
        self.util = opt("gpu_memory_utilization", 0.9)
        self.port = opt("port", 8000)
        self.seed = opt("seed", 0)
        self.prefix_caching = bool(opt("enable_prefix_caching", False))
        self.host_arg = opt("host", "0.0.0.0")
        self.kv = opt("kv_transfer_config")  # dict or None
        self.additional = opt("additional_config") or {}
        self.connector = None
        self.role = None                   # "producer" | "consumer" | "both" | None
        self.engine_id = ""
        self.model_config: dict = {}
        self.max_model_len = opt("max_model_len") or 0
        self.visible: list[int] = []
        self.cache: KVCache | None = None
        self.http_sock: socket.socket | None = None
        self.kv_socks: list[socket.socket] = []
        self.runners: list = []
        self.bursts: set[asyncio.Task] = set()
        self.client = None
        self.reg_key: str | None = None
        self.ready = False
        self.dying = False
        self.completed = 0
        self.running = 0
        self.stats = {"prompt_tokens": 0, "generation_tokens": 0, "requests": 0,
                      "finished": {"stop": 0, "length": 0, "abort": 0}}
        self._stats_mark = (0, 0, 0)
        self._hosts: dict[str, str] | None = None
        self.die_after = int(node.fault.split(":", 1)[1]) if node.fault.startswith("die_after:") else 0

    # ------------------------------------------------------------------ helpers

    @property
    def worker(self) -> str:
        return "VllmWorker TP0" if self.tp > 1 else "EngineCore_0"

    @property
    def family(self) -> str:
        return os.path.basename(self.model.rstrip("/")) or self.model

    @property
    def connector_kind(self) -> str:
        if self.connector is None:
            return ""
        return "llmdatadist" if "LLMDataDist" in self.connector.kv_connector else "mooncake"

    def note(self, msg: str, level: str = "INFO", proc: str | None = "APIServer", where: str = "sim") -> None:
        self.log(where, "SIMULATED: " + msg, level, proc)

    async def pause(self, frac: float) -> None:
        """Sleep until `frac` of the start-up time has passed since launch."""
        delay = T0 + self.node.startup_s * frac - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    def fail(self, exc: str, *, proc: str | None = None, where: str = "multiproc_executor.py:559",
             frames: tuple[str, ...] = (), notes: tuple[str, ...] = (), engine: bool = True) -> int:
        """A start-up failure in the engine, printed like vLLM 0.10.1.1 prints it; returns exit 1."""
        proc = proc or self.worker
        first = "WorkerProc failed to start." if proc.startswith("VllmWorker") else "EngineCore failed to start."
        lines = [first, "Traceback (most recent call last):", *frames, *exc.splitlines()]
        self.log(where if proc.startswith("VllmWorker") else "core.py:700", "\n".join(lines), "ERROR", proc)
        for n in notes:
            self.note(n, "ERROR", proc)
        if engine:
            if proc.startswith("VllmWorker"):
                self.log("core.py:700", "EngineCore failed to start.", "ERROR", "EngineCore_0")
            self.log.raw("\n".join([
                "Traceback (most recent call last):",
                '  File "/usr/local/bin/vllm", line 8, in <module>',
                "    sys.exit(main())",
                '  File "/usr/local/python3.11/lib/python3.11/site-packages/vllm/v1/engine/core_client.py", '
                "line 668, in __init__",
                "    super().__init__(",
                "RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {}",
            ]), err=True)
        return 1

    # ------------------------------------------------------------------ start-up

    async def start(self) -> int | None:
        """Every start-up step; an exit code on failure, None once serving."""
        log, a, node = self.log, self.args, self.node
        log("__init__.py:38", "Available plugins for group vllm.platform_plugins:", proc=None)
        log("__init__.py:40", "- ascend -> vllm_ascend:register", proc=None)
        log("__init__.py:232", "Platform plugin ascend is activated", proc=None)
        log("api_server.py:1805", f"vLLM API server version {self.version}")
        nondefault = {k: v for k, v in vars(a).items()
                      if k != "subparser" and v not in (None, False) and not (isinstance(v, dict) and not v)}
        nondefault = {k: ({kk: vv for kk, vv in v.items() if kk != "_keys"} if isinstance(v, dict) else v)
                      for k, v in nondefault.items()}
        log("utils.py:326", f"non-default args: {nondefault}")
        self.note(f"pdwizard's fake vLLM on node {node.name}: profile {self.profile.name} "
                  f"(vllm {self.version}, vllm-ascend {self.ascend_version}); no NPU and no weights behind it")
        host_arg = self.host_arg
        if node.host != host_arg:
            self.note(f"--host {host_arg}: binding the node's own loopback address {node.host} instead "
                      "(PDWIZARD_SIM_HOST: every simulated node shares this machine)")
        self.warn_unread_keys()
        # the API server binds its port first (vLLM: "bind the port before the engine is set up")
        try:
            self.http_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.http_sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.http_sock.bind((node.host, self.port))
        except OSError as err:
            log.raw("\n".join([
                "Traceback (most recent call last):",
                '  File "/usr/local/bin/vllm", line 8, in <module>',
                "    sys.exit(main())",
                '  File "/usr/local/python3.11/lib/python3.11/site-packages/vllm/entrypoints/openai/api_server.py", '
                "line 1807, in create_server_socket",
                "    sock.bind(addr)",
                f"OSError: [Errno {err.errno}] {os.strerror(err.errno or 98)}",
            ]), err=True)
            self.note(f"port {self.port} on {node.host} is taken by another process", "ERROR")
            return 1
        rc = self.check_model()
        if rc is not None:
            return rc
        log("config.py:726", f"Resolved architecture: {self.architecture()}")
        if not self.max_model_len:
            self.max_model_len = int(self.model_config.get("max_position_embeddings") or 32768)
        log("config.py:1605", f"Using max model len {self.max_model_len}")
        rc = self.resolve_connector()
        if rc is not None:
            return rc
        # the HTTP stack is loaded while the "engine" starts, not after it: importing aiohttp.web
        # takes a few hundred ms, and the port must answer vllm_startup_s after launch, not later
        import aiohttp.web  # noqa: F401

        await self.pause(0.15)
        log("core.py:636", "Waiting for init message from front-end.", proc="EngineCore_0")
        log("core.py:74", f"Initializing a V1 LLM engine (v{self.version}) with config: model={self.model!r}, "
            f"tokenizer={self.model!r}, tensor_parallel_size={self.tp}, served_model_name={self.served[0]}, "
            f"enable_prefix_caching={self.prefix_caching}, seed={self.seed}", proc="EngineCore_0")
        # workers: one per TP rank, each on the i-th visible NPU
        rc = self.pick_devices()
        if rc is not None:
            return rc
        for r in range(self.tp):
            log("parallel_state.py:1134", f"rank {r} in world size {self.tp} is assigned as DP rank 0, "
                f"PP rank 0, TP rank {r}, EP rank {r}", proc=f"VllmWorker TP{r}" if self.tp > 1 else "EngineCore_0")
        self.register_npus()
        await self.pause(0.3)
        rc = self.check_hccl()
        if rc is not None:
            return rc
        if self.node.fault == "hccl_timeout":
            await self.pause(0.95)
            return self.fault_hccl_timeout()
        if self.node.fault == "port_in_use":
            return self.fault_port_in_use()
        if self.connector is not None:
            log("factory.py:51", f"Creating v1 connector with name: {self.connector.kv_connector} and "
                f"engine_id: {self.engine_id}", proc=self.worker)
            rc = self.check_connector()
            if rc is not None:
                return rc
            rc = await self.open_kv_ports()
            if rc is not None:
                return rc
        log("model_runner_v1.py:1745", f"Starting to load model {self.model}...", proc=self.worker)
        await self.pause(0.6)
        log("model_runner_v1.py:1776", "Loading model weights took 28.5 GB", proc=self.worker)
        if self.node.fault == "oom":
            return self.fault_oom("the spec's vllm_fault = \"oom\"")
        busy = self.busy_devices()
        if busy:
            return self.fault_oom(busy)
        blocks = BLOCKS_PER_RANK * self.tp
        self.cache = KVCache(blocks)
        log("kv_cache_utils.py:849", f"GPU KV cache size: {blocks * self.block_size:,} tokens", proc="EngineCore_0")
        log("kv_cache_utils.py:853", f"Maximum concurrency for {self.max_model_len:,} tokens per request: "
            f"{blocks * self.block_size / self.max_model_len:.2f}x", proc="EngineCore_0")
        await self.pause(0.9)
        log("core.py:214", f"init engine (profile, create kv cache, warmup model) took "
            f"{time.monotonic() - T0:.2f} seconds", proc="EngineCore_0")
        log("loggers.py:142", f"Engine 000: vllm cache_config_info with initialization after num_gpu_blocks is: "
            f"{blocks}")
        await self.pause(1.0)
        return await self.serve_http()

    def warn_unread_keys(self) -> None:
        kv_keys = self.profile.kv_transfer_config.keys
        for k in (self.kv or {}).get("_keys", []):
            if k not in kv_keys:
                self.note(f"--kv-transfer-config key {k!r} is not a KVTransferConfig field of "
                          f"{self.profile.name}: vLLM drops it without a word", "WARNING")
        ks = self.profile.additional_config

        def walk(d: dict, path: str) -> None:
            for k, v in d.items():
                p = f"{path}.{k}" if path else k
                if not ks.accepts(p):
                    self.note(f"--additional-config key {p!r} is not read by vllm-ascend {self.ascend_version}: "
                              "it is ignored without a word", "WARNING")
                elif isinstance(v, dict) and f"{p}.*" not in ks.keys and ks.is_table(p):
                    walk(v, p)

        walk(self.additional, "")

    def check_model(self) -> int | None:
        root = os.environ.get("PDWIZARD_SIM_ROOT")
        path = self.model
        if root is None:
            return None
        where = os.path.join(root, path.lstrip("/")) if path.startswith("/") else path
        cfg = os.path.join(where, "config.json")
        if os.path.isdir(where) and os.path.isfile(cfg):
            with contextlib.suppress(OSError, ValueError):
                with open(cfg) as f:
                    data = json.load(f)
                if isinstance(data, dict):
                    self.model_config = data
            return None
        self.log.raw("\n".join([
            "Traceback (most recent call last):",
            '  File "/usr/local/bin/vllm", line 8, in <module>',
            "    sys.exit(main())",
            '  File "/usr/local/python3.11/lib/python3.11/site-packages/vllm/transformers_utils/config.py", '
            "line 519, in get_config",
            "    raise ValueError(error_message) from e",
            f"ValueError: Invalid repository ID or local directory specified: '{path}'.",
            "Please verify the following requirements:",
            "1. Provide a valid Hugging Face repository ID.",
            "2. Specify a local directory that contains a recognized configuration file.",
            "   - For Hugging Face models: ensure the presence of a 'config.json'.",
            "   - For Mistral models: ensure the presence of a 'params.json'.",
        ]), err=True)
        self.note(f"{path} does not exist on node {self.node.name} (or has no config.json)", "ERROR")
        return 1

    def architecture(self) -> str:
        arch = self.model_config.get("architectures")
        if isinstance(arch, list) and arch:
            return str(arch[0])
        low = self.model.lower()
        if "deepseek" in low:
            return "DeepseekV3ForCausalLM"
        if "qwen3" in low and re.search(r"a\d+b", low):
            return "Qwen3MoeForCausalLM"
        return "Qwen3ForCausalLM" if "qwen" in low else "LlamaForCausalLM"

    def resolve_connector(self) -> int | None:
        if not self.kv or not self.kv.get("kv_connector"):
            return None
        name = self.kv["kv_connector"]
        for c in self.profile.connectors.values():
            if c.kv_connector == name:
                self.connector = c
                break
        else:
            path = self.kv.get("kv_connector_module_path")
            exc = (f"ModuleNotFoundError: No module named '{path}'" if path
                   else f"ValueError: Unsupported connector type: {name}")
            return self.fail(exc, proc="EngineCore_0", notes=(
                f"vllm-ascend {self.ascend_version} has no KV connector {name!r} (it offers: "
                f"{', '.join(c.kv_connector for c in self.profile.connectors.values())})",))
        self.role = {"kv_producer": "producer", "kv_consumer": "consumer", "kv_both": "both"}[self.kv["kv_role"]]
        self.engine_id = self.kv.get("engine_id") or str(uuid.uuid4())
        return None

    def pick_devices(self) -> int | None:
        """TP rank i runs on the i-th visible NPU; unusable ids in the variable are dropped."""
        chips = [c["phy"] for c in self.node.facts.get("chip", [])] or list(range(8))
        env = os.environ.get("ASCEND_RT_VISIBLE_DEVICES")
        if env is None:
            visible = chips
        else:
            visible = []
            for piece in env.split(","):
                with contextlib.suppress(ValueError):
                    d = int(piece)
                    if d in chips and d not in visible:
                        visible.append(d)
        if len(visible) < self.tp:
            r = len(visible)
            return self.fail(
                f"RuntimeError: open device {r} failed, 107001\n[ERROR] {time.strftime('%Y-%m-%d-%H:%M:%S')} "
                f"(PID:{os.getpid()}, Device:{r}, RankID:-1) ERR00100 PTA call acl api failed",
                proc=f"VllmWorker TP{r}" if self.tp > 1 else "EngineCore_0",
                notes=(f"tensor-parallel-size {self.tp} needs {self.tp} visible NPUs; ASCEND_RT_VISIBLE_DEVICES="
                       f"{env!r} leaves {len(visible)} of this node's devices {chips}",))
        self.visible = visible[: self.tp]
        return None

    def register_npus(self) -> None:
        if not self.node.state:
            return
        from pdwizard.sim.state import register_npu_processes

        rows = []
        soc_a3 = self.node.facts.get("soc") == "A3"
        for phy in self.visible:
            c = self.node.chip(phy) or {"npu": phy // 2 if soc_a3 else phy, "chip": phy % 2 if soc_a3 else 0,
                                        "hbm_total": 65536}
            rows.append({"npu": c["npu"], "chip": c["chip"], "pid": os.getpid(), "name": "pt_main_thread",
                         "mem_mb": int(c.get("hbm_total", 65536) * self.util * 0.83)})
        self.reg_key = f"vllm-{os.getpid()}"
        with contextlib.suppress(OSError):
            register_npu_processes(self.node.state, self.reg_key, rows, owner_pid=os.getpid())

    def unregister_npus(self) -> None:
        if self.reg_key and self.node.state:
            from pdwizard.sim.state import unregister_npu_processes

            with contextlib.suppress(OSError):
                unregister_npu_processes(self.node.state, self.reg_key)
            self.reg_key = None

    def busy_devices(self) -> str:
        """Why the KV cache cannot be allocated: another live process holds one of our NPUs."""
        if not self.node.state:
            return ""
        from pdwizard.sim.state import read_npu_processes

        mine = {}
        for phy in self.visible:
            c = self.node.chip(phy)
            if c:
                mine[(c["npu"], c["chip"])] = phy
        for row in read_npu_processes(self.node.state):
            key = (row["npu"], row["chip"])
            if key in mine and row["pid"] != os.getpid():
                return (f"NPU {row['npu']} chip {row['chip']} (device {mine[key]}) is already held by pid "
                        f"{row['pid']} ({row['name']}, {row['mem_mb']} MB in npu-smi info)")
        return ""

    def check_hccl(self) -> int | None:
        ifname = os.environ.get("GLOO_SOCKET_IFNAME")
        names = self.node.interfaces()
        if self.tp > 1 and ifname and names and ifname not in names:
            return self.fail(
                "RuntimeError: [enforce fail at /pytorch/third_party/gloo/gloo/transport/tcp/device.cc:83] "
                f"ifa != nullptr. Unable to find address for: {ifname}",
                notes=(f"GLOO_SOCKET_IFNAME={ifname} is not an interface of node {self.node.name} "
                       f"(it has {', '.join(names)})",))
        return None

    def fault_hccl_timeout(self) -> int:
        ts = time.strftime("%Y-%m-%d-%H:%M:%S")
        return self.fail("\n".join([
            "RuntimeError: createHCCLComm:torch_npu/csrc/distributed/ProcessGroupHCCL.cpp:2167 HCCL function "
            "error: HcclCommInitRootInfoConfig(numRanks, &rootInfo, rank, config, &(comm->hcclComm_)), "
            "error code is 7",
            f"[ERROR] {ts} (PID:{os.getpid()}, Device:0, RankID:-1) ERR02200 DIST call hccl api failed.",
            f"EI0006: [PID: {os.getpid()}] {ts}.000.000 Getting socket times out. Reason: 1. The remote does "
            "not initiate a connect request. some NPUs in the cluster are abnormal.    2. The remote does not "
            "initiate a connect request because the collective communication operator is started too late or "
            "is not started by some NPU in the cluster.    3. The communication link is disconnected. (For "
            "example, the IP addresses are not on the same network segment or the TLS configurations are "
            "inconsistent.)",
            "        Solution: 1. Check the rank service processes with other errors or no errors in the "
            "cluster.2. If this error is reported for all NPUs, check whether the time difference between the "
            "earliest and latest errors is greater than the connect timeout interval (120s by default). If so, "
            "adjust the timeout interval by using the HCCL_CONNECT_TIMEOUT environment variable.3. Check the "
            "connectivity of the communication link between nodes. (For details, see the TLS command and HCCN "
            "connectivity check examples.)",
        ]), notes=("the spec's vllm_fault = \"hccl_timeout\" (a real node waits HCCL_CONNECT_TIMEOUT, "
                   "120 s by default, before this error)",))

    def fault_port_in_use(self) -> int:
        ts = time.strftime("%Y-%m-%d-%H:%M:%S")
        port = os.environ.get("HCCL_IF_BASE_PORT") or "16666"
        ip = os.environ.get("HCCL_IF_IP") or self.node.ip
        self.log.raw(f"[ERROR] HCCL({os.getpid()},python3):{ts}.000.000 [hccl_socket_manager.cc:259]"
                     f"[{os.getpid()}][HcclSocketManager][ServerInit]socket type[2] listen on ip[{ip}] and specific "
                     f"port[{port}] fail, maybe the port is been using by other process, please check it.")
        return self.fail("\n".join([
            "RuntimeError: createHCCLComm:torch_npu/csrc/distributed/ProcessGroupHCCL.cpp:2167 HCCL function "
            "error: HcclCommInitRootInfoConfig(numRanks, &rootInfo, rank, config, &(comm->hcclComm_)), "
            "error code is 7",
            f"EJ0003: [PID: {os.getpid()}] {ts}.000.000 Failed to bind the IP port. Reason: The IP address and "
            "port have been bound already.",
            "        Solution: Change the port or release the port from the other process (HCCL_IF_BASE_PORT).",
        ]), notes=("the spec's vllm_fault = \"port_in_use\": a stale process still holds the HCCL port",))

    def fault_oom(self, why: str) -> int:
        return self.fail(
            "RuntimeError: NPU out of memory. Tried to allocate 11.50 GiB (NPU 0; 60.97 GiB total capacity; "
            "55.29 GiB already allocated; 55.29 GiB current active; 4.64 GiB free; 55.46 GiB reserved in total "
            "by PyTorch) If reserved memory is >> allocated memory try setting max_split_size_mb to avoid "
            "fragmentation.",
            frames=('  File "/usr/local/python3.11/lib/python3.11/site-packages/vllm_ascend/worker/worker_v1.py", '
                    "line 178, in determine_available_memory", "    self.model_runner.profile_run()"),
            notes=(f"out of NPU memory: {why}",))

    def check_connector(self) -> int | None:
        c, kind = self.connector, self.connector_kind
        if kind == "llmdatadist":
            if self.role == "both":
                return self.fail("RuntimeError: LLMDataDistCMgrConnector does not support kv_role kv_both",
                                 notes=("use kv_producer on the prefill and kv_consumer on the decode",))
            if not os.environ.get(c.rpc_port_env or "") and os.environ.get("VLLM_LLMDD_RPC_PORT"):
                self.note("VLLM_LLMDD_RPC_PORT is set but vllm-ascend reads VLLM_ASCEND_LLMDD_RPC_PORT: "
                          f"the base port stays {c.rpc_port_base}", "WARNING", self.worker)
            return self.check_ranktable()
        extra = self.kv.get("kv_connector_extra_config") or {}
        for side in ("prefill", "decode"):
            d = extra.get(side)
            if not isinstance(d, dict) or "tp_size" not in d or "dp_size" not in d:
                return self.fail(f"AssertionError: kv_connector_extra_config.{side} needs tp_size and dp_size",
                                 notes=("MooncakeConnectorV1 asserts both (llmdatadist-connector.md §9)",))
        with contextlib.suppress(TypeError, ValueError):
            if int(extra["prefill"]["tp_size"]) < int(extra["decode"]["tp_size"]):
                return self.fail("ValueError: prefill tp_size must be greater than or equal to decode tp_size")
        return None

    def check_ranktable(self) -> int | None:
        path = os.environ.get("DISAGGREGATED_PREFILL_RANK_TABLE_PATH")
        frames = ('  File "/usr/local/python3.11/lib/python3.11/site-packages/vllm_ascend/distributed/'
                  'llmdatadist_c_mgr_connector.py", line 356, in read_offline_rank_table',)
        if not path:
            return self.fail("AssertionError: Please set path of rank_table to env variable "
                             "DISAGGREGATED_PREFILL_RANK_TABLE_PATH", frames=frames,
                             notes=("LLMDataDistCMgrConnector needs the global ranktable",))
        try:
            with open(path, encoding="utf-8") as f:
                table = json.load(f)
        except FileNotFoundError:
            return self.fail(f"FileNotFoundError: [Errno 2] No such file or directory: '{path}'", frames=frames,
                             notes=(f"the ranktable {path} does not exist on node {self.node.name}",))
        except (OSError, ValueError) as err:
            return self.fail(f"{type(err).__module__}.{type(err).__name__}: {err}".replace("builtins.", ""),
                             frames=frames, notes=(f"the ranktable {path} cannot be read as JSON",))
        key = "prefill_device_list" if self.role == "producer" else "decode_device_list"
        for k in ("prefill_device_list", "decode_device_list"):
            if not isinstance(table, dict) or k not in table:
                return self.fail(f"KeyError: '{k}'", frames=frames, notes=(f"the ranktable {path} has no {k}",))
        env = os.environ.get("ASCEND_RT_VISIBLE_DEVICES")
        allowed = None if env is None else env.split(",")
        ip = self.node.ip
        mine = [e for e in table[key] if isinstance(e, dict) and e.get("server_id") == ip
                and (allowed is None or str(e.get("device_id")) in allowed)]
        for r, dev in enumerate(self.visible):
            proc = f"VllmWorker TP{r}" if self.tp > 1 else "EngineCore_0"
            if r >= len(mine):
                listed = sorted({str(e.get("server_id")) for e in table[key] if isinstance(e, dict)})
                return self.fail(
                    f"AssertionError: Can't read the target server_id {ip} and device_id {dev} from rank table",
                    proc=proc, frames=frames,
                    notes=(f"{key} in {path} has {len(mine)} entries for server_id {ip} (get_ip(): VLLM_HOST_IP or "
                           f"the node's address) and ASCEND_RT_VISIBLE_DEVICES={env!r}; tp rank {r} needs one. "
                           f"server_ids listed: {', '.join(listed) or 'none'}",))
            got = str(mine[r].get("device_id"))
            if got != str(dev):
                return self.fail(
                    f"RuntimeError: LLMDataDist init failed: ranktable config devId[{got}], but local devId[{dev}]",
                    proc=proc, frames=frames,
                    notes=(f"tp rank {r} runs on NPU {dev} (ASCEND_RT_VISIBLE_DEVICES={env!r}) but its ranktable "
                           f"entry in {key} is device {got}",))
        self.log("llmdatadist_c_mgr_connector.py:373", f"Local rank table for {key}: "
                 f"{json.dumps(mine[:self.tp])}", proc=self.worker)
        return None

    def kv_ports(self) -> list[int]:
        c = self.connector
        if self.connector_kind == "llmdatadist":
            try:
                base = int(os.environ.get(c.rpc_port_env or "", "") or c.rpc_port_base or 5557)
            except ValueError:
                base = c.rpc_port_base or 5557
        else:
            base = int(self.kv.get("kv_port") or 14579)
        return [base + r for r in range(self.tp)]

    async def open_kv_ports(self) -> int | None:
        rpc_ip = os.environ.get("VLLM_ASCEND_LLMDD_RPC_IP", "0.0.0.0")
        for port in self.kv_ports():
            try:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((self.node.host, port))
                s.listen(64)
            except OSError as err:
                lines = [f"zmq.error.ZMQError: {os.strerror(err.errno or 98)} (addr='tcp://{rpc_ip}:{port}')"]
                if self.connector_kind == "mooncake":
                    lines.insert(0, "RuntimeError: KV Cache sending/receiving thread failed to start.")
                return self.fail("\n".join(lines), notes=(
                    f"KV port {port} on {self.node.host} is taken (another instance on this node with the same "
                    f"{'VLLM_ASCEND_LLMDD_RPC_PORT' if self.connector_kind == 'llmdatadist' else 'kv_port'}?)",))
            self.kv_socks.append(s)
        from aiohttp import web

        app = web.Application()
        app.router.add_post("/pull", self.h_pull)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        self.runners.append(runner)
        for s in self.kv_socks:
            await web.SockSite(runner, s).start()
        self.note(f"KV side channel ({self.connector.kv_connector}, {self.role}) on "
                  f"{self.node.host}:{','.join(map(str, self.kv_ports()))} (HTTP, not ZMQ)", proc=self.worker)
        return None

    async def serve_http(self) -> int | None:
        from aiohttp import web

        @web.middleware
        async def access_log(request, handler):
            return await self.access_log_impl(request, handler)

        app = web.Application(middlewares=[access_log], client_max_size=64 * 1024 * 1024)
        app.router.add_get("/health", self.h_health)
        app.router.add_get("/v1/models", self.h_models)
        app.router.add_get("/version", self.h_version)
        app.router.add_get("/metrics", self.h_metrics)
        app.router.add_get("/sim/kv", self.h_kv)
        app.router.add_post("/sim/log", self.h_log)
        app.router.add_post("/v1/completions", self.h_completions)
        app.router.add_post("/v1/chat/completions", self.h_chat)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        self.runners.append(runner)
        self.log("api_server.py:1611", "Supported_tasks: ['generate']")
        self.log("api_server.py:1880", f"Starting vLLM API server 0 on http://{self.node.host}:{self.port}")
        self.log("launcher.py:36", "Available routes are:")
        for path, method in ROUTES:
            self.log("launcher.py:44", f"Route: {path}, Methods: {method}")
        try:
            await web.SockSite(runner, self.http_sock, shutdown_timeout=0.5).start()
        except OSError as err:
            self.log.uvicorn(f"[Errno {err.errno}] error while attempting to bind on address "
                             f"('{self.node.host}', {self.port}): {os.strerror(err.errno or 98).lower()}", "ERROR")
            return 1
        self.log.uvicorn(f"Started server process [{os.getpid()}]")
        self.log.uvicorn("Waiting for application startup.")
        self.log.uvicorn("Application startup complete.")
        self.ready = True
        return None

    # ------------------------------------------------------------------ running

    async def background(self) -> None:
        """The engine's periodic work: stats lines, forced frees of expired KV holds."""
        timeout = self.hold_timeout()
        next_stats = time.monotonic() + STATS_INTERVAL_S
        while True:
            await asyncio.sleep(min(1.0, STATS_INTERVAL_S))
            now = time.monotonic()
            if timeout is not None and self.cache:
                for h in [h for h in self.cache.held.values() if now - h.since > timeout]:
                    await self.cache.free_held(h.request_id)
                    self.cache.counters["expired"] += 1
                    self.log("scheduler.py:1050", f"Force freed expired request {h.request_id} "
                             f"({int(timeout)} seconds)", "WARNING", "EngineCore_0")
            if now >= next_stats:
                next_stats = now + STATS_INTERVAL_S
                self.log_stats()

    def hold_timeout(self) -> float | None:
        """How long a prefill keeps unpulled blocks (None: for ever, LLMDataDist on v0.10.1rc1)."""
        env = os.environ
        if self.connector_kind == "llmdatadist":
            if self.profile.vllm_ascend.startswith("0.10."):
                return None
            name, default = "VLLM_NIXL_ABORT_REQUEST_TIMEOUT", 120.0
        elif self.connector_kind == "mooncake":
            if self.profile.vllm_ascend == "main":
                name, default = "VLLM_MOONCAKE_ABORT_REQUEST_TIMEOUT", 480.0
            else:
                name, default = "VLLM_ASCEND_KVCACHE_DELAY_FREE_TIMEOUT", 250.0
        else:
            return None
        try:
            return float(env.get(name, default))
        except ValueError:
            return default

    def log_stats(self) -> None:
        s = self.stats
        mark = (s["prompt_tokens"], s["generation_tokens"], self.running)
        if mark == self._stats_mark and not self.running:
            return
        dp, dg = mark[0] - self._stats_mark[0], mark[1] - self._stats_mark[1]
        self._stats_mark = mark
        usage = 100.0 * self.cache.used / self.cache.total if self.cache else 0.0
        self.log("loggers.py:123", f"Engine 000: Avg prompt throughput: {dp / STATS_INTERVAL_S:.1f} tokens/s, "
                 f"Avg generation throughput: {dg / STATS_INTERVAL_S:.1f} tokens/s, Running: {self.running} reqs, "
                 f"Waiting: 0 reqs, GPU KV cache usage: {usage:.1f}%, Prefix cache hit rate: 0.0%")

    def prefill_s(self, tokens: int) -> float:
        return tokens * max(self.node.token_delay_ms / 10.0, PREFILL_MS_PER_TOKEN) / 1000.0

    def sim_hosts(self) -> dict[str, str]:
        """Node address -> loopback host, for every node of the cluster (from their facts)."""
        if self._hosts is None:
            self._hosts = {}
            if self.node.state:
                from pdwizard.sim.state import read_facts

                nodes = os.path.dirname(os.path.dirname(os.path.abspath(self.node.state)))
                with contextlib.suppress(OSError):
                    for d in sorted(os.listdir(nodes)):
                        with contextlib.suppress(OSError, ValueError, EOFError, KeyError):
                            f = read_facts(os.path.join(nodes, d, "state"))
                            for addr in [f["ip"], *f.get("extra_ips", []), f["host"]]:
                                self._hosts.setdefault(addr, f["host"])
        return self._hosts

    def transfer_params(self, rq: EngineRequest) -> dict:
        """What the producer returns (pd-proxy-protocol.md §6), by connector and version."""
        p: dict[str, Any] = {"do_remote_prefill": True, "do_remote_decode": False,
                             "remote_block_ids": list(rq.blocks), "remote_engine_id": self.engine_id,
                             "remote_host": self.node.ip, "remote_port": self.kv_ports()[0]}
        if self.connector_kind == "llmdatadist":
            p["remote_tp_size"] = str(self.tp)
        elif self.profile.vllm_ascend == "main":
            p["remote_block_ids"] = [list(rq.blocks)]
            p.update({"last_token_id": 151643 + len(rq.out), "remote_request_id": rq.request_id,
                      "remote_pcp_size": 1, "remote_dcp_size": 1, "remote_ptp_size": self.tp,
                      "remote_multi_nodes_meta_mapping": {}, "num_prompt_blocks": len(rq.blocks),
                      "remote_block_size": self.block_size})
        elif self.profile.vllm_ascend.startswith("0.11"):
            p["last_token_id"] = 151643 + len(rq.out)
        return p

    @contextlib.asynccontextmanager
    async def engine(self, rq: EngineRequest):
        """One engine request: KV blocks for its prompt, held afterwards if a remote decode will pull."""
        cache = self.cache
        rq.blocks = await cache.alloc(max(1, math.ceil((rq.prompt_tokens + 1) / self.block_size)))
        self.running += 1
        held = False
        try:
            yield rq
            kvp = rq.kv_params if isinstance(rq.kv_params, dict) else {}
            if self.role in ("producer", "both") and kvp.get("do_remote_decode") and rq.finish == "length":
                cache.hold(rq.request_id, rq.blocks, rq.prompt_tokens)
                rq.kv_out = self.transfer_params(rq)
                held = True
                self.note(f"request {rq.request_id}: holding {len(rq.blocks)} KV blocks for a remote decode "
                          f"(remote_block_ids {rq.blocks[:4]}{'...' if len(rq.blocks) > 4 else ''})",
                          proc="EngineCore_0")
        finally:
            self.running -= 1
            self.stats["finished"][rq.finish or "abort"] = self.stats["finished"].get(rq.finish or "abort", 0) + 1
            if not held:
                await cache.release(rq.blocks)

    async def prefill(self, rq: EngineRequest) -> None:
        """Compute the prompt, or pull its KV from the prefill instance named in kv_transfer_params."""
        self.stats["prompt_tokens"] += rq.prompt_tokens
        self.stats["requests"] += 1
        kvp = rq.kv_params if isinstance(rq.kv_params, dict) else None
        reason = None
        if self.role in ("consumer", "both") and kvp and kvp.get("do_remote_prefill"):
            reason = await self.pull(rq, kvp)
            if reason is None:
                self.cache.counters["remote_prefill"] += 1
                return
        elif self.role == "consumer":
            reason = ("it came without kv_transfer_params" if kvp is None
                      else "its kv_transfer_params do not say do_remote_prefill")
        if reason:
            self.cache.counters["recomputed"] += 1
            self.note(f"request {rq.request_id}: {reason}: this decode instance recomputes the whole prompt "
                      f"({rq.prompt_tokens} tokens) itself (real vLLM does this silently)", "WARNING", "EngineCore_0")
        await asyncio.sleep(self.prefill_s(rq.prompt_tokens))

    async def pull(self, rq: EngineRequest, kvp: dict) -> str | None:
        """Pull the prompt's KV blocks from the prefill; None on success, else why not."""
        need = ["remote_engine_id", "remote_host", "remote_port", "remote_block_ids"]
        if self.connector_kind == "llmdatadist":
            need.append("remote_tp_size")
        missing = [k for k in need if kvp.get(k) in (None, "")]
        if missing:
            self.log("llmdatadist_c_mgr_connector.py:520" if self.connector_kind == "llmdatadist"
                     else "mooncake_connector.py:640",
                     f"Invalid KVTransferParams {kvp}, missing {', '.join(missing)}", "WARNING", "EngineCore_0")
            return f"its kv_transfer_params are invalid (no {', '.join(missing)})"
        if self.connector_kind == "mooncake" and str(kvp["remote_engine_id"]) == self.engine_id:
            self.log("mooncake_connector.py:700", f"AssertionError: Conflict engine id {self.engine_id}",
                     "ERROR", self.worker)
            raise EngineError(500, f"Conflict engine id {self.engine_id}: the prefill and this decode share "
                                   "engine_id", "InternalServerError")
        blocks = kvp["remote_block_ids"]
        if blocks and isinstance(blocks[0], list):
            blocks = [b for group in blocks for b in group]
        host, port = str(kvp["remote_host"]), kvp["remote_port"]
        target = host if host.startswith("127.") else self.sim_hosts().get(host, host)
        if self.node.fault == "kv_pull_fail":
            self.cache.counters["pull_failed"] += 1
            self.log("llmdatadist_c_mgr_connector.py:860", f"KV pull for request {rq.request_id} from "
                     f"{host}:{port} failed: RuntimeError: pull_blocks failed, link to {host} is down",
                     "ERROR", self.worker)
            self.note("the spec's vllm_fault = \"kv_pull_fail\": every KV pull of this instance fails",
                      "ERROR", self.worker)
            return f"pulling its KV from the prefill at {host}:{port} failed"
        finished_id = str(kvp.get("remote_request_id") or rq.request_id)
        body = {"remote_block_ids": blocks, "request_id": finished_id, "engine_id": self.engine_id,
                "from": f"{self.node.ip}:{self.port}"}
        try:
            import aiohttp

            if self.client is None:
                self.client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=PULL_TIMEOUT_S))
            async with self.client.post(f"http://{target}:{port}/pull", json=body) as resp:
                data = await resp.json(content_type=None)
                ok = resp.status == 200 and data.get("ok")
        except Exception as err:  # noqa: BLE001 - any transport failure means "recompute"
            self.cache.counters["pull_failed"] += 1
            self.log("llmdatadist_c_mgr_connector.py:860", f"KV pull for request {rq.request_id} from "
                     f"{host}:{port} failed: {type(err).__name__}: {err}", "ERROR", self.worker)
            return f"pulling its KV from the prefill at {host}:{port} failed"
        if not ok:
            self.cache.counters["pull_failed"] += 1
            why = data.get("error") if isinstance(data, dict) else resp.status
            self.note(f"request {rq.request_id}: the prefill at {host}:{port} has no such KV blocks ({why})",
                      "WARNING", self.worker)
            return f"its kv_transfer_params are stale ({why})"
        await asyncio.sleep((PULL_MS + len(blocks) * PULL_MS_PER_BLOCK) / 1000.0)
        self.note(f"request {rq.request_id}: pulled {len(blocks)} KV blocks from {host}:{port} "
                  f"(engine {kvp['remote_engine_id']})", proc=self.worker)
        return None

    def tokens_for(self, rq: EngineRequest) -> tuple[list[str], bool]:
        """(the tokens to emit, whether the answer ends with EOS within max_tokens)."""
        text = answer_text(rq.answer_from, self.family)
        full = tokenize(text.lstrip() if rq.chat else text)
        tokens = [] if EOS_MARK in rq.answer_from else full
        if len(tokens) < rq.min_tokens:  # EOS is not sampled before min_tokens
            tokens = (tokens + full * (rq.min_tokens // max(1, len(full)) + 1))[: rq.min_tokens]
        return tokens[: rq.max_tokens], len(tokens) < rq.max_tokens

    async def decode(self, rq: EngineRequest):
        """Yield (delta, finish_reason or None) per generated token."""
        tokens, eos = self.tokens_for(rq)
        delay = self.node.token_delay_ms / 1000.0
        if not tokens:
            rq.finish = "stop"
            self.stats["generation_tokens"] += 1
            yield "", "stop"
            return
        for i, tok in enumerate(tokens):
            if delay:
                await asyncio.sleep(delay)
            elif i % 16 == 0:
                await asyncio.sleep(0)
            rq.out.append(tok)
            self.stats["generation_tokens"] += 1
            last = i == len(tokens) - 1
            if last:
                rq.finish = "stop" if eos else "length"
            yield tok, rq.finish if last else None

    def completion_tokens(self, rq: EngineRequest) -> int:
        return len(rq.out) + (1 if rq.finish == "stop" else 0)  # EOS counts as a generated token

    def request_done(self) -> None:
        self.completed += 1
        if self.die_after and self.completed >= self.die_after and not self.dying:
            self.dying = True
            asyncio.get_running_loop().call_later(0.05, self.die)

    def die(self) -> None:
        self.log("core.py:710", "\n".join([
            "EngineCore encountered a fatal error.",
            "Traceback (most recent call last):",
            '  File "/usr/local/python3.11/lib/python3.11/site-packages/vllm/v1/engine/core.py", line 701, '
            "in run_engine_core",
            "    engine_core.run_busy_loop()",
            "RuntimeError: ACL stream synchronize failed, error code:507035",
        ]), "ERROR", "EngineCore_0")
        self.note(f"the spec's vllm_fault = \"die_after:{self.die_after}\": the engine died after "
                  f"{self.completed} completed requests", "ERROR", "EngineCore_0")
        self.log("async_llm.py:416", "AsyncLLM output_handler failed.\nvllm.v1.engine.exceptions.EngineDeadError: "
                 "EngineCore encountered an issue. See stack trace (above) for the root cause.", "ERROR")
        self.log("launcher.py:99", "Engine failed, terminating server.", "ERROR")
        self.log.uvicorn("Shutting down")
        self.log.uvicorn(f"Finished server process [{os.getpid()}]")
        self.unregister_npus()
        os._exit(1)

    # ------------------------------------------------------------------ HTTP handlers

    _reasons: ClassVar[dict[int, str]] = {200: "OK", 400: "Bad Request", 404: "Not Found",
                                          500: "Internal Server Error"}

    async def access_log_impl(self, request, handler):
        from aiohttp import web

        status = 500
        try:
            resp = await handler(request)
            status = resp.status
            return resp
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            peer = request.transport.get_extra_info("peername") if request.transport else None
            who = f"{peer[0]}:{peer[1]}" if peer else "-"
            self.log.uvicorn(f'{who} - "{request.method} {request.path_qs} HTTP/{request.version.major}.'
                             f'{request.version.minor}" {status} {self._reasons.get(status, "")}'.rstrip())

    def error(self, status: int, message: str, kind: str = "BadRequestError", param: str | None = None):
        """vLLM 0.10.1.1's error body (pd-proxy-protocol.md §13)."""
        return _json_response({"error": {"message": message, "type": kind, "param": param, "code": status}},
                              status=status)

    async def h_health(self, request):
        from aiohttp import web

        return web.Response(status=200)

    async def h_version(self, request):
        return _json_response({"version": self.version})

    async def h_models(self, request):
        created = int(time.time())
        data = [{"id": name, "object": "model", "created": created, "owned_by": "vllm", "root": self.model,
                 "parent": None, "max_model_len": self.max_model_len,
                 "permission": [{"id": f"modelperm-{uuid.uuid4().hex}", "object": "model_permission",
                                 "created": created, "allow_create_engine": False, "allow_sampling": True,
                                 "allow_logprobs": True, "allow_search_indices": False, "allow_view": True,
                                 "allow_fine_tuning": False, "organization": "*", "group": None,
                                 "is_blocking": False}]} for name in self.served]
        return _json_response({"object": "list", "data": data})

    async def h_kv(self, request):
        body = {"simulated": True, "node": self.node.name, "role": self.kv.get("kv_role") if self.kv else None,
                "connector": self.connector.kv_connector if self.connector else None,
                "engine_id": self.engine_id or None, "kv_ports": self.kv_ports() if self.connector else [],
                "completed_requests": self.completed, **self.cache.status()}
        return _json_response(body)

    async def h_log(self, request):
        """POST /sim/log: start a burst of synthetic log lines (see the module docstring)."""
        try:
            body = await request.json()
            rate, seconds = float(body["lines_per_s"]), float(body.get("seconds", 10))
        except (ValueError, KeyError, TypeError, AttributeError):
            return _json_response({"error": 'send JSON {"lines_per_s": N, "seconds": S}'}, 400)
        if not (0 < rate <= LOG_BURST_MAX_RATE and 0 < seconds <= LOG_BURST_MAX_S):
            return _json_response({"error": f"lines_per_s must be in (0, {LOG_BURST_MAX_RATE:.0f}], "
                                            f"seconds in (0, {LOG_BURST_MAX_S:.0f}]"}, 400)
        total = int(rate * seconds)
        task = asyncio.ensure_future(self.log_burst(rate, total))
        self.bursts.add(task)
        task.add_done_callback(self.bursts.discard)
        return _json_response({"lines": total, "lines_per_s": rate, "seconds": seconds}, 202)

    async def log_burst(self, rate: float, total: int) -> None:
        """`total` numbered lines at `rate` lines a second, written in blocks every tick (one write
        each: a real server's log lines come in bursts too)."""
        head = f"(APIServer pid={os.getpid()}) INFO "
        t0, sent = time.monotonic(), 0
        while sent < total:
            due = min(total, int((time.monotonic() - t0) * rate) + 1)
            if due > sent:
                ts = time.strftime("%m-%d %H:%M:%S")
                block = "".join(f"{head}{ts} [loggers.py:123] sim log burst line {i:07d}/{total:07d}: Engine 000: "
                                f"Avg prompt throughput: 0.0 tokens/s, Running: 0 reqs, Waiting: 0 reqs{MARK}\n"
                                for i in range(sent + 1, due + 1))
                try:
                    sys.stdout.write(block)
                    sys.stdout.flush()
                except (OSError, ValueError):
                    return
                sent = due
            await asyncio.sleep(LOG_BURST_TICK_S)

    async def h_metrics(self, request):
        from aiohttp import web

        lab = f'engine="0",model_name="{self.served[0]}"'
        c, s = self.cache, self.stats
        lines = [
            "# HELP vllm:num_requests_running Number of requests in model execution batches.",
            "# TYPE vllm:num_requests_running gauge", f"vllm:num_requests_running{{{lab}}} {float(self.running)}",
            "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.",
            "# TYPE vllm:num_requests_waiting gauge", f"vllm:num_requests_waiting{{{lab}}} 0.0",
            "# HELP vllm:gpu_cache_usage_perc GPU KV-cache usage. 1 means 100 percent usage.",
            "# TYPE vllm:gpu_cache_usage_perc gauge", f"vllm:gpu_cache_usage_perc{{{lab}}} {c.used / c.total}",
            "# HELP vllm:prompt_tokens_total Number of prefill tokens processed.",
            "# TYPE vllm:prompt_tokens_total counter", f"vllm:prompt_tokens_total{{{lab}}} {float(s['prompt_tokens'])}",
            "# HELP vllm:generation_tokens_total Number of generation tokens processed.",
            "# TYPE vllm:generation_tokens_total counter",
            f"vllm:generation_tokens_total{{{lab}}} {float(s['generation_tokens'])}",
            "# HELP vllm:request_success_total Count of successfully processed requests.",
            "# TYPE vllm:request_success_total counter",
            *(f'vllm:request_success_total{{{lab},finished_reason="{k}"}} {float(v)}'
              for k, v in s["finished"].items() if k != "abort"),
            "# SIMULATED: pdwizard_sim_* lines exist only in pdwizard's fake vLLM",
            f"pdwizard_sim_kv_blocks_held{{{lab}}} {c.held_blocks}",
            f"pdwizard_sim_kv_requests_held{{{lab}}} {len(c.held)}",
            *(f"pdwizard_sim_kv_{k}_total{{{lab}}} {v}" for k, v in c.counters.items()),
        ]
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain", charset="utf-8")

    async def h_pull(self, request):
        """The KV side channel: a decode pulls blocks and reports the request finished."""

        try:
            body = await request.json()
            blocks = [int(b) for b in body["remote_block_ids"]]
            finished = str(body["request_id"])
        except (ValueError, KeyError, TypeError):
            return _json_response({"ok": False, "error": "bad pull request"}, status=400)
        c = self.cache
        if c is None:
            return _json_response({"ok": False, "error": "engine not ready"}, status=503)
        owners = {c.owner.get(b) for b in blocks}
        if not blocks or None in owners:
            c.counters["stale_pulls"] += 1
            return _json_response({"ok": False, "error": "no such KV blocks held (already freed, or another "
                                                             "instance's)"}, status=404)
        owner = min(o for o in owners if o)
        c.held[owner].pulls += 1
        c.counters["pulled"] += 1
        src = body.get("from", "?")
        if finished in c.held:
            h = await c.free_held(finished)
            c.counters["freed"] += 1
            self.note(f"request {finished}: the decode at {src} pulled {len(blocks)} KV blocks; "
                      f"{len(h.blocks)} blocks freed", proc="EngineCore_0")
            return _json_response({"ok": True, "blocks": len(blocks), "freed": True})
        c.counters["unknown_finished"] += 1
        self.log("scheduler.py:1094", f"KeyError: {finished!r}", "ERROR", "EngineCore_0")
        self.note(f"the decode at {src} pulled the KV blocks of request {owner} but reported request {finished} "
                  f"as finished: this prefill does not know that id, so the {len(c.held[owner].blocks)} blocks of "
                  f"{owner} stay held (P and D need the same X-Request-Id and endpoint; real vLLM 0.10.1.1 may "
                  "even raise KeyError in the engine here)", "ERROR", "EngineCore_0")
        return _json_response({"ok": True, "blocks": len(blocks), "freed": False})

    async def _body(self, request) -> tuple[dict | None, Any]:
        try:
            body = await request.json()
        except ValueError as err:
            return None, self.error(400, f"JSON decode error: {err}")
        if not isinstance(body, dict):
            return None, self.error(400, "Input should be a valid dictionary")
        model = body.get("model")
        if model is not None and model not in self.served:
            return None, self.error(404, f"The model `{model}` does not exist.", "NotFoundError", "model")
        if body.get("stream_options") is not None and not body.get("stream"):
            return None, self.error(400, "Stream options can only be defined when `stream=True`.")
        for k in ("max_tokens", "max_completion_tokens", "min_tokens"):
            v = body.get(k)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < (1 if k != "min_tokens" else 0)):
                return None, self.error(400, f"{k} must be at least {1 if k != 'min_tokens' else 0}, got {v}.")
        kvp = body.get("kv_transfer_params")
        if kvp is not None and not isinstance(kvp, dict):
            return None, self.error(400, "kv_transfer_params: Input should be a valid dictionary")
        return body, None

    def _request_id(self, request, body: dict) -> str:
        return request.headers.get("X-Request-Id") or body.get("request_id") or uuid.uuid4().hex

    def _too_long(self, prompt_tokens: int, max_tokens: int, what: str):
        if prompt_tokens + max_tokens > self.max_model_len:
            return self.error(400, f"This model's maximum context length is {self.max_model_len} tokens. However, "
                                   f"you requested {prompt_tokens + max_tokens} tokens ({prompt_tokens} in the {what}, "
                                   f"{max_tokens} in the completion). Please reduce the length of the {what} or "
                                   "completion.")
        return None

    async def h_completions(self, request):
        body, err = await self._body(request)
        if err is not None:
            return err
        prompt = body.get("prompt")
        if isinstance(prompt, str):
            prompts = [prompt]
        elif isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
            prompts = list(prompt)
        elif isinstance(prompt, list) and prompt and all(isinstance(p, int) for p in prompt):
            prompts = [prompt]
        elif isinstance(prompt, list) and prompt and all(isinstance(p, list) for p in prompt):
            prompts = list(prompt)
        else:
            return self.error(400, "Either prompt or prompt_embeds must be provided and non-empty.")
        rid = self._request_id(request, body)
        max_tokens = body.get("max_tokens") or 16
        reqs = []
        for i, p in enumerate(prompts):
            text = p if isinstance(p, str) else " ".join(map(str, p))
            n = max(1, len(tokenize(text)) if isinstance(p, str) else len(p))
            too = self._too_long(n, max_tokens, "prompt")
            if too is not None:
                return too
            reqs.append(EngineRequest(f"cmpl-{rid}-{i}", n, text, max_tokens, body.get("min_tokens") or 0,
                                      body.get("kv_transfer_params"), chat=False))
        return await self._respond(request, body, reqs, f"cmpl-{rid}", chat=False)

    async def h_chat(self, request):
        body, err = await self._body(request)
        if err is not None:
            return err
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            return self.error(400, "messages: Input should be a valid list of messages")
        templated, last_user = chat_prompt(messages)
        n = max(1, len(tokenize(templated)))
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or max(1, self.max_model_len - n)
        too = self._too_long(n, max_tokens, "messages")
        if too is not None:
            return too
        rid = self._request_id(request, body)
        rq = EngineRequest(f"chatcmpl-{rid}", n, last_user or templated, max_tokens, body.get("min_tokens") or 0,
                           body.get("kv_transfer_params"), chat=True)
        return await self._respond(request, body, [rq], f"chatcmpl-{rid}", chat=True)

    async def _respond(self, request, body: dict, reqs: list[EngineRequest], rid: str, chat: bool):
        from aiohttp import web

        if self.dying:
            return self.error(500, "EngineCore encountered an issue. See stack trace (above) for the root cause.",
                              "EngineDeadError")
        for rq in reqs:
            self.log("logger.py:41", f"Received request {rq.request_id}: prompt tokens: {rq.prompt_tokens}, "
                     f"params: SamplingParams(max_tokens={rq.max_tokens}, min_tokens={rq.min_tokens}, "
                     f"temperature={body.get('temperature', 1.0)})")
        created = int(time.time())
        model = body.get("model") or self.served[0]
        obj = "chat.completion" if chat else "text_completion"
        if not body.get("stream"):
            choices = []
            usage = {"prompt_tokens": 0, "total_tokens": 0, "completion_tokens": 0}
            kv_out = None
            for i, rq in enumerate(reqs):
                try:
                    async with self.engine(rq):
                        await self.prefill(rq)
                        async for _ in self.decode(rq):
                            pass
                except EngineError as exc:
                    return self.error(exc.status, exc.message, exc.kind)
                if i == 0:
                    kv_out = rq.kv_out
                text = "".join(rq.out)
                if chat:
                    choices.append({"index": i, "message": {"role": "assistant", "reasoning_content": None,
                                                            "content": text, "tool_calls": []},
                                    "logprobs": None, "finish_reason": rq.finish, "stop_reason": None})
                else:
                    choices.append({"index": i, "text": text, "logprobs": None, "finish_reason": rq.finish,
                                    "stop_reason": None, "prompt_logprobs": None})
                usage["prompt_tokens"] += rq.prompt_tokens
                usage["completion_tokens"] += self.completion_tokens(rq)
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
            out = {"id": rid, "object": obj, "created": created, "model": model, "choices": choices,
                   "service_tier": None, "system_fingerprint": None, "usage": {**usage, "prompt_tokens_details": None}}
            if chat:
                out["prompt_logprobs"] = None
            out["kv_transfer_params"] = kv_out
            self.request_done()
            return _json_response(out)
        # SSE
        opts = body.get("stream_options") or {}
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
        chunk_obj = "chat.completion.chunk" if chat else "text_completion"

        async def send(payload: dict | str) -> None:
            data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
            await resp.write(f"data: {data}\n\n".encode())

        started = False
        usage = {"prompt_tokens": 0, "completion_tokens": 0}
        try:
            for i, rq in enumerate(reqs):
                async with self.engine(rq):
                    try:
                        await self.prefill(rq)
                    except EngineError as exc:
                        if not started:
                            return self.error(exc.status, exc.message, exc.kind)
                        raise
                    if not started:
                        await resp.prepare(request)
                        started = True
                    head = {"id": rid, "object": chunk_obj, "created": created, "model": model}
                    if chat:
                        await send({**head, "choices": [{"index": i, "delta": {"role": "assistant", "content": ""},
                                                         "logprobs": None, "finish_reason": None}]})
                    async for delta, finish in self.decode(rq):
                        if chat:
                            choice = {"index": i, "delta": {"content": delta}, "logprobs": None,
                                      "finish_reason": finish}
                        else:
                            choice = {"index": i, "text": delta, "logprobs": None, "finish_reason": finish,
                                      "stop_reason": None}
                        if finish is not None and chat:
                            choice["stop_reason"] = None
                        await send({**head, "choices": [choice]} if chat else {**head, "choices": [choice],
                                                                               "usage": None})
                usage["prompt_tokens"] += rq.prompt_tokens
                usage["completion_tokens"] += self.completion_tokens(rq)
            if opts.get("include_usage"):
                await send({"id": rid, "object": chunk_obj, "created": created, "model": model, "choices": [],
                            "usage": {"prompt_tokens": usage["prompt_tokens"],
                                      "total_tokens": usage["prompt_tokens"] + usage["completion_tokens"],
                                      "completion_tokens": usage["completion_tokens"]}})
            await send("[DONE]")
            await resp.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except EngineError as exc:
            with contextlib.suppress(Exception):
                await send({"error": {"message": exc.message, "type": exc.kind, "param": None, "code": exc.status}})
                await send("[DONE]")
        self.request_done()
        return resp

    # ------------------------------------------------------------------ shutdown

    async def close(self) -> None:
        for r in reversed(self.runners):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(r.cleanup(), 2.0)
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.close()
        for s in [self.http_sock, *self.kv_socks]:
            if s is not None:
                with contextlib.suppress(OSError):
                    s.close()


# --------------------------------------------------------------------------------------- main

async def _serve(args: argparse.Namespace, profile, installed: str | None) -> int:
    node = load_node(getattr(args, "host", None))
    srv = Server(args, profile, installed, node)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    got: list[str] = []

    def on_signal(name: str) -> None:
        got.append(name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig.name)
    rc: int | None = None
    try:
        starting = asyncio.ensure_future(srv.start())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()
            with contextlib.suppress(BaseException):
                await starting
            srv.note(f"{got[0] if got else 'signal'} during start-up: exiting", "WARNING")
            return 0
        stopping.cancel()
        rc = starting.result()
        if rc is not None:
            return rc
        bg = asyncio.ensure_future(srv.background())
        await stop.wait()
        bg.cancel()
        srv.log.uvicorn("Shutting down")
        srv.log.uvicorn("Waiting for application shutdown.")
        srv.log.uvicorn("Application shutdown complete.")
        srv.log.uvicorn(f"Finished server process [{os.getpid()}]")
        return 0
    finally:
        srv.unregister_npus()
        await srv.close()


def _set_process_name(name: bytes = b"vllm") -> None:
    """`ps -C vllm` / `pgrep vllm` find it, as they find the real console script."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None).prctl(15, ctypes.c_char_p(name), 0, 0, 0)  # PR_SET_NAME


def main(argv: list[str] | None = None) -> int:
    _set_process_name()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        profile, installed = choose_profile()
    except Exception as err:  # noqa: BLE001 - a broken profile: say so, like an import error would
        _write(sys.stderr, f"vllm (pdwizard sim): cannot load a version profile: {err}")
        return 1
    version = _dist_version("vllm") or profile.vllm or "0.10.1.1"
    json_flags = {f for f, k in profile.serve_flags.items() if k == "json"}
    parser = build_parser(profile, version)
    args = parser.parse_args(normalize_argv(argv, json_flags))  # exits 2 on a bad command line
    if args.subparser is None:
        parser.print_help()
        return 0
    if args.subparser != "serve":
        _write(sys.stderr, f"vllm {args.subparser}: not simulated (pdwizard's fake vLLM only serves)")
        return 1
    try:
        return asyncio.run(_serve(args, profile, installed))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
