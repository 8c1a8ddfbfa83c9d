"""Verify a launched deployment: each `[[verify]]` prompt through the proxy, judged.

A verification sends its prompt through the proxy with the prompt client (streamed, temperature
0, `max_tokens` of the entry; completions, or chat with `chat = true`) and fails when:

- the request failed or the answer is empty (the example proxy's known flaw: HTTP 200, no text);
- `expect` is set and the answer does not contain it (case-insensitive substring);
- the decode instance that served it recomputed the prompt instead of pulling its KV cache from
  the prefill: PD then "works", only slower, and nothing else tells (operator-pain-points.md #12).

Recompute evidence is read from the serving decode's log after each answer (one round trip):
the lines it logged since its previous read (the first time: since this launch began; the
verifications are the only traffic of a deployment just launched, sent one at a time, so each
window holds one request), matched against `RECOMPUTE_EVIDENCE`, lines naming the request first. The proxy's
`X-PD-KV-Params: absent` (pdwizard's proxy: the prefill returned no kv_transfer_params, so the
decode prefilled itself) is evidence too.

What real vLLM logs: a decode that pulls, or that falls back to recomputing after a failed
pull, says nothing per request; vllm-ascend's connectors log `Invalid KVTransferParams` when
the params lack a key and the transfer is dropped (llmdatadist-connector.md §6). That line is
matched; the silent fallback is visible only through the proxy header or the simulator, whose
fake vllm says `... this decode instance recomputes the whole prompt ...` for every recompute.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import aiohttp

from pdwizard.client import PromptResult, send_prompt
from pdwizard.deploy.logs import read_log
from pdwizard.deploy.plan import DeployPlan, ProcessSpec
from pdwizard.errors import RemoteError
from pdwizard.models import Session, Verify
from pdwizard.remote.pool import RemotePool

#: The guide's check (its curl): used when the session has no [[verify]].
DEFAULT_VERIFY = Verify(prompt="Who are you?", max_tokens=100)

#: Decode log lines that say the KV cache was recomputed, not transferred: (id, regex, what it means).
RECOMPUTE_EVIDENCE: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("sim_recompute", re.compile(r"recomputes the whole prompt"),
     "the decode instance computed the prompt itself"),
    ("invalid_kv_params", re.compile(r"Invalid KVTransferParams"),
     "the decode dropped the KV transfer (kv_transfer_params missing a key) and prefilled itself"),
)
RECOMPUTE_HINT = ("check the KV path between prefill and decode: the fabric checks (ping matrix, TLS), the "
                  "ranktable on every node, the connector's ports; the decode's log says why the pull failed")
DECODE_LINES = 500  # at most this many new decode log lines are read per prompt
TEXT_EXCERPT = 120


@dataclass
class VerifyOutcome:
    """One verification: the request, the answer, who served it, and what is wrong with it."""

    verify: Verify
    result: PromptResult
    prefill: ProcessSpec | None = None
    decode: ProcessSpec | None = None
    problems: list[str] = field(default_factory=list)
    recompute: str | None = None          # the log line (or header) that shows it
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def served_by(self) -> str:
        return f"{_who(self.prefill, self.result.prefill)} -> {_who(self.decode, self.result.decode)}"

    def line(self) -> str:
        r = self.result
        text = excerpt(r.text) if r.text else "(no answer)"
        timing = (f"TTFT {_ms(r.ttft_s)}, TPOT {_ms(r.tpot_s)}, total {r.total_s:.2f} s, {r.tokens} tokens")
        head = f"verify {'OK' if self.ok else 'FAILED'}: {self.verify.prompt!r} -> {text!r}"
        out = f"{head} ({timing}; served by {self.served_by})"
        return out + "".join(f"\n  {p}" for p in self.problems)

    def data(self) -> dict:
        r = self.result
        return {"prompt": self.verify.prompt, "chat": self.verify.chat, "max_tokens": self.verify.max_tokens,
                "expect": self.verify.expect, "text": r.text, "tokens": r.tokens, "finish_reason": r.finish_reason,
                "ttft_s": _round(r.ttft_s), "tpot_s": _round(r.tpot_s), "total_s": _round(r.total_s),
                "prefill": self.prefill.name if self.prefill else None, "prefill_address": r.prefill,
                "decode": self.decode.name if self.decode else None, "decode_address": r.decode,
                "kv": r.kv, "request_id": r.server_request_id, "http_status": r.status, "error": r.error,
                "kv_recomputed": self.recompute is not None, "recompute_evidence": self.recompute}


def excerpt(text: str, limit: int = TEXT_EXCERPT) -> str:
    one = " ".join(text.split())
    return one if len(one) <= limit else one[: limit - 3] + "..."


def _ms(s: float | None) -> str:
    return "-" if s is None else f"{s * 1000:.0f} ms"


def _round(s: float | None) -> float | None:
    return None if s is None else round(s, 4)


def _who(spec: ProcessSpec | None, address: str | None) -> str:
    if spec is not None:
        return spec.name
    return address or "?"


# ------------------------------------------------------------------ judging (pure)


def answer_problems(verify: Verify, result: PromptResult) -> list[str]:
    """What is wrong with the answer itself: an error, no text, the expected text missing."""
    if result.error is not None and result.text.strip():
        return [f"the request failed after {len(result.text)} characters: {result.error}"]
    if result.error is not None:
        return [f"no answer: {result.error}"]
    if not result.text.strip():
        return ["empty answer (HTTP 200 with no text)"]
    if verify.expect is not None and verify.expect.casefold() not in result.text.casefold():
        return [f"the answer does not contain {verify.expect!r}"]
    return []


def recompute_evidence(lines: Sequence[str], request_id: str | None = None) -> str | None:
    """The first decode log line that shows a recompute; lines naming `request_id` first."""
    hits = [ln for ln in lines if any(p.search(ln) for _, p, _ in RECOMPUTE_EVIDENCE)]
    if not hits:
        return None
    if request_id:
        mine = [ln for ln in hits if request_id in ln]
        if mine:
            return mine[0].strip()
    return hits[0].strip()


# ------------------------------------------------------------------ addresses


def backends(plan: DeployPlan) -> dict[str, ProcessSpec]:
    """host:port as the proxy names its backends (X-PD-Prefill / X-PD-Decode) -> the instance.

    The proxy's flags list the prefill and decode hosts and ports in the plan's instance order;
    each instance's health address is added too."""
    out: dict[str, ProcessSpec] = {}
    for spec in plan.instances:
        out[f"{spec.health_host}:{spec.port}"] = spec
    if plan.proxy is not None:
        flags = _flags(plan.proxy.argv)
        for role, hosts, ports in (("prefill", "--prefiller-hosts", "--prefiller-ports"),
                                   ("decode", "--decoder-hosts", "--decoder-ports")):
            specs = [s for s in plan.instances if s.role == role]
            hs, ps = flags.get(hosts, []), flags.get(ports, [])
            if len(ps) == 1 and len(hs) > 1:
                ps = ps * len(hs)
            for spec, h, p in zip(specs, hs, ps):
                out[f"{h}:{p}"] = spec
    return out


