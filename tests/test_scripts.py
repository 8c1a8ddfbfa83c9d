"""Launch scripts: bash accepts them, and running one hands vLLM exactly the rendered argv/env."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from pdwizard.render import render_all
from pdwizard.scripts import SCRIPT_MODE, instance_script, shell_value, write_scripts
from pdwizard.session import SessionError, load_session, validate_session

REPO = Path(__file__).resolve().parents[1]
QWEN = REPO / "examples" / "qwen3-1p2d.toml"
HOSTILE_PATH = "/models/My \"Qwen\" it's $(touch PWNED) `touch PWNED` \\ ${HOME} *"

FAKE = """#!{python}
import json, os, sys
json.dump({{"argv0": os.path.basename(sys.argv[0]), "argv": sys.argv[1:], "env": dict(os.environ)}}, sys.stdout)
"""


@pytest.fixture
def fakebin(tmp_path: Path) -> Path:
    """A directory with fake `vllm` and `python` that print their argv and environment as JSON."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    for name in ("vllm", "python"):
        exe = bindir / name
        exe.write_text(FAKE.format(python=sys.executable))
        exe.chmod(0o755)
    return bindir


def run(script: Path, fakebin: Path, home: Path) -> dict:
    env = {"PATH": f"{fakebin}:/usr/bin:/bin", "HOME": str(home)}
    out = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, cwd=home, timeout=30)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def hostile_session():
    s = load_session(QWEN)
    data = s.model_dump(exclude_unset=True)
    data["model"]["path"] = HOSTILE_PATH
    data["model"]["served_name"] = "q'\"$x"
    data["model"]["additional_config"]["ascend_scheduler_config"]["policy"] = "fcfs' ; touch PWNED ; '"
    data["stack"] = {"ranktable_path": "~/runs/it's here/ranktable.json"}
    return validate_session(data)


# ---- syntax, layout, files ------------------------------------------------------------------------


def test_bash_accepts_every_script(tmp_path):
    written = write_scripts(load_session(QWEN), tmp_path / "out")
    assert [p.name for p in written.paths] == ["p1-prefill-0.sh", "d1-decode-0.sh", "d2-decode-0.sh", "proxy.sh"]
    for path in written.paths:
        subprocess.run(["bash", "-n", str(path)], check=True)
        text = path.read_text()
        assert text.startswith("#!/usr/bin/env bash\n")
        code = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
        assert code[0] == "set -euo pipefail"
        assert stat.S_IMODE(path.stat().st_mode) == SCRIPT_MODE
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in written.paths)  # no temp


def test_each_addition_has_a_comment_line_just_above_it(tmp_path):
    def colocated(d):
        d["instances"].append({"role": "decode", "node": "p1", "devices": [2, 3], "port": 13701})
    data = load_session(QWEN).model_dump(exclude_unset=True)
    colocated(data)
    written = write_scripts(validate_session(data), tmp_path)
    for r, path in zip(written.deployment.instances, written.instances):
        lines = path.read_text().splitlines()
        for name in r.comments:
            at = next(i for i, ln in enumerate(lines) if ln.startswith(f"export {name}="))
            block = []
            for ln in reversed(lines[:at]):
                if not ln.startswith("#"):
                    break
                block.insert(0, ln)
            assert block and block[0].startswith(f"# pdwizard adds {name}: "), (name, block)
    p1 = written.instances[0].read_text()
    assert "export VLLM_ASCEND_LLMDD_RPC_PORT=5557" in p1
    assert "# --prefiller-ports: the guide writes --prefiller-port" in written.proxy.read_text()


def test_notes_are_listed_in_the_header(tmp_path):
    written = write_scripts(load_session(QWEN), tmp_path)
    head = written.instances[0].read_text().split("set -euo pipefail")[0]
    assert "# Notes:" in head and "kv_port has no effect" in head
    assert "enable_multistream_shared_expert has no effect" in head


