"""Every remote command the wizard ran, with node, exit status and duration (lazygit style)."""

from __future__ import annotations

from textual.widgets import DataTable

from pdwizard.remote.pool import CommandResult

#: Rows kept: the log stays small however long the session runs.
MAX_ROWS = 500


class CommandLog(DataTable):
    """Newest last; the command is shown as it ran on the node (shell-quoted), first line only."""

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.add_columns("node", "exit", "s", "command")

    def add(self, result: CommandResult) -> None:
        command = result.command.splitlines()[0] if result.command else ""
        if result.stdin:
            command += f"  <script of {len(result.stdin.splitlines())} lines on stdin>"
        exit_text = "timeout" if result.timed_out else str(result.exit_status)
        self.add_row(result.node, exit_text, f"{result.duration_s:.2f}", command[:200])
        while self.row_count > MAX_ROWS:
            self.remove_row(next(iter(self.rows)))
        self.move_cursor(row=self.row_count - 1)
