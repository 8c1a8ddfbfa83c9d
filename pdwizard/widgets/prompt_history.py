"""The prompts sent in this session, newest last: verdict, TTFT, the prompt."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from textual.message import Message
from textual.widgets import DataTable

from pdwizard.verify import VerifyOutcome, excerpt
from pdwizard.widgets import prompt_metrics


class PromptHistory(DataTable):
    """One row per outcome (its index in the wizard's history is the row key). Moving the
    cursor onto a row posts `Picked`, so the pane shows that answer again."""

    @dataclass
    class Picked(Message):
        index: int

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        self.add_column("#", key="n")
        self.add_column("result", key="result")
        self.add_column("TTFT", key="ttft")
        self.add_column("prompt", key="prompt")

    def sync(self, outcomes: Sequence[VerifyOutcome]) -> bool:
        """Show `outcomes` (the wizard's history); True when rows were added or replaced."""
        replaced = self.row_count > len(outcomes)       # a new session: its history is not ours
        if replaced:
            self.clear()
        start = self.row_count
        for index in range(start, len(outcomes)):
            o = outcomes[index]
            self.add_row(str(index + 1), prompt_metrics.verdict(o), prompt_metrics.timing(o.result.ttft_s),
                         excerpt(o.verify.prompt, 60), key=str(index))
        return replaced or self.row_count != start

    def pick(self, index: int) -> None:
        """Put the cursor on `index` (Picked follows, as for the operator's own move)."""
        self.move_cursor(row=index)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.post_message(self.Picked(int(event.row_key.value)))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.post_message(self.Picked(int(event.row_key.value)))
