"""Pipeline contribution reporting (see :mod:`stream.report.pipeline`)."""

from stream.report.pipeline import PipelineReport, build_report, read_records

__all__ = ["PipelineReport", "build_report", "read_records"]