def _flags(argv: Sequence[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for a in argv:
        if a.startswith("--"):
            name, eq, value = a.partition("=")
            current = out.setdefault(name, [])
            if eq:
                current.append(value)
        elif current is not None:
            current.append(a)
    return out


def proxy_url(plan: DeployPlan) -> str:
    proxy = plan.proxy
    if proxy is None:
        raise ValueError("the plan has no proxy to send prompts through")
    host = f"[{proxy.health_host}]" if ":" in proxy.health_host else proxy.health_host
    return f"http://{host}:{proxy.port}"


# ------------------------------------------------------------------ running


async def run_one(pool: RemotePool, session: Session, plan: DeployPlan, verify: Verify, *,
                  http: aiohttp.ClientSession | None = None, timeout_s: float = 300.0,
                  on_text: Callable[[str], None] | None = None,
                  read_upto: dict[str, int] | None = None) -> VerifyOutcome:
    """Send one verification through the proxy and judge it (see the module docstring).
    `read_upto`: decode name -> log lines already read (kept up to date here; {} at first)."""
    seen = read_upto if read_upto is not None else {}
    remote_timeout = min(plan.command_timeout_s, 60.0)
    result = await send_prompt(proxy_url(plan), session.model.served_model_name, verify.prompt,
                               max_tokens=verify.max_tokens, chat=verify.chat, stream=True, temperature=0.0,
                               timeout_s=timeout_s, on_text=on_text, http=http)
    served = backends(plan)
    out = VerifyOutcome(verify, result, prefill=served.get(result.prefill or ""),
                        decode=served.get(result.decode or ""))
    out.problems = answer_problems(verify, result)
    if result.kv == "absent":
        out.recompute = ("the proxy got no kv_transfer_params from the prefill (X-PD-KV-Params: absent): "
                         "the decode prefilled the prompt itself")
    if out.decode is not None and result.status == 200:
        try:
            got = await read_log(pool, plan.session, out.decode.node, out.decode.name, runtime=plan.runtime,
                                 since=seen.get(out.decode.name), max_lines=DECODE_LINES, timeout=remote_timeout)
            seen[out.decode.name] = got.total
            line = recompute_evidence(got.lines, result.server_request_id)
            if line is not None:
                out.recompute = line
        except RemoteError as exc:
            out.notes.append(f"could not read the log of {out.decode.name} to check for a KV recompute: "
                             f"{exc.message}")
    elif result.status == 200 and result.decode:
        out.notes.append(f"the proxy named decode {result.decode}, not an instance of this plan: "
                         "its log was not checked for a KV recompute")
    if out.recompute is not None:
        who = out.decode.name if out.decode else (result.decode or "the decode")
        out.problems.append(f"KV recomputed instead of transferred on {who}: {out.recompute}")
    return out


async def run_all(pool: RemotePool, session: Session, plan: DeployPlan, verifies: Sequence[Verify], *,
                  on_outcome: Callable[[VerifyOutcome], None] | None = None,
                  timeout_s: float = 300.0) -> list[VerifyOutcome]:
    """Every verification in order, one at a time (each one's decode log window is its own)."""
    outcomes = []
    read_upto: dict[str, int] = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as http:
        for v in verifies:
            outcome = await run_one(pool, session, plan, v, http=http, timeout_s=timeout_s, read_upto=read_upto)
            outcomes.append(outcome)
            if on_outcome is not None:
                on_outcome(outcome)
    return outcomes


def verifies_of(session: Session) -> list[Verify]:
    """The session's [[verify]] entries, or the guide's one prompt when it has none."""
    return list(session.verify) or [DEFAULT_VERIFY]


__all__ = ["DEFAULT_VERIFY", "RECOMPUTE_EVIDENCE", "VerifyOutcome", "answer_problems", "backends", "excerpt",
           "proxy_url", "recompute_evidence", "run_all", "run_one", "verifies_of"]
