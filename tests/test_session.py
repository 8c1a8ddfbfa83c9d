"""Session files: load errors naming the key, secrets refused, atomic save, exact round trip."""

from __future__ import annotations

import copy
import os
import stat
import tomllib
from pathlib import Path

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pdwizard import fsutil
from pdwizard.errors import EXIT_INPUT, InputError, PdwError
from pdwizard.fsutil import atomic_write_text
from pdwizard.models import DEFAULT_PROFILE, KNOWN_CHECKS, Instance, SshDefaults, Verify, is_secret_key
from pdwizard.profiles import available_profiles, load_profile
from pdwizard.session import (
    SessionError,
    check_devices_exist,
    load_session,
    parse_session,
    save_session,
    session_to_toml,
    validate_session,
)

REPO = Path(__file__).resolve().parents[1]
QWEN = REPO / "examples" / "qwen3-1p2d.toml"
SIM = REPO / "examples" / "sim-1p2d-session.toml"
SIM_SPEC = REPO / "examples" / "sim-1p2d.toml"
DEMO = REPO / "pdwizard" / "assets" / "demo-session.toml"
SHIPPED = [QWEN, SIM, DEMO]


def base() -> dict:
    return {
        "schema_version": 1,
        "name": "t",
        "nodes": [
            {"name": "p1", "host": "192.0.0.1"},
            {"name": "d1", "host": "192.0.0.2"},
            {"name": "d2", "host": "192.0.0.3"},
        ],
        "instances": [
            {"role": "prefill", "node": "p1", "devices": [0, 1], "port": 13700},
            {"role": "decode", "node": "d1", "devices": [6, 7], "port": 13700},
            {"role": "decode", "node": "d2", "devices": [6, 7], "port": 13700},
        ],
        "model": {"path": "/model/Qwen3-30B-A3B"},
    }


def write(tmp_path: Path, data: dict | str, name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else tomli_w.dumps(data), encoding="utf-8")
    return path


def load_err(tmp_path: Path, data: dict | str) -> SessionError:
    path = write(tmp_path, data)
    with pytest.raises(SessionError) as exc:
        load_session(path)
    err = exc.value
    assert isinstance(err, InputError) and err.exit_code == EXIT_INPUT
    assert str(path) in str(err)
    return err


# ---- shipped examples -----------------------------------------------------------------------


def test_qwen_example_is_the_guides_1p2d():
    s = load_session(QWEN)
    assert [(n.name, n.host, s.node_ip(n), n.nic) for n in s.nodes] == [
        ("p1", "192.0.0.1", "192.0.0.1", "eth0"),
        ("d1", "192.0.0.2", "192.0.0.2", "eth0"),
        ("d2", "192.0.0.3", "192.0.0.3", "eth0"),
    ]
    assert [(i.role, i.node, i.devices, i.port) for i in s.instances] == [
        ("prefill", "p1", [0, 1], 13700), ("decode", "d1", [6, 7], 13700), ("decode", "d2", [6, 7], 13700)]
    assert (s.model.path, s.model.served_model_name) == ("/model/Qwen3-30B-A3B", "qwen3-moe")
    assert [(v.prompt, v.max_tokens) for v in s.verify] == [("Who are you?", 100)]
    assert s.ssh.user == "root" and s.ssh.port == 22 and s.ssh.trust_on_first_use is False


def test_sim_session_matches_the_sim_spec_and_the_guide():
    s = load_session(SIM)
    spec = tomllib.loads(SIM_SPEC.read_text())["node"]
    assert [(n.name, n.host, s.ssh_target_args(n)["port"], n.ip, n.nic) for n in s.nodes] == [
        (x["name"], x["host"], x["port"], x["ip"], x["nic"]) for x in spec]
    guide = load_session(QWEN)
    assert s.instances == guide.instances and s.model == guide.model and s.verify == guide.verify
    # the simulator provides the key and known_hosts: the file must not pin them
    assert s.ssh.identity_file is None and s.ssh.known_hosts is None


