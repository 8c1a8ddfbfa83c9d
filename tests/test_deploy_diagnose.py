"""Log diagnoses are data (pdwizard/deploy/diagnoses.toml): each pattern against a realistic log line."""

from __future__ import annotations

import pytest

from pdwizard.deploy.diagnose import diagnose, load_rules, parse_rules

# (rule id, a log line as the real component prints it)
LINES = [
    ("hccl_port_in_use",
     "[ERROR] HCCL(60570,):2025-12-04-14:46:07.911.312 [hccl_socket.cc:106] [60570][HcclSocket][Listen] socket "
     "type[0], listen on ip[192.2.2.195] and specific port[16666] fail. Please check the port status and whether "
     "the port is being used by other process."),
    ("hccl_port_in_use",
     "listen on ip[192.0.0.1] and specific port[16666] fail, port is been using by other process"),
    ("hccl_port_in_use",
     "[rank0]: EJ0003: [PID: 159] 2025-03-26-17:01:02.816.428 Failed to bind the IP port. Reason: The IP address "
     "and port have been bound already."),
    ("zmq_port_in_use",
     "zmq.error.ZMQError: Address already in use (addr='tcp://192.0.0.1:5557')"),
    ("zmq_port_in_use",
     "(VllmWorker TP0 pid=2231) ERROR 09-04 10:12:01 [mooncake_connector.py:512] KV Cache sending/receiving "
     "thread failed to start."),
    ("http_port_in_use",
     "ERROR:    [Errno 98] error while attempting to bind on address ('0.0.0.0', 13700): address already in use"),
    ("npu_out_of_memory",
     "RuntimeError: NPU out of memory. Tried to allocate 3.47 GiB (NPU 0; 60.97 GiB total capacity; 58.92 GiB "
     "already allocated; 58.92 GiB current active; 1.66 GiB free; 58.95 GiB reserved in total by PyTorch)"),
    ("npu_out_of_memory",
     "ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when "
     "initializing the engine."),
    ("hccl_socket_timeout",
     "EI0006: [PID: 3821] 2025-07-23-10:41:55.012.561 Getting socket times out. Reason: 1. The remote does not "
     "initiate a connect request. some NPUs in the cluster are abnormal. 2. The remote does not initiate a "
     "connect request because the collective communication operator is started too late or is not started by "
     "some NPU in the cluster. 3. The communication link is disconnected. (For example, the IP addresses are not "
     "on the same network segment or the TLS configurations are inconsistent.)"),
    ("ranktable_device_mismatch",
     "[ERROR] HCCL(164818,python):2025-08-27-20:10:17:012.780 [topoinfo_ranktableConcise.cc:169][166173][Parse]"
     "[ClusterInfo]ranktable config devId[1], but local devId[3]"),
    ("ranktable_unusable",
     "AssertionError: Can't read the target server_id 192.0.0.2 and device_id 6 from rank table"),
    ("ranktable_unusable",
     "[ERROR] HCCL(1288,python):2025-08-12-09:14:22.512.118 [transport_manager.cc:412][1310]Transport init "
     "error! [Create][DestLink]Create Dest error! createLink para:rank[0]-localUserrank[0]-localIpAddr[192.0.0.1]"),
    ("open_device_failed",
     "(RayWorkerWrapper pid=118835) ERROR 02-26 09:45:37 worker_base.py:572]         open device 1 failed, "
     "runtime result = 107001.[FUNC:ReportCallError][FILE:log_inner.cpp][LINE:161]"),
    ("open_device_failed",
     "[ERROR] RUNTIME(42,python):2025-11-18-09:33:13.666.323 [runtime.cc:5632]58 GetVisibleDevices:[INIT][DEFAULT]"
     "set ASCEND_RT_VISIBLE_DEVICES:[4] error, input data rang[0-2)"),
    ("unknown_flag",
     "vllm serve: error: unrecognized arguments: --prefiller-hostz 192.0.0.1"),
    ("connector_import_error",
     "ModuleNotFoundError: No module named 'llm_datadist'"),
    ("connector_import_error",
     "ImportError: Please install mooncake by following the instructions at "
     "https://github.com/kvcache-ai/Mooncake/blob/main/doc/en/build.md to run vLLM with MooncakeConnector."),
    ("connector_import_error",
     "ValueError: Unsupported connector type: LLMDataDistCMgrConnectr"),
    ("model_not_found",
     "ValueError: Invalid repository ID or local directory specified: '/model/Qwen3-30B-A3B'."),
    ("model_not_found",
     "huggingface_hub.errors.HFValidationError: Repo id must be in the form 'repo_name' or "
     "'namespace/repo_name': '/model/Qwen3-30B-A3B'. Use `repo_type` argument if needed."),
    ("model_not_found",
     "OSError: /model/Qwen3-30B-A3B does not appear to have a file named config.json."),
    ("vllm_not_found",
     "/root/.pdwizard/runs/qwen3-1p2d/p1-prefill-0.sh: line 24: exec: vllm: not found"),
    ("graph_and_eager",
     "RuntimeError: Can't enable graph mode and eager mode at the same time. Please set `enforce_eager=False` "
     "if you attempt to enable NPU graph mode."),
    ("batched_tokens_too_small",
     "ValueError: max_num_batched_tokens (2048) is smaller than max_model_len (6144). This effectively limits the "
     "maximum sequence length to max_num_batched_tokens and makes vLLM reject longer sequences."),
    ("engine_id_conflict",
     "AssertionError: Conflict engine id 0 with local engine id 0."),
]

