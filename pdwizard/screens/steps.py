"""The wizard's steps, in order (the step list and Back / Next follow this list)."""

from __future__ import annotations

from pdwizard.screens.checks import ChecksStep
from pdwizard.screens.launch import LaunchStep
from pdwizard.screens.model import ModelStep
from pdwizard.screens.nodes import NodesStep
from pdwizard.screens.preview import PreviewStep
from pdwizard.screens.prompt import PromptStep
from pdwizard.screens.session import SessionStep
from pdwizard.screens.step import Step
from pdwizard.screens.topology import TopologyStep

STEPS: list[type[Step]] = [SessionStep, NodesStep, TopologyStep, ChecksStep, ModelStep, PreviewStep,
                           LaunchStep, PromptStep]