def test_demo_session_is_the_sim_session():
    assert load_session(DEMO) == load_session(SIM)


def test_demo_session_matches_the_demo_cluster():
    cluster = REPO / "pdwizard" / "assets" / "demo-cluster.toml"
    if not cluster.exists():
        pytest.skip("no built-in demo cluster spec yet")
    s = load_session(DEMO)
    spec = tomllib.loads(cluster.read_text())["node"]
    assert [(n.name, n.host, s.ssh_target_args(n)["port"], n.ip) for n in s.nodes] == [
        (x["name"], x["host"], x["port"], x["ip"]) for x in spec]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_examples_round_trip(path, tmp_path):
    s = load_session(path)
    out = save_session(s, tmp_path / "out.toml")
    again = load_session(out)
    assert again == s
    assert again.model_dump(exclude_unset=True) == s.model_dump(exclude_unset=True)
    text = session_to_toml(s)
    assert out.read_text() == text
    assert session_to_toml(parse_session(text)) == text  # idempotent writer


# ---- validation rules, each naming its key ------------------------------------------------------


def _set(path: str, value):
    """A mutator for base(): set a dotted path (list indices as ints)."""
    def mutate(d):
        parts = path.split(".")
        for p in parts[:-1]:
            d = d[int(p)] if p.isdigit() else d.setdefault(p, {})
        last = parts[-1]
        if value is _DEL:
            del d[int(last) if last.isdigit() else last]
        elif last.isdigit():
            d[int(last)] = value
        else:
            d[last] = value
    return mutate


_DEL = object()


@pytest.mark.parametrize("mutate, key, fragment", [
    (_set("nodes.2.name", "p1"), "nodes[2].name", "already used by nodes[0]"),
    (_set("instances.0.node", "p9"), "instances[0].node", "known nodes: p1, d1, d2"),
    (_set("instances.0.node", "d11"), "instances[0].node", "did you mean 'd1'"),
    (_set("instances.2.node", "d1"), "instances[2].devices", "already used by instances[1] (decode d1:13700)"),
    (_set("instances.2", {"role": "decode", "node": "d1", "devices": [5], "port": 13700}),
     "instances[2].port", "port 13700 on node d1 is already used by instances[1]"),
    (_set("schema_version", 2), "schema_version", "reads version(s) 1"),
    (_set("schema_version", _DEL), "schema_version", "required key is missing"),
    (_set("instances.0.role", "decode"), "instances", "PD disaggregation needs at least one prefill"),
    (_set("instances", [{"role": "prefill", "node": "p1", "devices": [0], "port": 1}]), "instances",
     "no decode instance"),
    (_set("model.path", _DEL), "model.path", "required key is missing"),
    (_set("model", _DEL), "model", "required table [model] is missing"),
    (_set("model.path", " "), "model.path", "non-empty path"),
    (_set("instances.1.devices", []), "instances[1].devices", "at least one NPU"),
    (_set("instances.1.devices", [6, 6]), "instances[1].devices", "more than once"),
    (_set("instances.1.devices", [6, 16]), "instances[1].devices", "0..15"),
    (_set("instances.1.port", 0), "instances[1].port", "1..65535"),
    (_set("instances.1.port", 65536), "instances[1].port", "1..65535"),
    (_set("instances.1.port", "13700"), "instances[1].port", "expected an integer"),
    (_set("instances.1.role", "decoder"), "instances[1].role", "did you mean 'decode'"),
    (_set("nodes.0.name", "p 1"), "nodes[0].name", "not a valid name"),
    (_set("nodes.0.ip", "192.0.0.256"), "nodes[0].ip", "not an IPv4 address"),
    (_set("nodes.0.host", "p1.example.com"), "nodes[0].ip", "need the node's IPv4 address"),
    (_set("nodes.1.ip", "192.0.0.1"), "nodes[1].ip", "already the IP of nodes[0] (p1)"),
    (_set("nodes.0.host", _DEL), "nodes[0].host", "required key is missing"),
    (_set("nodes", {"name": "p1", "host": "192.0.0.1"}), "nodes", "[[nodes]]"),
    (_set("model", [{"path": "/m"}]), "model", "single brackets"),
    (_set("ssh.port", 0), "ssh.port", "1..65535"),
    (_set("ssh.jump", "a b"), "ssh.jump", "[user@]host[:port]"),
    (_set("nodes.1.jump", "x y"), "nodes[1].jump", "[user@]host[:port]"),
    (_set("ssh.connect_timeout", 0), "ssh.connect_timeout", "positive"),
    (_set("ssh.trust_on_first_use", "yes"), "ssh.trust_on_first_use", "true or false"),
    (_set("checks.ping", "ful"), "checks.ping", "did you mean 'full'"),
    (_set("checks.ping_budget", 0), "checks.ping_budget", "at least 1"),
    (_set("checks.skip", ["lldp", "tsl"]), "checks.skip[1]", "did you mean 'tls'"),
    (_set("verify", [{"prompt": "hi", "max_tokens": 0}]), "verify[0].max_tokens", "at least 1"),
    (_set("verify", [{"max_tokens": 5}]), "verify[0].prompt", "required key is missing"),
    (_set("stack.container", "a/b"), "stack.container", "docker"),
    (_set("proxy.node", "p7"), "proxy.node", "no node named 'p7'"),
    (_set("proxy.port", 13700), "proxy.port", "already used by instances[0]"),
])
def test_rule_names_the_key(tmp_path, mutate, key, fragment):
    data = base()
    mutate(data)
    err = load_err(tmp_path, data)
    assert key in err.keys, (key, err.keys, str(err))
    assert f": {key}: " in str(err)
    assert fragment in str(err)
    assert "fix:" in str(err)


