"""Data-quality gates: Great Expectations suites over a stage's manifest.

A gate runs after a stage and stops the run when the stage's output breaks an invariant
(conservation of files, identifiers present and unique, no leaks). Suites are data
(``data/expectations/*.yaml``); parameters such as the file count or the collection's
modalities are filled in per run. Gates only ever see a PHI-free projection of the
manifest (keyed hashes instead of original identifiers), so reports and logs stay clean.

Great Expectations takes seconds to import: it is imported inside ``run_gate`` only.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

__all__ = ["GateFailed", "GateResult", "gate_inputs", "load_suite", "run_gate", "suite_columns"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GateResult:
    name: str
    success: bool
    evaluated: int
    failures: list[str] = field(default_factory=list)
    json_report: Path | None = None
    html_report: Path | None = None


class GateFailed(RuntimeError):
    """A gate's suite did not pass; the message lists the failed expectations (no PHI)."""

    def __init__(self, result: GateResult) -> None:
        self.result = result
        where = f" (report: {result.html_report})" if result.html_report else ""
        super().__init__(
            f"gate '{result.name}' failed {len(result.failures)} of {result.evaluated} expectations{where}: "
            + "; ".join(result.failures)
        )


def load_suite(name: str) -> dict[str, Any]:
    text = (resources.files("imaging_ingest") / "data" / "expectations" / f"{name}.yaml").read_text(encoding="utf-8")
    suite: dict[str, Any] = yaml.safe_load(text)
    return suite


#: A name compared in a row condition, e.g. ``kind`` in ``status=="ok" and kind=="dicom"``.
_CONDITION_NAME = re.compile(r"\b([A-Za-z_]\w*)\s*(?:==|!=|<=|>=|<|>)")


def suite_columns(name: str) -> list[str]:
    """The columns suite ``name`` reads (``file_id`` first: failures are reported by it).

    A gate validates only these, so a whole-submission stage can read a narrow slice of
    its manifest instead of every column.
    """
    columns = {"file_id": None}
    for item in load_suite(name)["expectations"]:
        kwargs = item.get("kwargs", {})
        for key in ("column", "column_A", "column_B"):
            if isinstance(kwargs.get(key), str):
                columns[kwargs[key]] = None
        for column in kwargs.get("column_list") or []:
            columns[column] = None
        for column in _CONDITION_NAME.findall(str(kwargs.get("row_condition") or "")):
            columns[column] = None
    return list(columns)


def gate_inputs(name: str) -> list[str]:
    """The manifest columns gate ``name`` is computed from.

    Its suite's columns, where a hashed column (``sop_uid_h``, made by
    ``manifest.public_projection``) stands for the manifest column it hashes.
    """
    return list(dict.fromkeys(c.removesuffix("_h") for c in suite_columns(name)))


def _describe(result: Any) -> str:
    config = result.expectation_config
    kwargs = {k: v for k, v in config.kwargs.items() if k not in {"batch_id", "condition_parser"}}
    condition = kwargs.pop("row_condition", None)
    if isinstance(condition, dict):
        condition = condition.get("pass_through_filter")
    column = kwargs.pop("column", None)
    details = result.result or {}
    parts = [f"{config.type}({column or ''})"]
    if condition:
        parts.append(f"where {condition}")
    if "unexpected_count" in details:
        ids = [str(item.get("file_id")) for item in details.get("partial_unexpected_index_list") or []]
        parts.append(f"{details['unexpected_count']} unexpected" + (f" (file ids {', '.join(ids)})" if ids else ""))
    elif "observed_value" in details:
        parts.append(f"observed {details['observed_value']!r}, expected {kwargs}")
    return " ".join(parts)


def run_gate(name: str, frame: pd.DataFrame, parameters: dict[str, Any], report_dir: Path | None = None) -> GateResult:
    """Validate ``frame`` against suite ``name``; raise ``GateFailed`` when any expectation fails."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    spec = load_suite(name)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    batch = context.data_sources.add_pandas(f"{name}-source").add_dataframe_asset(name).add_batch_definition_whole_dataframe(
        "whole"
    )
    suite = gx.ExpectationSuite(name=name)
    for item in spec["expectations"]:
        suite.add_expectation_configuration(ExpectationConfiguration(type=item["type"], kwargs=item.get("kwargs", {})))
    suite = context.suites.add(suite)
    definition = context.validation_definitions.add(gx.ValidationDefinition(name=f"{name}-gate", data=batch, suite=suite))
    outcome = definition.run(
        batch_parameters={"dataframe": frame},
        expectation_parameters=parameters,
        result_format={
            "result_format": "SUMMARY",
            "unexpected_index_column_names": ["file_id"],
            "partial_unexpected_count": 10,
        },
    )
    failures = [_describe(r) for r in outcome.results if not r.success]
    json_path = html_path = None
    if report_dir is not None:
        report_dir.mkdir(parents=True, exist_ok=True)
        json_path = report_dir / f"{name}.json"
        json_path.write_text(json.dumps(outcome.to_json_dict(), indent=2, default=str), encoding="utf-8")
        html_path = report_dir / f"{name}.html"
        html_path.write_text(_html(outcome), encoding="utf-8")
    result = GateResult(name, bool(outcome.success), len(outcome.results), failures, json_path, html_path)
    log.info("gate %s: %s (%d expectations, %d failed)", name, "passed" if result.success else "FAILED",
             result.evaluated, len(failures))
    if not result.success:
        raise GateFailed(result)
    return result


def _html(outcome: Any) -> str:
    """The validation result rendered as Great Expectations Data Docs render it."""
    from great_expectations.render.renderer import ValidationResultsPageRenderer
    from great_expectations.render.view import DefaultJinjaPageView

    document = ValidationResultsPageRenderer().render(outcome)
    html: str = DefaultJinjaPageView().render(document)
    return html
