"""Batched probes: the framing must give back each call's streams and status exactly,
whatever the tool prints, and retry "busy" without reading it as a fault."""

from __future__ import annotations

import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pdwizard.probe import Batch, ToolCall, build_script, new_nonce, split_output


def run_batch(batch: Batch, tmp_path, env_path: str | None = None) -> dict:
    nonce = new_nonce()
    env = {"PATH": f"{env_path}:/usr/bin:/bin" if env_path else "/usr/bin:/bin"}
    proc = subprocess.run(["sh", "-s"], input=build_script(batch, nonce), capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=30)
    return split_output(proc.stdout, nonce)


def test_streams_and_exit_status_are_kept_apart(tmp_path):
    b = Batch()
    b.add("both", "sh", "-c", "echo out; echo err >&2; exit 13")
    b.add("empty", "true")
    b.add("nonl", "printf", "no newline")
    b.add("blank", "printf", "a\\n\\nb\\n")
    out = run_batch(b, tmp_path)
    assert (out["both"].stdout, out["both"].stderr, out["both"].exit_status) == ("out\n", "err\n", 13)
    assert (out["empty"].stdout, out["empty"].stderr, out["empty"].exit_status) == ("", "", 0)
    assert out["nonl"].stdout == "no newline\n"
    assert out["blank"].stdout == "a\n\nb\n"


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\r"),
               max_size=80))
def test_any_argument_is_data_never_code(tmp_path_factory, arg):
    b = Batch()
    b.add("echo", "printf", "%s", arg)
    out = run_batch(b, tmp_path_factory.mktemp("p"))
    assert out["echo"].stdout.rstrip("\n") == arg.rstrip("\n")
    assert out["echo"].exit_status == 0


def test_busy_is_retried_then_answers(tmp_path):
    tool = tmp_path / "hccn_tool"
    count = tmp_path / "count"
    tool.write_text(f"""#!/bin/sh
n=$(cat {count} 2>/dev/null || echo 0); n=$((n + 1)); echo $n > {count}
if [ $n -le 2 ]; then echo 'hccn_tool is busy, please try again.'; exit 11; fi
echo 'link status: UP'
""")
    tool.chmod(0o755)
    b = Batch()
    b.add("link.0", "hccn_tool", "-i", "0", "-link", "-g")
    out = run_batch(b, tmp_path, env_path=str(tmp_path))
    assert out["link.0"].stdout == "link status: UP\n"
    assert out["link.0"].attempts == 3 and out["link.0"].exit_status == 0


def test_busy_forever_is_reported_not_hidden(tmp_path):
    tool = tmp_path / "hccn_tool"
    tool.write_text("#!/bin/sh\necho 'hccn_tool is busy, please try again.'\nexit 11\n")
    tool.chmod(0o755)
    b = Batch()
    b.add("link.0", "hccn_tool", "-i", "0", "-link", "-g")
    out = run_batch(b, tmp_path, env_path=str(tmp_path))
    assert out["link.0"].exit_status == 11 and out["link.0"].attempts == 5
    assert "busy" in out["link.0"].stdout


def test_tool_found_at_driver_path_when_not_on_path(tmp_path):
    b = Batch()
    b.add("x", "hccn_tool", "-i", "0", "-link", "-g")
    out = run_batch(b, tmp_path)
    # not installed here: the script tried the driver's path, and said so on stderr
    assert out["x"].exit_status == 127
    assert "/usr/local/Ascend/driver/tools/hccn_tool" in out["x"].stderr


def test_cut_off_frame_is_absent_not_passed():
    nonce = "abc"
    text = f"@@PDW {nonce} begin a\nlink status: UP\n@@PDW {nonce} stderr\n"
    assert split_output(text, nonce) == {}


def test_output_lines_that_look_like_frames_of_another_run_are_data(tmp_path):
    b = Batch()
    b.add("spoof", "printf", "@@PDW 000000 end 0 1\\n")
    out = run_batch(b, tmp_path)
    assert out["spoof"].stdout == "@@PDW 000000 end 0 1\n"


@pytest.mark.parametrize("key", ["a b", "a;b", "$(x)", ""])
def test_keys_must_be_simple_tokens(key):
    with pytest.raises(ValueError):
        Batch().add_call(ToolCall(key, ("true",)))