def test_render_problem_writes_nothing(tmp_path):
    data = load_session(QWEN).model_dump(exclude_unset=True)
    data["model"]["extra_args"] = ["--max-num-seq", "4"]
    with pytest.raises(SessionError) as exc:
        write_scripts(validate_session(data), tmp_path / "out", source="s.toml")
    assert "s.toml: model.extra_args[0]" in str(exc.value)
    assert not (tmp_path / "out").exists()


def test_rewrite_replaces_atomically(tmp_path):
    s = load_session(QWEN)
    first = write_scripts(s, tmp_path).instances[0]
    os.chmod(first, 0o600)
    again = write_scripts(s, tmp_path).instances[0]
    assert again == first and stat.S_IMODE(first.stat().st_mode) == SCRIPT_MODE


# ---- running them ----------------------------------------------------------------------------------


def test_running_a_script_gives_vllm_exactly_the_rendered_argv_and_env(tmp_path, fakebin):
    home = tmp_path / "home"
    home.mkdir()
    written = write_scripts(hostile_session(), tmp_path / "out")
    for r, path in zip(written.deployment.instances, written.instances):
        seen = run(path, fakebin, home)
        assert seen["argv0"] == "vllm" and seen["argv"] == r.argv[1:]
        assert seen["argv"][1] == HOSTILE_PATH  # one argument, spaces and quotes intact
        for name, value in r.env:
            expected = str(home) + value[1:] if value.startswith("~/") else value
            assert seen["env"][name] == expected, name
        assert seen["env"]["DISAGGREGATED_PREFILL_RANK_TABLE_PATH"] == f"{home}/runs/it's here/ranktable.json"
        # the JSON blobs round-trip through json.loads
        kv = json.loads(seen["argv"][seen["argv"].index("--kv-transfer-config") + 1])
        add = json.loads(seen["argv"][seen["argv"].index("--additional-config") + 1])
        assert kv == r.kv_transfer_config and add == r.additional_config
        assert add["ascend_scheduler_config"]["policy"] == "fcfs' ; touch PWNED ; '"
    assert not list(tmp_path.rglob("PWNED")), "an argument was executed as code"


def test_running_proxy_script(tmp_path, fakebin):
    written = write_scripts(load_session(QWEN), tmp_path)
    seen = run(written.proxy, fakebin, tmp_path)
    assert seen["argv0"] == "python" and seen["argv"] == written.deployment.proxy.argv[1:]


def test_builtin_proxy_script_runs_pdwizard_proxy_with_the_same_flags(tmp_path, fakebin):
    data = load_session(QWEN).model_dump(exclude_unset=True)
    data["proxy"]["kind"] = "builtin"
    written = write_scripts(validate_session(data), tmp_path)
    seen = run(written.proxy, fakebin, tmp_path)
    upstream = render_all(load_session(QWEN)).proxy.argv
    assert seen["argv"] == ["-m", "pdwizard.proxy", *upstream[2:]]


def test_note_text_cannot_escape_its_comment(tmp_path, fakebin):
    r = render_all(load_session(QWEN)).instances[0]
    evil = replace(r, notes=["x\n touch PWNED2\r touch PWNED3 \x0b y"],
                   comments={**r.comments, "ASCEND_RT_VISIBLE_DEVICES": "why\ntouch PWNED4"})
    path = tmp_path / "evil.sh"
    path.write_text(instance_script(evil))
    seen = run(path, fakebin, tmp_path)
    assert seen["argv"] == r.argv[1:]
    assert not list(tmp_path.glob("PWNED*"))


@pytest.mark.parametrize("value, shell", [
    ("~/a b/r.json", "\"$HOME\"/'a b/r.json'"),
    ("/abs/r.json", "/abs/r.json"),
    ("~user/x", "'~user/x'"),
    ("$(x)", "'$(x)'"),
])
def test_shell_value(value, shell):
    assert shell_value(value) == shell
