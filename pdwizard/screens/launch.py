"""Step 7, Launch: start the deployment, watch every process come up and its log, stop all or
restart one.

The step only shows and asks. The core launches (`Wizard.launch`), follows the logs
(`Wizard.log_tail`), stops (`Wizard.stop`) and restarts one process (`Wizard.restart`), each
in a worker; `deploy.board.ProcessBoard` turns what a launch reports into the rows of the
process table. The launch's callbacks arrive as messages, in order, so the rows never go back
in time; log lines go straight into each pane's bounded queue (`LogView.push`), which its own
timer drains: a chatty deployment never floods the message queue.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Button, Input, Label, TabbedContent, TabPane

from pdwizard import deploy
from pdwizard.deploy.board import ProcessBoard
from pdwizard.deploy.restart import RestartResult
from pdwizard.errors import PdwError
from pdwizard.screens.step import Step
from pdwizard.widgets.diagnosis import DiagnosisView
from pdwizard.widgets.log_view import LogView
from pdwizard.widgets.process_table import ProcessTable, elapsed_text

EVENTS_PANE = "pane-events"


def pane_id(name: str) -> str:
    """The log pane of process `name` (process names may hold dots; widget ids may not)."""
    return "pane-" + name.replace(".", "_")


def failure_reason(failure: deploy.Failure) -> str:
    """Short: who failed and the first diagnosis, else the reason."""
    who = failure.process or f"node {failure.node}"
    return f"{who} {failure.diagnoses[0].id}" if failure.diagnoses else f"{who}: {failure.reason}"


def quiet_collector() -> None:
    """Keep the garbage collector's full passes short while logs pour in.

    A log flood allocates fast, so the collector runs its full (generation 2) pass often, and
    each pass walks every object the session holds (about 200,000: Textual's, the wizard's
    results): 100-300 ms on a busy 2-CPU machine, during which no key is answered
    (bench/tui_logs.py). What exists when the logs start lives for the session: collect once,
    then freeze it (gc.freeze: frozen objects are still freed by reference counting, only the
    cycle collector skips them), so the full passes only walk what came after."""
    gc.collect()
    gc.freeze()


class _Observer(deploy.LaunchObserver):
    """The core's launch callbacks (called inside the worker) as messages to the step."""

    def __init__(self, step: LaunchStep) -> None:
        self.step = step

    def readiness(self, line: str, elapsed_s: float) -> None:
        self.step.post_message(LaunchStep.Readiness(line))

    def event(self, text: str) -> None:
        self.step.post_message(LaunchStep.Event(text))

    def failure(self, failure: deploy.Failure) -> None:
        self.step.post_message(LaunchStep.Failed(failure))