def test_valid_base_loads(tmp_path):
    # the parametrised cases above only mean something if the base itself is valid
    s = load_session(write(tmp_path, base()))
    assert s.model.served_model_name == "Qwen3-30B-A3B"


def test_several_errors_reported_one_per_line(tmp_path):
    data = base()
    data["instances"][0]["port"] = 0
    data["nodes"][1]["ip"] = "nope"
    data["ssh"] = {"prot": 22}
    err = load_err(tmp_path, data)
    assert err.keys == ["ssh.prot", "nodes[1].ip", "instances[0].port"]
    lines = [ln for ln in str(err).splitlines() if not ln.startswith("  fix:")]
    assert len(lines) == 3 and all(ln.startswith(str(tmp_path)) for ln in lines)


def test_unknown_top_level_key_suggests_and_lists(tmp_path):
    data = base()
    data["node"] = [{"name": "p2", "host": "10.0.0.1"}]  # the sim spec spelling
    err = load_err(tmp_path, data)
    assert err.keys == ["node"]
    assert "unknown key 'node' (did you mean 'nodes'?)" in str(err)
    assert "valid keys at the top level: schema_version, name, ssh, nodes, instances, model" in str(err)


def test_unknown_nested_key_suggests_and_lists(tmp_path):
    data = base()
    data["nodes"][2]["hots"] = "x"
    data["ssh"] = {"identity": "~/.ssh/id_rsa"}
    data["checks"] = {"pingbudget": 10}
    err = load_err(tmp_path, data)
    text = str(err)
    assert "nodes[2].hots: unknown key 'hots' (did you mean 'host'?)" in text
    assert "name, host, ip, nic, user, port, identity_file, jump" in text
    assert "ssh.identity: unknown key 'identity' (did you mean 'identity_file'?)" in text
    assert "checks.pingbudget: unknown key 'pingbudget' (did you mean 'ping_budget'?)" in text


def test_unknown_key_without_close_match_still_lists_valid_keys(tmp_path):
    data = base()
    data["model"]["zzzz"] = 1
    err = load_err(tmp_path, data)
    assert "model.zzzz: unknown key 'zzzz'\n" in str(err)
    assert "valid keys in [model]: path, served_name" in str(err)


