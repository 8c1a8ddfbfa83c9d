"""Step 4, Fabric checks: the node checks, each chosen NPU's fabric checks and the ping matrix,
filling in live as each node answers; any cell's verdicts, hint and raw output on select;
re-run everything (r) or only what failed (f). A failed check blocks Next, like the replay,
which launches nothing after one; warnings do not."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, Vertical
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Static, Tab, Tabs

from pdwizard.errors import PdwError
from pdwizard.messages import NodeProgress, ProgressSaid
from pdwizard.report import CheckResult, Status
from pdwizard.screens.progress import PostingProgress
from pdwizard.screens.step import Step
from pdwizard.widgets.check_table import CellGrid, CheckDetails, CheckTable
from pdwizard.widgets.ping_matrix import PingMatrix

_STATUS_STYLE = {Status.OK: "green", Status.WARN: "yellow", Status.FAIL: "bold red"}


class ChecksStep(Step):
    STEP_ID = "checks"
    TITLE = "Fabric checks"
    HELP = "Links, health, TLS and the ping matrix of the chosen NPUs"

    BINDINGS = [
        Binding("f", "rerun_failed", "Re-run failed",
                tooltip="run again only what failed: those NPUs' checks and those pings"),
        Binding("r", "rerun_all", "Re-run all", tooltip="discover the nodes again and run every check"),
        Binding("m", "toggle_view", "Table/matrix",
                tooltip="switch between the check table and the ping matrix (side by side when wide)"),
        Binding("enter", "details", "Details", tooltip="the verdicts, hint and raw output of the cell under the cursor"),
        Binding("escape", "close_details", "Close details", tooltip="close the details pane"),
    ]

    @dataclass
    class ResultsArrived(Message):
        """One node's verdicts, as soon as it answered (posted from the checks' worker)."""

        node: str
        results: list[CheckResult]

    def __init__(self) -> None:
        super().__init__()
        self.running = False
        self.error: PdwError | None = None
        self._run_id = 0
        self._started = 0.0
        self._doing = ""
        self._ticker: Timer | None = None
        self._progress: dict[str, tuple[str, Status | None]] = {}

    def compose(self) -> ComposeResult:
        yield Static(id="checks-status")
        yield Static(id="checks-progress")
        tabs = Tabs(Tab("Checks", id="tab-table"), Tab("Ping matrix", id="tab-matrix"), id="checks-tabs")
        tabs.can_focus = False
        yield tabs
        with Container(id="checks-body"):
            with Vertical(id="checks-left"):
                with Vertical(id="table-pane"):
                    yield CheckTable(id="check-table")
                with Vertical(id="matrix-pane"):
                    yield Static(id="ping-plan")
                    yield PingMatrix(id="ping-matrix")
            yield CheckDetails(id="check-details")

    # ---------------------------------------------------------------- entering, running

    def entered(self) -> None:
        if self.running:
            return
        if self.wizard.fabric_step is None:
            self.start()
        else:
            self._show_state()

    def start(self, rerun: list[CheckResult] | None = None, discover: bool = False) -> None:
        """Run the checks (or re-run `rerun`) in a worker; the table fills in as nodes answer."""
        why = self.wizard.checks_blocker()
        if why is not None:
            self.error = None
            self._status(Text(why, style="yellow"))
            self.blocker = why
            return
        self._run_id += 1
        self._begin(rerun)
        self._run(self._run_id, rerun, discover)

    @work(exclusive=True, group="checks")
    async def _run(self, run_id: int, rerun: list[CheckResult] | None, discover: bool) -> None:
        error: PdwError | None = None
        try:
            await self.wizard.run_checks(PostingProgress(self), on_results=self._heard, rerun=rerun,
                                         discover=discover)
        except PdwError as exc:
            error = exc
        if run_id == self._run_id:
            self._end(error)

    def _heard(self, node: str, results: list[CheckResult]) -> None:
        self.post_message(self.ResultsArrived(node, results))

    def _begin(self, rerun: list[CheckResult] | None) -> None:
        self.running, self.error = True, None
        self.add_class("-running")
        self._started = self.app.clock()  # type: ignore[attr-defined]
        self._progress.clear()
        targets = self.wizard.check_targets()
        self._doing = (f"checking {len(targets)} node(s)" if rerun is None
                       else f"re-running {len(rerun)} failed check(s)")
        table, matrix = self.query_one(CheckTable), self.query_one(PingMatrix)
        if rerun is None:
            table.reset(targets, pending=True)
            matrix.show(None, [])
            self.query_one("#ping-plan", Static).update("planning the pings …")
            self.query_one(CheckDetails).show("", [], CheckDetails.PLACEHOLDER)
        else:
            table.await_again(rerun)
            matrix.await_again(rerun)
        self._show_progress()
        self._ticker = self.set_interval(1.0, self._tick)
        self._tick()
        self.blocker = "checks running"

    def _end(self, error: PdwError | None) -> None:
        self.running, self.error = False, error
        self.remove_class("-running")
        if self._ticker is not None:
            self._ticker.stop()
            self._ticker = None
        if error is not None:
            self.notify(f"{error}" + (f"\n{error.hint}" if error.hint else ""), title="the checks did not finish",
                        severity="error", timeout=10)
        self._show_state(to_failure=True)

    def _tick(self) -> None:
        """The running line: what runs, for how long, how many nodes have answered."""
        elapsed = self.app.clock() - self._started  # type: ignore[attr-defined]
        answered = sum(1 for _, status in self._progress.values() if status is not None)
        self._status(Text(f"{self._doing} … {elapsed:.0f} s · {answered} node(s) answered", style="bold"))

    # ---------------------------------------------------------------- showing

    def _show_state(self, to_failure: bool = False) -> None:
        """Everything from the wizard's state: the last checks' verdicts, plan and blocker."""
        w = self.wizard
        results = w.check_results()
        table, matrix = self.query_one(CheckTable), self.query_one(PingMatrix)
        if not table.row_count:
            table.reset(w.check_targets(), pending=False)
        table.show(results)
        matrix.show(w.ping_plan, results)
        self.query_one("#ping-plan", Static).update(w.ping_plan.describe() if w.ping_plan else "")
        self._summary(results)
        self._show_progress()
        if to_failure and (cell := table.failed_cell()) is not None:
            table.move_cursor(row=cell[0], column=cell[1])
        if (message := self._grid().chosen(False)) is not None:
            self._details(message)

    def _summary(self, results: list[CheckResult]) -> None:
        counts = Counter(r.status for r in results)
        failed = counts[Status.FAIL]
        if self.error is not None:
            self._status(Text(f"{self.error}: r runs the checks again", style="bold red"))
            self.blocker = "the checks did not finish: re-run them (r)"
            return
        if self.wizard.fabric_step is None:
            self._status(Text("no checks yet: r runs them", style="yellow"))
            self.blocker = "the checks have not run: run them (r)"
            return
        text = Text("done: ", style="bold")
        text.append(f"{counts[Status.OK]} ok", style="green")
        text.append(", ")
        text.append(f"{counts[Status.WARN]} warn", style="yellow" if counts[Status.WARN] else "")
        text.append(", ")
        text.append(f"{failed} failed", style="bold red" if failed else "")
        text.append(" · enter: details", style="dim")
        self._status(text)
        self.blocker = f"{failed} failed: fix, re-run (f)" if failed else None

    def _status(self, text: Text) -> None:
        self.query_one("#checks-status", Static).update(text)

    def _show_progress(self) -> None:
        lines = Text()
        for node, (text, status) in self._progress.items():
            if lines:
                lines.append("\n")
            lines.append(f"{node:<10} ", style="bold")
            lines.append(text, style=_STATUS_STYLE.get(status, "") if status else "")
        self.query_one("#checks-progress", Static).update(lines)

    # ---------------------------------------------------------------- messages

    def on_checks_step_results_arrived(self, message: ResultsArrived) -> None:
        message.stop()
        self.query_one(CheckTable).heard(message.results)
        self.query_one(PingMatrix).heard(message.results)

    def on_node_progress(self, message: NodeProgress) -> None:
        message.stop()
        self._progress[message.node] = (message.text, message.status)
        self._show_progress()
        if self.running:
            self._tick()

    def on_progress_said(self, message: ProgressSaid) -> None:
        """The ping plan, said before the pings start: the matrix shows what will run."""
        message.stop()
        self.query_one("#ping-plan", Static).update(message.text)
        self.query_one(PingMatrix).show(self.wizard.ping_plan, [], pending=True)

    @on(CellGrid.CellChosen)
    def _cell_chosen(self, message: CellGrid.CellChosen) -> None:
        """The details follow the cursor of the grid in use; a redraw moving a cursor does not count."""
        message.stop()
        if message.open or message.focused:
            self._details(message)

    def _details(self, message: CellGrid.CellChosen) -> None:
        details = self.query_one(CheckDetails)
        details.show(message.title, message.results, message.empty)
        if message.open:
            details.add_class("-open")
            self.refresh_bindings()

    def _grid(self) -> CheckTable | PingMatrix:
        """The grid in use: the focused one, else the one the narrow layout shows."""
        focused = self.screen.focused
        if isinstance(focused, (CheckTable, PingMatrix)):
            return focused
        matrix = self.query_one("#checks-body").has_class("-matrix")
        return self.query_one(PingMatrix) if matrix else self.query_one(CheckTable)

    @on(Tabs.TabActivated, "#checks-tabs")
    def _tab(self, event: Tabs.TabActivated) -> None:
        event.stop()
        matrix = event.tab.id == "tab-matrix"
        self.query_one("#checks-body").set_class(matrix, "-matrix")
        shown, hidden = (PingMatrix, CheckTable) if matrix else (CheckTable, PingMatrix)
        if isinstance(self.screen.focused, hidden):
            self.query_one(shown).focus()

    # ---------------------------------------------------------------- actions

    def action_rerun_failed(self) -> None:
        if self.running:
            self.notify("the checks are running", severity="warning")
            return
        failed = self.wizard.failed_checks()
        if not failed:
            self.notify("nothing failed: r runs every check again")
            return
        self.start(rerun=failed)

    def action_rerun_all(self) -> None:
        if self.running:
            self.notify("the checks are running", severity="warning")
            return
        self.start(discover=True)

    def action_toggle_view(self) -> None:
        tabs = self.query_one(Tabs)
        tabs.active = "tab-table" if tabs.active == "tab-matrix" else "tab-matrix"

    def action_details(self) -> None:
        message = self._grid().chosen(True)
        if message is not None:
            self._details(message)

    def action_close_details(self) -> None:
        self.query_one(CheckDetails).remove_class("-open")
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Escape only while the details pane is open; m only where table and matrix are tabs."""
        if action == "close_details":
            return self.query_one(CheckDetails).has_class("-open") and not self._wide()
        if action == "toggle_view":
            return not self._wide()
        return True

    def _wide(self) -> bool:
        return self.screen.has_class("-wide")

    def on_resize(self) -> None:
        self.refresh_bindings()
