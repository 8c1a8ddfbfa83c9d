"""SshTarget validation and ProxyJump spec parsing."""

from __future__ import annotations

import dataclasses

import pytest

from pdwizard.remote import SshTarget, parse_jump


def test_defaults_and_display() -> None:
    t = SshTarget(name="p1", host="10.0.0.1")
    assert (t.port, t.user, t.identity_file, t.known_hosts, t.trust_on_first_use, t.jump) == (
        22, None, None, None, False, None,
    )
    assert t.connect_timeout == 10.0
    assert t.display == "10.0.0.1:22"
    assert SshTarget(name="v6", host="fe80::1", port=2222, user="ops").display == "ops@[fe80::1]:2222"


def test_frozen_and_hashable() -> None:
    t = SshTarget(name="p1", host="h", jump=SshTarget(name="b", host="bastion"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.port = 23  # type: ignore[misc]
    assert {t: 1}[SshTarget(name="p1", host="h", jump=SshTarget(name="b", host="bastion"))] == 1


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"name": "", "host": "h"}, "name must not be empty"),
        ({"name": "n", "host": ""}, "not a host name"),
        ({"name": "n", "host": "a b"}, "not a host name"),
        ({"name": "n", "host": "h", "port": 0}, "1..65535"),
        ({"name": "n", "host": "h", "port": 70000}, "1..65535"),
        ({"name": "n", "host": "h", "port": "22"}, "1..65535"),
        ({"name": "n", "host": "h", "port": True}, "1..65535"),
        ({"name": "n", "host": "h", "connect_timeout": 0}, "connect_timeout"),
    ],
)
def test_invalid_targets_name_the_node(kwargs: dict, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        SshTarget(**kwargs)


@pytest.mark.parametrize(
    ("spec", "user", "host", "port"),
    [
        ("bastion", None, "bastion", 22),
        ("ops@bastion", "ops", "bastion", 22),
        ("ops@bastion:2222", "ops", "bastion", 2222),
        ("10.0.0.9:22022", None, "10.0.0.9", 22022),
        ("[fe80::1]:2200", None, "fe80::1", 2200),
        ("root@[::1]", "root", "::1", 22),
        ("::1", None, "::1", 22),
        ("  ops@bastion  ", "ops", "bastion", 22),
    ],
)
def test_parse_jump(spec: str, user: str | None, host: str, port: int) -> None:
    t = parse_jump(spec)
    assert (t.user, t.host, t.port, t.jump) == (user, host, port, None)
    assert t.name == spec.strip()


def test_parse_jump_inherits_settings_but_not_user() -> None:
    t = parse_jump("b1", identity_file="~/.ssh/k", known_hosts="/kh", trust_on_first_use=True, connect_timeout=3)
    assert (t.identity_file, t.known_hosts, t.trust_on_first_use, t.connect_timeout, t.user) == (
        "~/.ssh/k", "/kh", True, 3, None,
    )


def test_parse_jump_chain_is_outermost_first() -> None:
    """``a,b`` as in ``ssh -J a,b``: connect to a, from there to b."""
    t = parse_jump("ops@a:2201,b")
    assert (t.name, t.host) == ("b", "b")
    assert t.jump is not None
    assert (t.jump.name, t.jump.user, t.jump.port, t.jump.jump) == ("ops@a:2201", "ops", 2201, None)


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("@host", "empty user"),
        ("ops@", "no host"),
        ("host:", "port ''"),
        ("host:x", "port 'x'"),
        ("host:0", "port '0'"),
        ("host:65536", "port '65536'"),
        ("host:²", "port '²'"),
        ("[::1", "malformed bracketed"),
        ("[::1]x", "malformed bracketed"),
        ("a,,b", "empty hop"),
    ],
)
def test_parse_jump_rejects(spec: str, words: str) -> None:
    with pytest.raises(ValueError, match=words.replace("[", r"\[")):
        parse_jump(spec)


def test_parse_jump_classmethod_takes_a_node_or_its_settings() -> None:
    node = SshTarget(name="p1", host="10.0.0.1", port=2200, user="root", identity_file="/k",
                     known_hosts="/kh", trust_on_first_use=True, connect_timeout=4)
    from_target = SshTarget.parse_jump("bastion", node)
    from_mapping = SshTarget.parse_jump("bastion", {"identity_file": "/k", "known_hosts": "/kh", "user": "root",
                                                    "port": 2200, "trust_on_first_use": True,
                                                    "connect_timeout": 4, "jump": "x"})
    assert from_target == from_mapping == parse_jump(
        "bastion", identity_file="/k", known_hosts="/kh", trust_on_first_use=True, connect_timeout=4
    )
    assert (from_target.user, from_target.port) == (None, 22)
    assert SshTarget.parse_jump("b", {"identity_file": None}) == parse_jump("b")
