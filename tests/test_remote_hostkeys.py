"""known_hosts recording rules (pure file operations; the SSH side is in test_remote_sshd.py)."""

from __future__ import annotations

import stat
from pathlib import Path

import asyncssh
import pytest

from pdwizard.remote import SshTarget
from pdwizard.remote.hostkeys import (
    HostKeyConflict,
    host_key_status,
    known_hosts_line,
    load_known_hosts,
    record_host_key,
)


def _key() -> asyncssh.SSHKey:
    return asyncssh.generate_private_key("ssh-ed25519").convert_to_public()


def test_line_uses_brackets_only_off_port_22() -> None:
    key = _key()
    blob = key.export_public_key().decode().split()[1]
    assert known_hosts_line("10.0.0.1", 22, key) == f"10.0.0.1 ssh-ed25519 {blob}"
    assert known_hosts_line("10.0.0.1", 2222, key) == f"[10.0.0.1]:2222 ssh-ed25519 {blob}"


def test_record_creates_private_file_and_never_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "new" / "known_hosts"
    target = SshTarget(name="p1", host="10.0.0.1", port=2222, known_hosts=str(path))
    key = _key()
    line = record_host_key(target, key)
    assert record_host_key(target, key) == line
    assert path.read_text() == line + "\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert host_key_status(load_known_hosts(path), target, key) == "known"


def test_record_appends_after_a_last_line_without_newline(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    other = SshTarget(name="o", host="other", known_hosts=str(path))
    path.write_text(known_hosts_line("other", 22, _key()))
    line = record_host_key(SshTarget(name="p1", host="p1", known_hosts=str(path)), _key())
    assert path.read_text().splitlines()[1] == line
    assert host_key_status(load_known_hosts(path), other, _key()) == "changed"


def test_a_different_recorded_key_is_a_conflict(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    target = SshTarget(name="p1", host="p1", known_hosts=str(path))
    record_host_key(target, _key())
    before = path.read_text()
    with pytest.raises(HostKeyConflict):
        record_host_key(target, _key())
    assert path.read_text() == before


def test_malformed_lines_are_skipped_like_openssh(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    key = _key()
    path.write_text(f"garbage\n@@@ nonsense\n{known_hosts_line('p1', 22, key)}\n")
    target = SshTarget(name="p1", host="p1", known_hosts=str(path))
    assert host_key_status(load_known_hosts(path), target, key) == "known"
    assert host_key_status(load_known_hosts(tmp_path / "absent"), target, key) == "unknown"
