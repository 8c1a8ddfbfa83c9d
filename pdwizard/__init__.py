"""pdwizard: deploy vLLM-Ascend prefill-decode disaggregation without the manual guide."""

__version__ = "0.1.0.dev0"
