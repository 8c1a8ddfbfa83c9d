"""Step 8, Test: send prompts through the proxy, stream the answers, see who served them.

The step only shows and asks: `Wizard.send_prompt` sends (in a worker), judges the answer
like a `[[verify]]` (empty answer, KV recompute) and keeps the history; this step streams
the text as it arrives, shows the metrics, and lists the history from `wizard.history`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Button, Input, Label, Static

from pdwizard.errors import PdwError
from pdwizard.screens.step import Step
from pdwizard.verify import VerifyOutcome, proxy_url
from pdwizard.widgets.prompt_answer import AnswerView
from pdwizard.widgets.prompt_history import PromptHistory
from pdwizard.widgets.prompt_metrics import OutcomeMetrics

DEFAULT_MAX_TOKENS = "100"


class PromptStep(Step):
    STEP_ID = "test"
    TITLE = "Test"
    HELP = "Send prompts, see timings and who served them"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+r", "resend", "Resend", tooltip="send the prompt picked in the history again"),
        Binding("up", "recall(-1)", "Previous prompt", show=False,
                tooltip="in the prompt field: the previous prompt sent"),
        Binding("down", "recall(1)", "Next prompt", show=False,
                tooltip="in the prompt field: the next prompt sent"),
    ]

    #: A prompt is in flight: sending is locked until its answer is in (elia's rule).
    sending: reactive[bool] = reactive(False, init=False)

    @dataclass
    class Streamed(Message):
        """A piece of the answer arrived (posted from the worker's on_text)."""

        text: str

    @dataclass
    class Answered(Message):
        """The answer is complete and judged (it is the last entry of the wizard's history)."""

        outcome: VerifyOutcome

    def __init__(self) -> None:
        super().__init__()
        self._recall = 0          # how far back up/down went in the prompts sent (0: not recalling)

    def compose(self) -> ComposeResult:
        yield Static(id="prompt-status")
        with Horizontal(id="prompt-row", classes="row"):
            yield Input(id="prompt-input", placeholder="type a prompt, enter sends", compact=True)
            yield Label("max tokens", id="prompt-max-label")
            yield Input(DEFAULT_MAX_TOKENS, id="prompt-max-tokens", type="integer", compact=True,
                        tooltip="max_tokens of the request: at least 1, below the model's max_model_len")
            yield Button("Send", id="prompt-send", variant="primary", compact=True)
        yield Label("", id="prompt-max-error", classes="field-error")
        with Horizontal(id="prompt-body"):
            yield AnswerView(id="prompt-answer")
            with Vertical(id="prompt-side"):
                yield OutcomeMetrics(id="prompt-metrics")
                yield PromptHistory(id="prompt-history")

    # ---------------------------------------------------------------- showing the state

    def entered(self) -> None:
        self.blocker = None
        self._show_status()
        history = self.query_one(PromptHistory)
        if history.sync(self.wizard.history) or not self.wizard.history:
            self._show_outcome(len(self.wizard.history) - 1)

    def _show_status(self) -> None:
        w, status = self.wizard, self.query_one("#prompt-status", Static)
        running = w.running and w.plan is not None and w.plan.proxy is not None
        status.set_class(not running, "-stopped")
        if running:
            status.update(f"Proxy [b]{proxy_url(w.plan)}[/b] · session {w.plan.session} · running")
        else:
            status.update("[b]Nothing is running[/b]: launch it in step 7, Launch.")
        self.query_one("#prompt-send", Button).disabled = self.sending or not running

    def _show_outcome(self, index: int) -> None:
        """Show one answer of the history with its metrics (index -1: none yet)."""
        answer, metrics = self.query_one(AnswerView), self.query_one(OutcomeMetrics)
        if index < 0 or index >= len(self.wizard.history):
            answer.show("", "", "No prompt sent yet: type one above and press enter.")
            metrics.show(None)
            return
        outcome = self.wizard.history[index]
        r = outcome.result
        answer.show(outcome.verify.prompt, r.text, "" if r.text.strip() else "(no answer)")
        metrics.show(outcome)

    def watch_sending(self, sending: bool) -> None:
        self.query_one("#prompt-input", Input).set_class(sending, "-locked")
        self._show_status()

    # ---------------------------------------------------------------- sending

    @on(Input.Submitted, "#prompt-input, #prompt-max-tokens")
    @on(Button.Pressed, "#prompt-send")
    def _submit(self) -> None:
        self.send(self.query_one("#prompt-input", Input).value)

    def send(self, prompt: str) -> None:
        """Send `prompt` unless one is in flight, nothing runs, or a field is not valid."""
        refusal = self._refusal(prompt)
        if refusal is not None:
            self.notify(refusal, severity="warning")
            return
        max_tokens = int(self.query_one("#prompt-max-tokens", Input).value)
        self.sending = True
        self._recall = 0
        self.query_one("#prompt-input", Input).value = ""
        self.query_one(AnswerView).show(prompt, "", follow=True)
        self.query_one(OutcomeMetrics).show(None, f"sending, max_tokens {max_tokens} ...")
        self._send(prompt, max_tokens)

    def _refusal(self, prompt: str) -> str | None:
        if self.sending:
            return "a prompt is in flight: wait for its answer"
        if not self.wizard.running:
            return "nothing is running: launch the deployment in the Launch step first"
        if not prompt.strip():
            return "type a prompt first"
        problem = self.wizard.max_tokens_problem(self.query_one("#prompt-max-tokens", Input).value)
        return f"max tokens: {problem}" if problem else None

    @work(exclusive=True, group="prompt")
    async def _send(self, prompt: str, max_tokens: int) -> None:
        try:
            outcome = await self.wizard.send_prompt(prompt, max_tokens=max_tokens,
                                                    on_text=lambda text: self.post_message(self.Streamed(text)))
        except PdwError as exc:
            self.notify(str(exc), title="the prompt was not sent", severity="error", timeout=10)
            self.sending = False
            return
        self.post_message(self.Answered(outcome))

    def on_prompt_step_streamed(self, message: Streamed) -> None:
        self.query_one(AnswerView).append(message.text)

    def on_prompt_step_answered(self, message: Answered) -> None:
        self.sending = False
        history = self.query_one(PromptHistory)
        history.sync(self.wizard.history)
        history.pick(len(self.wizard.history) - 1)
        self._show_outcome(len(self.wizard.history) - 1)
        if not message.outcome.ok:
            self.notify(message.outcome.problems[0], title="the answer has problems", severity="error")

    # ---------------------------------------------------------------- fields and history

    @on(Input.Changed, "#prompt-max-tokens")
    def _max_tokens_changed(self, event: Input.Changed) -> None:
        problem = self.wizard.max_tokens_problem(event.value)
        error = self.query_one("#prompt-max-error", Label)
        error.update(f"max tokens: {problem}" if problem else "")
        error.set_class(problem is not None, "-shown")

    @on(PromptHistory.Picked)
    def _picked(self, event: PromptHistory.Picked) -> None:
        if not self.sending:
            self._show_outcome(event.index)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "recall":
            return self.app.focused is self.query_one("#prompt-input", Input)
        if action == "resend":
            return bool(self.wizard.history) or None
        return True

    def action_recall(self, step: int) -> None:
        """Up / down in the prompt field walk back and forth through the prompts sent."""
        prompts = [o.verify.prompt for o in self.wizard.history]
        if not prompts:
            return
        self._recall = max(0, min(len(prompts), self._recall - step))
        field = self.query_one("#prompt-input", Input)
        field.value = prompts[-self._recall] if self._recall else ""
        field.cursor_position = len(field.value)

    def action_resend(self) -> None:
        history = self.query_one(PromptHistory)
        index = history.cursor_row if 0 <= history.cursor_row < len(self.wizard.history) else -1
        prompt = self.wizard.history[index].verify.prompt
        self.query_one("#prompt-input", Input).value = prompt
        self.send(prompt)
