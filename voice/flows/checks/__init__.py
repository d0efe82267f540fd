"""Checking a flow file in three layers: one value (values), one AT action (actions), steps and the file (flow)."""

from voice.flows.checks.flow import check_document, check_python_result, load

__all__ = ["check_document", "check_python_result", "load"]