def test_toml_syntax_error_names_file_and_line(tmp_path):
    path = write(tmp_path, 'schema_version = 1\nname = "x"\n[ssh]\nuser = root\n')
    with pytest.raises(SessionError) as exc:
        load_session(path)
    assert exc.value.exit_code == EXIT_INPUT
    assert str(exc.value).startswith(f"{path}: line 4, column 8: invalid TOML")


def test_missing_file_is_input_error(tmp_path):
    with pytest.raises(SessionError) as exc:
        load_session(tmp_path / "nope.toml")
    assert exc.value.exit_code == EXIT_INPUT and "no such file" in str(exc.value)


def test_not_utf8_is_input_error(tmp_path):
    path = tmp_path / "s.toml"
    path.write_bytes(b'schema_version = 1\nname = "\xff"\n')
    with pytest.raises(SessionError, match="line 2"):
        load_session(path)


# ---- secrets ------------------------------------------------------------------------------------

SECRET = "Zq9-SECRET-VALUE-77"


@pytest.mark.parametrize("where, key", [
    (lambda d: d, "password"),
    (lambda d: d.setdefault("ssh", {}), "passphrase"),
    (lambda d: d["nodes"][1], "ssh_password"),
    (lambda d: d["instances"][2], "token"),
    (lambda d: d["model"], "HF_TOKEN"),
    (lambda d: d.setdefault("checks", {}), "api_key"),
    (lambda d: d.setdefault("stack", {}), "Registry-Secret"),
    (lambda d: d.setdefault("verify", [{"prompt": "hi"}])[0], "apikey"),
    (lambda d: d.setdefault("extra", {}).setdefault("deeper", {}), "secret"),
    (lambda d: d.setdefault("list", [[{"ok": 1}, {}]])[0][1], "x_token"),
])
def test_secret_refused_at_any_depth_without_echo(tmp_path, where, key):
    data = base()
    where(data)[key] = SECRET
    err = load_err(tmp_path, data)
    secret_problems = [p for p in err.problems if "secret" in p.message]
    assert secret_problems, str(err)
    assert any(p.key.endswith(key) for p in secret_problems)
    assert "SSH agent" in str(err) and "key file" in str(err)
    assert SECRET not in str(err)
    assert SECRET not in repr(err.args)


def test_secret_key_path_is_precise(tmp_path):
    data = base()
    data["nodes"][1]["password"] = SECRET
    data["list"] = [[{"ok": 1}, {"db_password": SECRET}]]
    err = load_err(tmp_path, data)
    assert "nodes[1].password" in err.keys and "list[0][1].db_password" in err.keys


def test_secret_refused_even_when_toml_is_broken(tmp_path):
    err = load_err(tmp_path, f'schema_version = 1\nname = "x"\n[ssh]\npassword = {SECRET}\n')
    assert "invalid TOML" in str(err)
    assert any(p.key == "line 4" and "secret" in p.message for p in err.problems)
    assert SECRET not in str(err)


def test_secret_in_table_header_or_dotted_key(tmp_path):
    text = tomli_w.dumps(base()) + f'\n[ssh.password]\nvalue = "{SECRET}"\n'
    err = load_err(tmp_path, text)
    assert "ssh.password" in err.keys and SECRET not in str(err)
    err = load_err(tmp_path, tomli_w.dumps(base()) + f'\n[model.x]\nauth.token = "{SECRET}"\n')
    assert "model.x.auth.token" in err.keys and SECRET not in str(err)


def test_validate_session_refuses_secrets_from_the_tui(tmp_path):
    data = base()
    data["ssh"] = {"password": SECRET}
    with pytest.raises(SessionError) as exc:
        validate_session(data)
    assert exc.value.keys == ["ssh.password"] and SECRET not in str(exc.value)


