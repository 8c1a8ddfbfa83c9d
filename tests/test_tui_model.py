"""Step 5, Model and stack: fields that edit the session as the operator types, problems shown
beside the field they concern, the first one blocking Next. Over the demo's SIMULATED cluster."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Button, Select, Switch

from pdwizard.cli import asset
from pdwizard.models import DEFAULT_PROFILE
from pdwizard.widgets.model_field import FieldRow
from pdwizard.wizard import Wizard
from tui_support import demo_app, reach, screen_text, wait_for


def row(app, key: str) -> FieldRow:
    return next(r for r in app.screen.query(FieldRow) if r.key == key)


def error_of(app, key: str) -> str | None:
    """The problem shown under a field, None when hidden."""
    label = row(app, key).query_one(".field-error")
    return str(label.render()) if label.display else None


def step(app):
    return app.wizard_screen().current


async def retype(pilot, widget_id: str, text: str) -> None:
    """Click into a field, empty it and type `text`, key by key."""
    await pilot.click(f"#{widget_id}")
    await pilot.press("end", "ctrl+u", *text)
    await pilot.pause()


async def choose(pilot, widget_id: str, label: str | None) -> None:
    """Open a Select with the keyboard and pick the option whose label starts with `label`
    (None: the blank choice, which stands for the default)."""
    select = pilot.app.screen.query_one(f"#{widget_id}", Select)
    select.focus()
    await pilot.press("enter")
    await wait_for(pilot, lambda: select.expanded, 5, "the select to open")
    options = select._options
    target = next(i for i, (prompt, value) in enumerate(options)
                  if (value is Select.NULL if label is None else str(prompt).startswith(label)))
    await pilot.press("home", *["down"] * target, "enter")
    await wait_for(pilot, lambda: not select.expanded, 5, "the select to close")


# ------------------------------------------------------------------ the core the step calls


def test_typed_values_and_minimal_keys():
    w = Wizard.open(asset("demo-session.toml"))
    assert [w.typed(t, int) for t in ("", " 12 ", "1.5", "abc")] == [None, 12, 1.5, "abc"]
    assert (w.typed("0.5", float), w.typed("1", float), w.typed(" a ", str)) == (0.5, 1.0, "a")
    assert w.default_of("model.max_model_len") == 6144 and w.default_of("model.path") is None
    assert w.default_of("stack.profile") == DEFAULT_PROFILE and w.default_of("proxy.node") is None
    w.set_value("proxy.port", 9000)
    assert w.data["proxy"] == {"port": 9000}
    w.set_value("proxy.port", None)
    assert "proxy" not in w.data                   # an emptied optional table goes
    w.set_value("model.path", None)
    assert "model" in w.data and "path" not in w.data["model"]
    assert [p.key for p in w.model_problems()] == ["model.path"]


def test_model_problems_put_the_model_tables_first_then_render_refusals():
    w = Wizard.open(asset("demo-session.toml"))
    w.data["instances"][0]["port"] = 0
    w.set_value("model.max_model_len", 0)
    assert [p.key for p in w.model_problems()] == ["model.max_model_len", "instances[0].port"]
    w.data["instances"][0]["port"] = 13700
    w.set_value("model.max_model_len", None)
    w.set_value("model.extra_args", ["--port", "1"])
    assert [p.key for p in w.model_problems()] == ["model.extra_args[0]"]   # validates, render refuses


# ------------------------------------------------------------------ inline validation


async def test_invalid_max_model_len_is_flagged_as_typed_and_blocks_next():
    app = demo_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await reach(pilot, "model")
        assert error_of(app, "model.max_model_len") is None and step(app).blocker is None

        await retype(pilot, "f-model-max_model_len", "0")
        assert app.wizard.data["model"]["max_model_len"] == 0
        assert "max_model_len must be at least 1, got 0" in error_of(app, "model.max_model_len")
        assert step(app).blocker.startswith("model.max_model_len: max_model_len must be at least 1")
        assert app.screen.query_one("#next", Button).disabled
        await pilot.press("ctrl+n")
        assert step(app).STEP_ID == "model"

        await retype(pilot, "f-model-max_model_len", "abc")
        assert "expected an integer, got the string 'abc'" in error_of(app, "model.max_model_len")
        assert "expected an integer" in screen_text(app)
        assert row(app, "model.max_model_len").has_class("-invalid")

        await retype(pilot, "f-model-max_model_len", "4096")
        assert app.wizard.data["model"]["max_model_len"] == 4096
        assert error_of(app, "model.max_model_len") is None
        assert not row(app, "model.max_model_len").has_class("-invalid")
        assert step(app).blocker is None
        assert not app.screen.query_one("#next", Button).disabled


async def test_text_fields_write_the_session_and_an_empty_field_removes_its_key():
    app = demo_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await reach(pilot, "model")
        app.wizard.preview = object()  # stands for a preview built before: a change must drop it

        await retype(pilot, "f-model-served_name", "qwen-x")
        assert app.wizard.data["model"]["served_name"] == "qwen-x"
        assert app.wizard.preview is None

        await retype(pilot, "f-model-served_name", "a b")
        assert "served_name must be a non-empty name without spaces" in error_of(app, "model.served_name")

        await retype(pilot, "f-model-served_name", "")
        assert "served_name" not in app.wizard.data["model"]
        assert error_of(app, "model.served_name") is None

        await retype(pilot, "f-model-gpu_memory_utilization", "1.5")
        assert app.wizard.data["model"]["gpu_memory_utilization"] == 1.5
        assert "fraction in (0, 1]" in error_of(app, "model.gpu_memory_utilization")
        await retype(pilot, "f-model-gpu_memory_utilization", "0.85")
        assert error_of(app, "model.gpu_memory_utilization") is None

        # a cross-field rule lands beside the field whose key it names
        await retype(pilot, "f-proxy-port", "13700")
        assert app.wizard.data["proxy"] == {"port": 13700}
        assert "already used by instances[0]" in error_of(app, "proxy.port")
        await retype(pilot, "f-proxy-port", "")
        assert "proxy" not in app.wizard.data
        assert step(app).blocker is None


async def test_switches_write_only_what_differs_from_the_default():
    app = demo_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await reach(pilot, "model")
        switch = app.screen.query_one("#f-model-enable_expert_parallel", Switch)
        assert switch.value is True                     # the demo session sets it
        switch.focus()
        await pilot.press("space")
        await wait_for(pilot, lambda: "enable_expert_parallel" not in app.wizard.data["model"], 5,
                       "the key to go (false is the default)")
        assert "off" in str(row(app, "model.enable_expert_parallel").query_one(".switch-state").render())
        await pilot.press("space")
        await wait_for(pilot, lambda: app.wizard.data["model"].get("enable_expert_parallel") is True, 5,
                       "the key back")


async def test_profile_and_connector_selects():
    app = demo_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await reach(pilot, "model")
        assert "stack" not in app.wizard.data

        await choose(pilot, "f-stack-connector", "llmdatadist")
        assert app.wizard.data["stack"] == {"connector": "llmdatadist"}

        # the main profile offers Mooncake only: the connector it lacks is dropped, and said
        await choose(pilot, "f-stack-profile", "vllm-ascend-main")
        assert app.wizard.data["stack"] == {"profile": "vllm-ascend-main"}
        assert any("offers no connector llmdatadist" in n.message for n in app._notifications)
        connector = app.screen.query_one("#f-stack-connector", Select)
        assert [v for _, v in connector._options if v is not Select.NULL] == ["mooncake"]

        await choose(pilot, "f-stack-connector", "mooncake")
        assert app.wizard.data["stack"] == {"profile": "vllm-ascend-main", "connector": "mooncake"}
        assert step(app).blocker is None

        await choose(pilot, "f-stack-profile", None)   # back to the default: the key goes
        assert app.wizard.data["stack"] == {"connector": "mooncake"}


async def test_render_problems_are_shown_and_block_next(tmp_path: Path):
    session = tmp_path / "s.toml"
    text = asset("demo-session.toml").read_text()
    session.write_text(text.replace("seed = 1024\n", 'seed = 1024\nextra_args = ["--foo"]\n'))
    app = demo_app(session=session)
    async with app.run_test(size=(80, 24)) as pilot:
        await reach(pilot, "model")
        problems = str(app.screen.query_one("#model-problems").render())
        assert "model.extra_args[0]: unknown flag '--foo' for vllm-ascend-0.10.1rc1" in problems
        assert str(session) not in problems            # the file is not repeated beside each key
        assert step(app).blocker.startswith("model.extra_args[0]: unknown flag '--foo'")


# ------------------------------------------------------------------ snapshots


async def _at_model(pilot) -> None:
    await reach(pilot, "model")
    await pilot.pause()
    pilot.app.clear_notifications()


async def _with_error(pilot) -> None:
    await reach(pilot, "model")
    await retype(pilot, "f-model-max_model_len", "abc")
    pilot.app.clear_notifications()
    await pilot.pause()


def test_model_step_small(snap_compare):
    assert snap_compare(demo_app(), terminal_size=(80, 24), run_before=_at_model)


def test_model_step_small_inline_error(snap_compare):
    assert snap_compare(demo_app(), terminal_size=(80, 24), run_before=_with_error)


def test_model_step_large_inline_error(snap_compare):
    assert snap_compare(demo_app(), terminal_size=(200, 50), run_before=_with_error)