class LaunchStep(Step):
    STEP_ID = "launch"
    TITLE = "Launch"
    HELP = "Start prefill, decode and the proxy; watch their logs"

    BINDINGS = [
        Binding("l", "launch", "Launch", tooltip="launch the deployment of the preview and wait for each process"),
        Binding("s", "stop_all", "Stop all", tooltip="stop every process of the session on every node"),
        Binding("R", "restart", "Restart", tooltip="restart the process highlighted in the table (the others run on)"),
        Binding("p", "pause", "Pause", tooltip="pause or resume following the log shown (+N counts new lines)"),
        Binding("slash", "search", "Filter", tooltip="filter the log shown: only lines containing the text"),
        Binding("escape", "clear_search", "Clear filter", show=False, tooltip="clear the log filter"),
    ]

    #: What runs now: "launching", "stopping", "restarting <name>", or None.
    phase: reactive[str | None] = reactive(None, init=False)

    @dataclass
    class Readiness(Message):
        """The launch's readiness line (`P 1/1  D 1/2  proxy waiting`), every poll round."""

        line: str

    @dataclass
    class Event(Message):
        """Something the launch did (started a process, one is healthy, a cleanup line ...)."""

        text: str

    @dataclass
    class Failed(Message):
        """A process (or a node) failed the launch or a restart."""

        failure: deploy.Failure

    @dataclass
    class Launched(Message):
        """The launch is over (posted after every callback of it, so handled after them)."""

        result: deploy.LaunchResult

    @dataclass
    class Stopped(Message):
        report: deploy.StopReport

    @dataclass
    class Restarted(Message):
        result: RestartResult

    def __init__(self) -> None:
        super().__init__()
        self.board = ProcessBoard(lambda: self.app.clock())  # type: ignore[attr-defined]
        self.views: dict[str, LogView] = {}
        self._tail: deploy.LogTail | None = None
        self._readiness = ""
        self._started_at: float | None = None
        self._ready_at: float | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(id="launch-bar"):
            yield Button("Launch", id="launch-go", variant="primary", compact=True,
                         tooltip="launch the deployment (l)")
            yield Button("Stop all", id="launch-stop", variant="error", compact=True,
                         tooltip="stop every process of the session (s)")
            yield Button("Restart", id="launch-restart", compact=True,
                         tooltip="restart the process highlighted in the table (R)")
            yield Label("", id="launch-status")
        yield ProcessTable(id="launch-procs")
        yield DiagnosisView(id="launch-diagnosis")
        with TabbedContent(id="launch-logs"):
            yield TabPane("events", LogView(id="launch-events"), id=EVENTS_PANE)
        yield Input(id="launch-search", placeholder="filter the log shown: lines containing ... (escape clears)",
                    compact=True)

    def on_mount(self) -> None:
        self.set_interval(1.0, self._tick, name="launch-elapsed")

    async def on_unmount(self) -> None:
        await self._close_tail()

    # ---------------------------------------------------------------- showing the state

    def entered(self) -> None:
        self.call_later(self._show_plan)

    async def _show_plan(self) -> None:
        """The processes of the launched plan, else of the one the preview would launch."""
        if self.phase is None:
            plan = self.wizard.launch_plan()
            specs = list(plan.processes) if plan is not None else []
            if [s.name for s in specs] != self.board.names():
                self.board.load(specs)
                result = self.wizard.launch_result
                if result is not None and plan is self.wizard.plan:
                    self.board.settle(result)
            await self._panes(specs)
            if self.wizard.running and self._tail is None:
                await self._open_tail()
        self._show()

    async def _panes(self, specs: list[deploy.ProcessSpec]) -> None:
        """One log pane per process, before the events pane (rebuilt when the processes change)."""
        if list(self.views) == [s.name for s in specs]:
            return
        tabs = self.query_one("#launch-logs", TabbedContent)
        for name in list(self.views):
            await tabs.remove_pane(pane_id(name))
        self.views = {}
        for spec in specs:
            view = LogView(classes="process-log")
            label = spec.name.removesuffix("-0")
            await tabs.add_pane(TabPane(label, view, id=pane_id(spec.name)), before=EVENTS_PANE)
            self.views[spec.name] = view
        if specs:
            tabs.active = pane_id(specs[0].name)

    def _show(self) -> None:
        """Redraw the table, the status line, the buttons and the blocker."""
        now = self.app.clock()  # type: ignore[attr-defined]
        self.query_one(ProcessTable).show(list(self.board.rows.values()), now)
        self.query_one("#launch-status", Label).update(self._status(now))
        running, busy = self.wizard.running, self.phase is not None
        self._enable({"#launch-go": not (busy or running), "#launch-stop": self.phase != "stopping" and (running or busy),
                      "#launch-restart": not busy and running})
        self.blocker = self._blocker()

    def _enable(self, buttons: dict[str, bool]) -> None:
        """Enable or disable the bar's buttons; focus on one being disabled moves to the table
        first (Textual would move it to the next focusable widget, maybe outside the step)."""
        focused = self.app.focused
        for selector, enabled in buttons.items():
            button = self.query_one(selector, Button)
            if not enabled and button is focused:
                self.query_one(ProcessTable).focus()
            button.disabled = not enabled

    def _status(self, now: float) -> str:
        took = elapsed_text(None if self._started_at is None else
                            (self._ready_at if self._ready_at is not None else now) - self._started_at)
        result = self.wizard.launch_result
        if self.phase == "launching":
            return f"[b]launching[/b]  {self._readiness}  {took}"
        if self.phase:
            return f"[b]{self.phase}[/b]  {self._readiness}"
        if result is None:
            n = len(self.board.rows)
            return f"not launched: [b]l[/b] starts {n} process(es)" if n else \
                "not launched: finish the Preview step first"
        if not result.ok:
            return f"[b red]FAILED[/]  {self._readiness}"
        if not self.wizard.running:
            return "stopped: [b]l[/b] launches again"
        return f"[b green]ready[/]  {self._readiness}  in {took}"

    def _blocker(self) -> str | None:
        if self.phase:
            return self.phase
        result, preview = self.wizard.launch_result, self.wizard.preview
        if result is None or (not self.wizard.running and result.ok):
            if preview is None or preview.blocking:
                return "the preview is not ready: go back to the Preview step"
            return "launch the deployment (l)"
        if not result.ok:
            reason = failure_reason(result.failures[0]) if result.failures else "see the events"
            return f"the launch failed: {reason} (fix and launch again)"
        bad = [r for r in self.board.rows.values() if r.state != "healthy"]
        if bad:
            return f"{bad[0].name} is {bad[0].state}: restart it (R) or stop all (s)"
        return None

    def _tick(self) -> None:
        if self.phase is not None or self.board.starting():
            self._show()

    def active_view(self) -> LogView | None:
        pane = self.query_one("#launch-logs", TabbedContent).active_pane
        return pane.query_one(LogView) if pane is not None else None

    # ---------------------------------------------------------------- launch

    def action_launch(self) -> None:
        if self.phase is not None:
            self.notify(f"{self.phase}: wait for it to finish", severity="warning")
        elif self.wizard.running:
            self.notify("the deployment is running: stop it first (s)", severity="warning")
        else:
            self._launch()

    @work(exclusive=True, group="launch")
    async def _launch(self) -> None:
        self.phase = "launching"
        await self._close_tail()
        self._started_at, self._ready_at, self._readiness = self.app.clock(), None, "rendering"  # type: ignore
        plan = self.wizard.launch_plan()
        self.board.load(plan.processes if plan is not None else [])
        await self._panes(list(plan.processes) if plan is not None else [])
        for view in [*self.views.values(), self.query_one("#launch-events", LogView)]:
            view.reset()
        self.query_one(DiagnosisView).show([])
        self._show()
        try:
            result = await self.wizard.launch(_Observer(self))
        except PdwError as exc:
            self.phase, self._started_at = None, None
            self.notify(f"{exc}" + (f"\n{exc.hint}" if exc.hint else ""), title="nothing launched",
                        severity="error", timeout=10)
            self._show()
            return
        self.post_message(self.Launched(result))

    async def on_launch_step_event(self, message: Event) -> None:
        plan = self.wizard.plan
        if self.phase == "launching" and plan is not None and [p.name for p in plan.processes] != self.board.names():
            self.board.load(plan.processes)  # the launch rendered other processes than shown
            await self._panes(list(plan.processes))
        self.query_one("#launch-events", LogView).push(message.text)
        if self.board.event(message.text):
            self._show()

    async def on_launch_step_readiness(self, message: Readiness) -> None:
        self._readiness = message.line
        if self.phase == "launching" and self._tail is None:
            await self._open_tail()  # every process of the launch is started: their logs have begun
        self._show()

    def on_launch_step_failed(self, message: Failed) -> None:
        self.query_one("#launch-events", LogView).push_lines(message.failure.lines())
        if self.board.failure(message.failure):
            self._show()

    def on_launch_step_launched(self, message: Launched) -> None:
        result = message.result
        self.board.settle(result)
        self.phase = None
        self._ready_at = self.app.clock()  # type: ignore[attr-defined]
        if result.ok:
            self.notify(f"the deployment is ready: {result.readiness}", title="launched")
        else:
            stopped = [r.name for r in self.board.rows.values() if r.state == "stopped"]
            note = ("the launch stopped what it had started: " + ", ".join(stopped) + " stopped by the cleanup"
                    if stopped else "")
            self.query_one(DiagnosisView).show(result.failures, note)
            failed = next((f.process for f in result.failures if f.process in self.views), None)
            if failed is not None:
                self.query_one("#launch-logs", TabbedContent).active = pane_id(failed)
                self.query_one(ProcessTable).select(failed)
            self.notify(failure_reason(result.failures[0]) if result.failures else "see the events",
                        title="the launch failed", severity="error", timeout=10)
        self._show()

    # ---------------------------------------------------------------- stop all, restart one

    def action_stop_all(self) -> None:
        if self.phase == "stopping":
            return
        if not self.wizard.running and self.phase is None:
            self.notify("nothing is running", severity="warning")
            return
        self._stop_all()

    @work(exclusive=True, group="launch")  # cancels a launch in flight: its own cleanup runs first
    async def _stop_all(self) -> None:
        self.phase = "stopping"
        self._show()
        try:
            report = await self.wizard.stop()
        except PdwError as exc:
            self.phase = None
            self.notify(str(exc), title="stop failed", severity="error", timeout=10)
            self._show()
            return
        self.post_message(self.Stopped(report))

    async def on_launch_step_stopped(self, message: Stopped) -> None:
        report = message.report
        self.board.stopped(report, "stopped (Stop all)")
        self.query_one("#launch-events", LogView).push_lines(["stop all:", *(f"  {ln}" for ln in report.lines())])
        self.phase = None
        await self._close_tail()
        if report.ok:
            self.notify("every process of the session is stopped", title="stopped")
        else:
            self.notify("some processes are still alive: see the events", title="stop incomplete",
                        severity="error", timeout=15)
        self._show()

    def action_restart(self) -> None:
        name = self.query_one(ProcessTable).highlighted
        if self.phase is not None:
            self.notify(f"{self.phase}: wait for it to finish", severity="warning")
        elif not self.wizard.running or name is None:
            self.notify("nothing is running: launch first (l)", severity="warning")
        else:
            self._restart(name)

    @work(exclusive=True, group="launch")
    async def _restart(self, name: str) -> None:
        self.phase = f"restarting {name}"
        self.board.restarting(name)
        self.query_one(DiagnosisView).show([])
        self._show()
        try:
            result = await self.wizard.restart(name, _Observer(self))
        except PdwError as exc:
            self.phase = None
            self.notify(str(exc), title="not restarted", severity="error")
            self._show()
            return
        self.post_message(self.Restarted(result))

    def on_launch_step_restarted(self, message: Restarted) -> None:
        result = message.result
        self.phase = None
        if result.ok:
            self.notify(f"{result.name} is healthy again (pid {result.process.pid})", title="restarted")
        else:
            self.query_one(DiagnosisView).show(result.failures, "the restart stopped what it had started; "
                                                                "the other processes run on")
            self.notify(failure_reason(result.failures[0]) if result.failures else result.name,
                        title="the restart failed", severity="error", timeout=10)
        self._show()

    @on(Button.Pressed, "#launch-go")
    def _go_pressed(self) -> None:
        self.action_launch()

    @on(Button.Pressed, "#launch-stop")
    def _stop_pressed(self) -> None:
        self.action_stop_all()

    @on(Button.Pressed, "#launch-restart")
    def _restart_pressed(self) -> None:
        self.action_restart()

    # ---------------------------------------------------------------- logs

    async def _open_tail(self) -> None:
        if self.wizard.plan is None or self.wizard.pool is None:
            return
        self._tail = self.wizard.log_tail(on_line=self._line)
        quiet_collector()
        await self._tail.start()

    async def _close_tail(self) -> None:
        tail, self._tail = self._tail, None
        if tail is not None:
            await tail.close()

    def _line(self, line: deploy.LogLine) -> None:
        """From the tail, per line: into its pane's bounded queue (the pane's timer shows it)."""
        view = self.views.get(line.process)
        if view is not None:
            view.push(line.text)

    @on(ProcessTable.Highlighted)
    def _process_highlighted(self, message: ProcessTable.Highlighted) -> None:
        if message.name in self.views:
            self.query_one("#launch-logs", TabbedContent).active = pane_id(message.name)

    @on(TabbedContent.TabActivated, "#launch-logs")
    def _tab_activated(self) -> None:
        view, search = self.active_view(), self.query_one("#launch-search", Input)
        if view is not None and search.value.strip().lower() != view.term:
            search.value = view.term

    def action_pause(self) -> None:
        view = self.active_view()
        if view is not None:
            view.toggle_pause()

    def action_search(self) -> None:
        search = self.query_one("#launch-search", Input)
        search.add_class("-shown")
        search.focus()

    def action_clear_search(self) -> None:
        search, view = self.query_one("#launch-search", Input), self.active_view()
        if not search.has_class("-shown") and (view is None or not view.term):
            return
        search.value = ""
        search.remove_class("-shown")
        if view is not None:
            view.set_filter("")
            view.focus()

    @on(Input.Changed, "#launch-search")
    def _search_changed(self, event: Input.Changed) -> None:
        view = self.active_view()
        if view is not None:
            view.set_filter(event.value)

    @on(Input.Submitted, "#launch-search")
    def _search_submitted(self) -> None:
        view = self.active_view()
        if view is not None:
            view.focus()