def test_save_cannot_write_a_secret(tmp_path):
    s = validate_session(base())
    with pytest.raises(ValueError):
        s.ssh.password = SECRET  # type: ignore[attr-defined]
    # a jump with user:password@ cannot get in by assignment either: save re-validates
    s.ssh = SshDefaults.model_construct(jump=f"ops:{SECRET}@bastion")
    path = tmp_path / "s.toml"
    with pytest.raises(SessionError) as exc:
        save_session(s, path)
    assert "password" in str(exc.value) and SECRET not in str(exc.value)
    assert not path.exists()


# ---- check_devices_exist ------------------------------------------------------------------------


def test_check_devices_exist_names_instance_node_and_ids():
    s = validate_session(base())
    problems = check_devices_exist(s, {"p1": {0, 1, 2, 3}, "d1": {0, 1, 2, 3}, "d2": set()}, source="s.toml")
    assert [p.key for p in problems] == ["instances[1].devices", "instances[2].devices"]
    assert str(problems[0]).startswith("s.toml: instances[1].devices: node d1 has no NPU 6, 7 (it has: 0, 1, 2, 3)")
    assert "node d2" in str(problems[1]) and "has: none" in str(problems[1])
    assert all(isinstance(p, InputError) and p.hint for p in problems)


def test_check_devices_exist_passes_and_skips_unknown_nodes():
    s = validate_session(base())
    assert check_devices_exist(s, {"p1": set(range(8)), "d1": set(range(8)), "d2": set(range(8))}) == []
    assert check_devices_exist(s, {}) == []


# ---- saving: content and order ------------------------------------------------------------------


def test_save_writes_only_set_keys_in_order(tmp_path):
    s = load_session(SIM)  # no [checks], [proxy], [stack]; [ssh] only user
    text = session_to_toml(s)
    for absent in ("[checks]", "[proxy]", "[stack]", "trust_on_first_use", "served_name = \"Qwen",
                   "connect_timeout", "known_hosts", "expect"):
        assert absent not in text
    full = session_to_toml(load_session(QWEN))
    headers = [ln for ln in full.splitlines() if ln.startswith("[")]
    order = ["[ssh]", "[[nodes]]", "[[instances]]", "[model]", "[proxy]", "[checks]", "[[verify]]"]
    assert list(dict.fromkeys(headers)) == order
    assert full.index("schema_version = 1") < full.index('name = "qwen3-1p2d"') < full.index("[ssh]")
    assert "devices = [0, 1]" in full


def test_changes_after_load_are_saved(tmp_path):
    s = load_session(SIM)
    s.ssh.connect_timeout = 3.5  # [ssh] was set: easy case
    s.checks.ping = "full"  # [checks] was absent: the default object was mutated in place
    s.verify.append(Verify(prompt="Say hi", expect="hi"))
    s.stack.container = "vllm"
    again = parse_session(session_to_toml(s))
    assert again.ssh.connect_timeout == 3.5
    assert again.checks.ping == "full"
    assert [v.prompt for v in again.verify] == ["Who are you?", "Say hi"]
    assert again.stack.container == "vllm"


def test_save_refuses_invalid_session_and_keeps_old_file(tmp_path):
    path = tmp_path / "s.toml"
    s = validate_session(base())
    save_session(s, path)
    before = path.read_bytes()
    s.instances.append(Instance(role="decode", node="d1", devices=[6], port=1))  # device 6 twice on d1
    with pytest.raises(SessionError) as exc:
        save_session(s, path)
    assert "instances[3].devices" in exc.value.keys
    assert path.read_bytes() == before


def test_save_unwritable_directory_is_pdw_error(tmp_path):
    with pytest.raises(PdwError, match="cannot write"):
        save_session(validate_session(base()), tmp_path / "missing-dir" / "s.toml")


# ---- atomic write -------------------------------------------------------------------------------


def _old_file(tmp_path: Path) -> Path:
    path = tmp_path / "s.toml"
    path.write_text("old content\n")
    return path


def _assert_untouched(path: Path):
    assert path.read_text() == "old content\n"
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temp file left


