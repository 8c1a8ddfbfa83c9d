"""The one remote layer: every command pdwizard runs on a node goes through here."""

from pdwizard.remote.pool import CommandResult, RemotePool
from pdwizard.remote.quoting import join_argv
from pdwizard.remote.target import SshTarget, parse_jump

__all__ = ["CommandResult", "RemotePool", "SshTarget", "join_argv", "parse_jump"]