NORMAL_STARTUP = [
    "INFO 09-04 10:11:58 [__init__.py:241] Automatically detected platform npu.",
    "INFO 09-04 10:12:03 [api_server.py:1805] vLLM API server version 0.10.1.1",
    "INFO 09-04 10:12:03 [utils.py:326] non-default args: {'model': '/model/Qwen3-30B-A3B', 'port': 13700}",
    "(VllmWorker TP0 pid=2231) INFO 09-04 10:13:40 [model_runner_v1.py:2114] Loading model weights took 28.4 GB",
    "INFO 09-04 10:14:02 [kv_cache_utils.py:849] GPU KV cache size: 342,528 tokens",
    "INFO:     Started server process [2190]",
    "INFO:     Waiting for application startup.",
    "INFO:     Application startup complete.",
    "INFO:     192.0.0.1:50332 - \"GET /health HTTP/1.1\" 200 OK",
    "=== pdwizard launch p1-prefill-0 2025-09-04T10:11:57Z session qwen3-1p2d ===",
]


@pytest.mark.parametrize(("rule_id", "line"), LINES, ids=[f"{i}-{r}" for i, (r, _) in enumerate(LINES)])
def test_each_pattern_matches_its_real_log_line(rule_id: str, line: str) -> None:
    found = diagnose(["INFO starting", line, "Traceback (most recent call last):"])
    assert rule_id in [d.id for d in found]
    hit = next(d for d in found if d.id == rule_id)
    assert hit.line == line.strip() and hit.meaning and hit.fix


def test_every_rule_has_a_realistic_line() -> None:
    assert {r.id for r in load_rules()} == {rule_id for rule_id, _ in LINES}


def test_the_required_failures_are_covered() -> None:
    ids = {r.id for r in load_rules()}
    assert {"hccl_port_in_use", "zmq_port_in_use", "npu_out_of_memory", "hccl_socket_timeout",
            "ranktable_device_mismatch", "open_device_failed", "unknown_flag", "connector_import_error",
            "model_not_found"} <= ids


def test_a_clean_startup_log_matches_nothing() -> None:
    assert diagnose(NORMAL_STARTUP) == []


def test_specific_port_rules_do_not_steal_each_other() -> None:
    zmq = diagnose(["zmq.error.ZMQError: Address already in use (addr='tcp://0.0.0.0:5557')"])
    assert [d.id for d in zmq] == ["zmq_port_in_use"]
    http = diagnose(["OSError: [Errno 98] Address already in use"])
    assert [d.id for d in http] == ["http_port_in_use"]


def test_results_follow_catalogue_order_with_the_first_matching_line() -> None:
    lines = ["ModuleNotFoundError: No module named 'mooncake'",
             "EI0006: Getting socket times out.",
             "EI0006: again"]
    found = diagnose(lines)
    assert [d.id for d in found] == ["hccl_socket_timeout", "connector_import_error"]
    assert found[0].line == "EI0006: Getting socket times out."


@pytest.mark.parametrize(("text", "message"), [
    ('[[diagnosis]]\nid = "x"\nregex = "a"\nmeaning = "m"\n', "missing or empty fix"),
    ('[[diagnosis]]\nid = "x"\nregex = "("\nmeaning = "m"\nfix = "f"\n', "bad regex"),
    ('[[diagnosis]]\nid = "x"\nregex = "a"\nmeaning = "m"\nfix = "f"\nwhy = "?"\n', "unknown key"),
    ('[[diagnosis]]\nid = "x"\nregex = "a"\nmeaning = "m"\nfix = "f"\n' * 2, "used twice"),
])
def test_malformed_catalogue_entries_are_named(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_rules(text)


def test_ignore_case_is_per_entry() -> None:
    rules = parse_rules('[[diagnosis]]\nid = "x"\nregex = "boom"\nmeaning = "m"\nfix = "f"\nignore_case = true\n')
    assert [d.id for d in diagnose(["BOOM"], rules)] == ["x"]