def test_crash_at_replace_keeps_old_file(tmp_path, monkeypatch):
    path = _old_file(tmp_path)

    def boom(src, dst):
        assert Path(src).read_text() == "new content\n"  # the temp file was complete
        raise OSError(5, "simulated crash")

    monkeypatch.setattr(fsutil.os, "replace", boom)
    with pytest.raises(OSError, match="simulated crash"):
        atomic_write_text(path, "new content\n")
    _assert_untouched(path)


def test_crash_mid_write_keeps_old_file(tmp_path, monkeypatch):
    path = _old_file(tmp_path)
    real_write = os.write

    def half_then_fail(fd, data):
        real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fsutil.os, "write", half_then_fail)
    with pytest.raises(OSError, match="No space"):
        atomic_write_text(path, "new content that is longer\n")
    monkeypatch.undo()
    _assert_untouched(path)


def test_interrupt_at_fsync_keeps_old_file(tmp_path, monkeypatch):
    path = _old_file(tmp_path)

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(fsutil.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(path, "new content\n")
    monkeypatch.undo()
    _assert_untouched(path)


def test_save_session_crash_keeps_old_session(tmp_path, monkeypatch):
    path = tmp_path / "s.toml"
    save_session(validate_session(base()), path)
    before = path.read_bytes()
    changed = validate_session({**base(), "name": "changed"})
    monkeypatch.setattr(fsutil.os, "replace", lambda s, d: (_ for _ in ()).throw(OSError(5, "crash")))
    with pytest.raises(PdwError):
        save_session(changed, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.toml"]


def test_atomic_write_fsyncs_file_and_directory(tmp_path, monkeypatch):
    synced: list[bool] = []
    real = os.fsync

    def spy(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real(fd)

    monkeypatch.setattr(fsutil.os, "fsync", spy)
    atomic_write_text(tmp_path / "f", "x")
    assert synced == [False, True]


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_session_file_mode_0600(tmp_path, umask):
    old = os.umask(umask)
    try:
        path = tmp_path / "s.toml"
        path.write_text("old")
        os.chmod(path, 0o644)
        save_session(validate_session(base()), path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        other = atomic_write_text(tmp_path / "report.json", "{}", mode=0o644)
        assert stat.S_IMODE(other.stat().st_mode) == 0o644
    finally:
        os.umask(old)


def test_atomic_write_through_symlink_keeps_link(tmp_path):
    real = tmp_path / "real.toml"
    real.write_text("old")
    link = tmp_path / "link.toml"
    link.symlink_to(real)
    atomic_write_text(link, "new")
    assert link.is_symlink() and real.read_text() == "new"


# ---- round-trip property ------------------------------------------------------------------------

_name = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,8}", fullmatch=True)
_hostname = st.from_regex(r"[a-z][a-z0-9-]{0,8}(\.[a-z][a-z0-9-]{0,5}){0,2}", fullmatch=True)
_ipv4 = st.ip_addresses(v=4).map(str)
_path = st.from_regex(r"~?/[A-Za-z0-9._ -]{0,6}(/[A-Za-z0-9._-]{1,8}){1,2}", fullmatch=True)
_text = st.text(min_size=1, max_size=30).filter(lambda t: t.strip() and "\x00" not in t)
_port = st.integers(1, 65535)
_timeout = st.floats(min_value=0.001, max_value=1e6, allow_nan=False, allow_infinity=False)
_jump = st.builds(lambda u, h, p: (f"{u}@" if u else "") + h + (f":{p}" if p else ""),
                  st.one_of(st.none(), _name), _hostname, st.one_of(st.none(), _port))
_json_key = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True).filter(lambda k: not is_secret_key(k))
_json_scalar = st.one_of(st.booleans(), st.integers(-(2**63), 2**63 - 1), _text,
                         st.floats(allow_nan=False, allow_infinity=False))
_json_table = st.dictionaries(_json_key, st.recursive(
    st.one_of(_json_scalar, st.lists(_json_scalar, max_size=3)),
    lambda inner: st.dictionaries(_json_key, inner, max_size=3), max_leaves=6), max_size=3)
_extra_args = st.lists(st.from_regex(r"--?[a-z][a-z0-9-]{0,10}(=[A-Za-z0-9 ./]{0,6}[A-Za-z0-9])?", fullmatch=True),
                       max_size=3)


def _maybe(draw, d: dict, key: str, strategy) -> None:
    if draw(st.booleans()):
        d[key] = draw(strategy)


@st.composite
def session_dicts(draw) -> dict:
    n = draw(st.integers(1, 4))
    names = draw(st.lists(_name, min_size=n, max_size=n, unique=True))
    ips = draw(st.lists(_ipv4, min_size=n, max_size=n, unique=True))
    nodes = []
    for name, ip in zip(names, ips):
        node: dict = {"name": name}
        if draw(st.booleans()):
            node["host"] = ip
            _maybe(draw, node, "ip", st.just(ip))
        else:
            node["host"] = draw(_hostname)
            node["ip"] = ip
        _maybe(draw, node, "nic", st.from_regex(r"[a-z][a-z0-9.]{0,14}", fullmatch=True))
        _maybe(draw, node, "user", _name)
        _maybe(draw, node, "port", _port)
        _maybe(draw, node, "identity_file", _path)
        _maybe(draw, node, "jump", st.one_of(st.just(""), _jump))
        nodes.append(node)

    free = {name: list(range(16)) for name in names}
    ports: set[tuple[str, int]] = set()
    roles = draw(st.permutations(["prefill", "decode", *draw(st.lists(st.sampled_from(["prefill", "decode"]),
                                                                            max_size=3))]))
    instances = []
    for role in roles:
        node = draw(st.sampled_from(names))
        k = draw(st.integers(1, min(3, len(free[node]))))
        devices = draw(st.permutations(free[node]))[:k]
        free[node] = [d for d in free[node] if d not in devices]
        # never 8080, the default proxy port, so a session without [proxy] stays valid
        port = draw(_port.filter(lambda p, node=node: p != 8080 and (node, p) not in ports))
        ports.add((node, port))
        inst = {"role": role, "node": node, "devices": devices, "port": port}
        _maybe(draw, inst, "tensor_parallel_size", st.just(len(devices)))
        _maybe(draw, inst, "enforce_eager", st.booleans())
        _maybe(draw, inst, "kv_port", st.one_of(_port, _port.map(str)))
        _maybe(draw, inst, "engine_id", st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,10}", fullmatch=True))
        _maybe(draw, inst, "additional_config", _json_table)
        _maybe(draw, inst, "extra_args", _extra_args)
        instances.append(inst)

    data: dict = {"schema_version": 1, "name": draw(_name), "nodes": nodes, "instances": instances}
    if draw(st.booleans()):
        ssh: dict = {}
        _maybe(draw, ssh, "user", _name)
        _maybe(draw, ssh, "port", _port)
        _maybe(draw, ssh, "identity_file", _path)
        _maybe(draw, ssh, "known_hosts", _path)
        _maybe(draw, ssh, "trust_on_first_use", st.booleans())
        _maybe(draw, ssh, "jump", _jump)
        _maybe(draw, ssh, "connect_timeout", _timeout)
        _maybe(draw, ssh, "command_timeout", _timeout)
        data["ssh"] = ssh
    model = {"path": draw(_path)}
    _maybe(draw, model, "served_name", st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,10}", fullmatch=True))
    _maybe(draw, model, "max_model_len", st.integers(1, 2**20))
    _maybe(draw, model, "max_num_batched_tokens", st.integers(1, 2**20))
    _maybe(draw, model, "gpu_memory_utilization", st.floats(0.0, 1.0, exclude_min=True))
    _maybe(draw, model, "seed", st.integers(0, 2**32))
    _maybe(draw, model, "trust_remote_code", st.booleans())
    _maybe(draw, model, "enable_expert_parallel", st.booleans())
    _maybe(draw, model, "enable_prefix_caching", st.booleans())
    _maybe(draw, model, "extra_args", _extra_args)
    _maybe(draw, model, "additional_config", _json_table)
    data["model"] = model
    if draw(st.booleans()):
        proxy: dict = {}
        first_prefill = next(i["node"] for i in instances if i["role"] == "prefill")
        _maybe(draw, proxy, "node", st.sampled_from(names))
        where = proxy.get("node", first_prefill)
        _maybe(draw, proxy, "port", _port.filter(lambda p: (where, p) not in ports))
        _maybe(draw, proxy, "kind", st.sampled_from(["builtin", "upstream"]))
        _maybe(draw, proxy, "script", _path)
        data["proxy"] = proxy
    if draw(st.booleans()):
        data["stack"] = {}
        _maybe(draw, data["stack"], "container", _name)
        _maybe(draw, data["stack"], "profile", st.sampled_from(available_profiles()))
        profile = load_profile(data["stack"].get("profile", DEFAULT_PROFILE))
        _maybe(draw, data["stack"], "connector", st.sampled_from(list(profile.connectors)))
        _maybe(draw, data["stack"], "ranktable_path", _path.filter(lambda p: not p.endswith("/"))
               .map(lambda p: p if p.startswith(("/", "~/")) else "/" + p.lstrip("~")))
        for key in ("prefill_startup_timeout_s", "decode_startup_timeout_s", "proxy_startup_timeout_s",
                    "stop_grace_s"):
            _maybe(draw, data["stack"], key, _timeout)
    if draw(st.booleans()):
        checks: dict = {}
        _maybe(draw, checks, "ping", st.sampled_from(["auto", "full", "off"]))
        _maybe(draw, checks, "ping_budget", st.integers(1, 10_000))
        _maybe(draw, checks, "skip", st.lists(st.sampled_from(KNOWN_CHECKS), max_size=4))
        data["checks"] = checks
    if draw(st.booleans()):
        verify = []
        for _ in range(draw(st.integers(0, 3))):
            v: dict = {"prompt": draw(_text)}
            _maybe(draw, v, "max_tokens", st.integers(1, 100_000))
            _maybe(draw, v, "expect", _text)
            _maybe(draw, v, "chat", st.booleans())
            verify.append(v)
        data["verify"] = verify
    return data


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=session_dicts())
def test_round_trip_property(data, tmp_path_factory):
    s = validate_session(copy.deepcopy(data))
    path = tmp_path_factory.mktemp("rt") / "s.toml"
    save_session(s, path)
    again = load_session(path)
    assert again == s
    # exactly the keys that were set come back set
    assert again.model_dump(exclude_unset=True) == s.model_dump(exclude_unset=True) == _as_loaded(data)
    text = path.read_text()
    assert session_to_toml(parse_session(text)) == text


def _as_loaded(data: dict) -> dict:
    """The input dict as pydantic dumps it (floats for the float fields)."""
    out = copy.deepcopy(data)
    for key in ("connect_timeout", "command_timeout"):
        if key in out.get("ssh", {}):
            out["ssh"][key] = float(out["ssh"][key])
    for key in ("prefill_startup_timeout_s", "decode_startup_timeout_s", "proxy_startup_timeout_s", "stop_grace_s"):
        if key in out.get("stack", {}):
            out["stack"][key] = float(out["stack"][key])
    return out


def test_round_trip_property_covers_the_schema():
    # guard: the generator must produce every field of the schema, or the property proves little
    from hypothesis import Phase, find

    from pdwizard.models import iter_model_fields

    generated: set[str] = set()

    def collect(d: dict, prefix: str = "") -> None:
        for k, v in d.items():
            generated.add(prefix + k)
            if isinstance(v, dict):
                collect(v, prefix + k + ".")
            elif isinstance(v, list) and v and isinstance(v[0], dict):
                for x in v:
                    collect(x, prefix + k + ".")

    wanted = set(iter_model_fields())

    def covered(d: dict) -> bool:
        collect(d)
        return wanted <= generated

    find(session_dicts(), covered,
         settings=settings(max_examples=1000, deadline=None, database=None, phases=[Phase.generate]))
    assert wanted <= generated
