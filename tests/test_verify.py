"""The verification's judgement, without a cluster: answers, recompute evidence, who served it."""

from __future__ import annotations

from pdwizard.client import PromptResult
from pdwizard.deploy.plan import DeployPlan, ProcessSpec
from pdwizard.models import Verify
from pdwizard.verify import answer_problems, backends, recompute_evidence, verifies_of


def _ok(text: str) -> PromptResult:
    return PromptResult(prompt="p", text=text, status=200)


def test_answer_problems():
    v = Verify(prompt="Who are you?", expect="qwen")
    assert answer_problems(v, _ok(" I am Qwen3.")) == []  # case-insensitive
    assert answer_problems(v, _ok(" I am a model.")) == ["the answer does not contain 'qwen'"]
    assert answer_problems(Verify(prompt="x"), _ok("   ")) == ["empty answer (HTTP 200 with no text)"]
    failed = PromptResult(prompt="p", status=502, error="HTTP 502: backend down")
    assert answer_problems(Verify(prompt="x"), failed) == ["no answer: HTTP 502: backend down"]
    cut = PromptResult(prompt="p", text="half", status=200, error="stream ended without [DONE]")
    assert answer_problems(Verify(prompt="x"), cut) == ["the request failed after 4 characters: stream ended "
                                                         "without [DONE]"]


def test_recompute_evidence_prefers_the_lines_of_the_request():
    lines = [
        "(EngineCore_0 pid=1) WARNING 01-01 00:00:00 [sim] SIMULATED: request cmpl-aaa-0: it came without "
        "kv_transfer_params: this decode instance recomputes the whole prompt (5 tokens) itself [SIMULATED]",
        "(EngineCore_0 pid=1) WARNING 01-01 00:00:01 [sim] SIMULATED: request cmpl-bbb-0: its kv_transfer_params "
        "are stale: this decode instance recomputes the whole prompt (5 tokens) itself [SIMULATED]",
    ]
    assert "cmpl-bbb-0" in recompute_evidence(lines, "bbb")
    assert "cmpl-aaa-0" in recompute_evidence(lines, "zzz")  # none names it: the window's first
    assert recompute_evidence(["INFO: 127.0.0.1 - \"POST /v1/completions HTTP/1.1\" 200 OK"], "bbb") is None
    # what real vllm-ascend logs when it drops the transfer (llmdatadist-connector.md section 6)
    real = "WARNING [llmdatadist_c_mgr_connector.py:520] Invalid KVTransferParams {'do_remote_prefill': True}"
    assert recompute_evidence([real]) == real


def test_backends_maps_the_proxy_addresses_to_instances():
    def spec(name, node, role, host, port=13700):
        return ProcessSpec(name=name, node=node, role=role, port=port, health_host=host, script="")

    proxy = ProcessSpec(name="p1-proxy-0", node="p1", role="proxy", port=8080, health_host="10.0.0.1", script="",
                        argv=("python3", "proxy.py", "--host", "10.0.0.1", "--prefiller-hosts", "192.0.0.1",
                              "--prefiller-ports", "13700", "--decoder-hosts", "192.0.0.2", "192.0.0.3",
                              "--decoder-ports", "13700", "13701"))
    plan = DeployPlan(session="s", processes=(spec("p1-prefill-0", "p1", "prefill", "10.0.0.1"),
                                              spec("d1-decode-0", "d1", "decode", "10.0.0.2"),
                                              spec("d2-decode-0", "d2", "decode", "10.0.0.3", 13701), proxy))
    served = {k: v.name for k, v in backends(plan).items()}
    assert served["192.0.0.1:13700"] == "p1-prefill-0"
    assert served["192.0.0.2:13700"] == "d1-decode-0" and served["192.0.0.3:13701"] == "d2-decode-0"
    assert served["10.0.0.2:13700"] == "d1-decode-0"  # the SSH host too


def test_the_guides_prompt_when_the_session_has_none():
    class S:
        verify: list = []

    [v] = verifies_of(S())
    assert (v.prompt, v.max_tokens, v.expect, v.chat) == ("Who are you?", 100, None, False)
