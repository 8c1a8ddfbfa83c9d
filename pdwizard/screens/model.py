"""Step 5, Model and stack: the model, its lengths, the version profile, the connector, the proxy.

Every field edits one session key as the operator types (numbers become numbers, an emptied
field removes its key so the exported session stays minimal); the session's own validation
names what is wrong, beside the field whose key it is, and the first problem blocks Next.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widget import Widget
from textual.widgets import Input, Label, Select, Static, Switch

from pdwizard.errors import InputError
from pdwizard.models import DEFAULT_PROFILE
from pdwizard.profiles import available_profiles, load_profile
from pdwizard.screens.step import Step
from pdwizard.widgets.model_field import FieldRow, problem_text


@dataclass(frozen=True)
class Field:
    """One field: the session key it edits, its label, what it holds and a one-line help."""

    key: str
    label: str
    kind: type | str          # str, int, float: an Input; "switch"; "select"
    help: str
    placeholder: str = ""

    @property
    def widget_id(self) -> str:
        return "f-" + self.key.replace(".", "-")


MODEL_FIELDS = [
    Field("model.path", "Model path", str, "the model directory on every serving node", "/model/Qwen3-30B-A3B"),
    Field("model.served_name", "Served name", str, "--served-model-name: the name clients ask for",
          "default: the path's last part"),
    Field("model.max_model_len", "Max model len", int, "--max-model-len: prompt plus answer, in tokens",
          "6144 (default)"),
    Field("model.max_num_batched_tokens", "Batched tokens", int, "--max-num-batched-tokens per scheduler step",
          "6144 (default)"),
    Field("model.gpu_memory_utilization", "NPU memory", float, "--gpu-memory-utilization: the fraction of "
          "each NPU's memory vLLM may take", "0.9 (default)"),
    Field("model.enable_expert_parallel", "Expert parallel", "switch", "--enable-expert-parallel, for MoE models"),
    Field("model.trust_remote_code", "Remote code", "switch", "--trust-remote-code: run Python code shipped "
          "with the model"),
]
STACK_FIELDS = [
    Field("stack.profile", "Profile", "select", "the vllm-ascend release on the nodes: which flags and keys "
          "vllm serve accepts"),
    Field("stack.connector", "Connector", "select", "the KV connector between prefill and decode"),
]
PROXY_FIELDS = [
    Field("proxy.kind", "Proxy", "select", "builtin: pdwizard's proxy; upstream: vllm-ascend's example script"),
    Field("proxy.port", "Proxy port", int, "the port clients send requests to", "8080 (default)"),
    Field("proxy.node", "Proxy node", "select", "where the proxy runs"),
]
FIELDS = {f.key: f for f in MODEL_FIELDS + STACK_FIELDS + PROXY_FIELDS}


class ModelStep(Step):
    STEP_ID = "model"
    TITLE = "Model and stack"
    HELP = "The model, its lengths, the version profile and the proxy"

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="model-form"):
            with Horizontal(id="model-columns"):
                with Vertical(classes="model-col"):
                    yield Label("Model", classes="section")
                    yield from (self._row(f) for f in MODEL_FIELDS)
                with Vertical(classes="model-col"):
                    yield Label("Stack", classes="section")
                    yield from (self._row(f) for f in STACK_FIELDS)
                    yield Static("", id="model-profile-info", markup=False)
                    yield Label("Proxy", classes="section")
                    yield from (self._row(f) for f in PROXY_FIELDS)
            yield Static("", id="model-problems", markup=False)

    def _row(self, field: Field) -> FieldRow:
        return FieldRow(field.key, field.label, self._widget(field), field.help)

    def _widget(self, field: Field) -> Widget:
        tip = f"{field.key}: {field.help}"
        if field.kind == "switch":
            return Switch(id=field.widget_id, tooltip=tip, animate=False)
        if field.kind == "select":
            return Select([], id=field.widget_id, tooltip=tip, compact=True, prompt="default")
        return Input(id=field.widget_id, placeholder=field.placeholder, tooltip=tip, compact=True)

    # ---------------------------------------------------------------- from the session to the form

    def entered(self) -> None:
        with self.prevent(Input.Changed, Switch.Changed, Select.Changed):
            for field in FIELDS.values():
                self._load(field)
            self._load_connectors()
        self._validate()

    def _current(self, key: str) -> Any:
        table, name = key.split(".", 1)
        return (self.wizard.data.get(table) or {}).get(name)

    def _load(self, field: Field) -> None:
        value = self._current(field.key)
        widget = self.query_one(f"#{field.widget_id}")
        if isinstance(widget, Input):
            text = "" if value is None else str(value)
            if widget.value != text:
                widget.value = text
        elif isinstance(widget, Switch):
            widget.value = bool(self.wizard.default_of(field.key) if value is None else value)
        elif field.key == "stack.profile":
            self._fill(widget, [(p, p) for p in available_profiles()], value, f"default: {DEFAULT_PROFILE}")
        elif field.key == "proxy.kind":
            self._fill(widget, [("builtin", "builtin"), ("upstream", "upstream")], value, "default: builtin")
        elif field.key == "proxy.node":
            names = [str(n.get("name")) for n in self.wizard.data.get("nodes", [])]
            self._fill(widget, [(n, n) for n in names], value, "default: the first prefill node")

    def _load_connectors(self) -> None:
        """The connectors the chosen profile offers (the blank choice is the profile's default)."""
        name = self._current("stack.profile") or DEFAULT_PROFILE
        select = self.query_one(f"#{FIELDS['stack.connector'].widget_id}", Select)
        info = self.query_one("#model-profile-info", Static)
        if name not in available_profiles():
            self._fill(select, [], None, "default")
            info.update("")
            return
        profile = load_profile(name)
        options = [(f"{c.id} ({'ranktable' if c.needs_ranktable else 'no ranktable'})", c.id)
                   for c in profile.connectors.values()]
        self._fill(select, options, self._current("stack.connector"), f"default: {profile.default_connector}")
        info.update(profile.description)

    @staticmethod
    def _fill(select: Select, options: list[tuple[str, str]], value: Any, prompt: str) -> None:
        select.prompt = prompt
        select.set_options(options)
        if value in [v for _, v in options]:
            select.value = value

    # ---------------------------------------------------------------- from the form to the session

    @on(Input.Changed)
    def _typed(self, event: Input.Changed) -> None:
        field = self._field(event.input)
        if field is not None:
            event.stop()
            self._set(field.key, self.wizard.typed(event.value, field.kind))  # type: ignore[arg-type]

    @on(Switch.Changed)
    def _switched(self, event: Switch.Changed) -> None:
        field = self._field(event.switch)
        if field is not None:
            event.stop()
            self._set(field.key, None if event.value == self.wizard.default_of(field.key) else event.value)

    @on(Select.Changed)
    def _selected(self, event: Select.Changed) -> None:
        field = self._field(event.select)
        if field is None:
            return
        event.stop()
        self._set(field.key, None if event.value is Select.NULL else event.value)
        if field.key == "stack.profile":
            self._profile_changed()

    def _profile_changed(self) -> None:
        """A connector the new profile does not offer is dropped (its default is used), and said."""
        connector = self._current("stack.connector")
        name = self._current("stack.profile") or DEFAULT_PROFILE
        if connector is not None and name in available_profiles() and connector not in load_profile(name).connectors:
            self._set("stack.connector", None)
            self.notify(f"profile {name} offers no connector {connector}: its default is used")
        with self.prevent(Select.Changed):
            self._load_connectors()
        self._validate()

    def _field(self, widget: Widget) -> Field | None:
        return next((f for f in FIELDS.values() if f.widget_id == widget.id), None)

    def _set(self, key: str, value: Any) -> None:
        current = self._current(key)
        if type(current) is type(value) and current == value:
            return
        self.wizard.set_value(key, value)
        self.wizard.changed(key.split(".")[0])
        self._validate()

    # ---------------------------------------------------------------- problems

    def _validate(self) -> None:
        """Each field shows the first problem of its key; the others (keys without a field, the
        render's refusals) are listed under the form. The first problem blocks Next."""
        problems = self.wizard.model_problems()
        shown: set[int] = set()
        for row in self.query(FieldRow):
            mine = [p for p in problems if _belongs(p, row.key)]
            row.show_problem(mine[0] if mine else None)
            shown.update(id(p) for p in mine)
        rest = [p for p in problems if id(p) not in shown]
        box = self.query_one("#model-problems", Static)
        box.update("\n".join(f"{p.key or 'session'}: {problem_text(p)}" for p in rest[:4]))
        box.display = bool(rest)
        self.blocker = _blocker(problems[0]) if problems else None


def _belongs(problem: InputError, key: str) -> bool:
    k = problem.key or ""
    return k == key or k.startswith((key + ".", key + "["))


def _blocker(problem: InputError) -> str:
    text = problem_text(problem).split(" · fix: ")[0]
    return f"{problem.key}: {text}" if problem.key else text
