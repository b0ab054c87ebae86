"""Data-quality gates written as code: declarative suites (`raw`, `features`, `training`) and the
runner that validates a frame against one and builds Data Docs (`gate`)."""

from expectations.gate import DataQualityError, Failure, GateResult, run_gate

__all__ = ["DataQualityError", "Failure", "GateResult", "run_gate"]
