"""What `modeltriage lint` found, and how it is printed: a table grouped by file with
file:line, or JSON. Pure: the checks are :mod:`modeltriage.learn.lint`'s."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Finding:
    """One problem, at the file and line a person would edit."""

    severity: Severity
    check: str
    intent: str | None
    message: str
    file: str | None = None
    line: int | None = None
    text: str | None = None  # the exemplar, when the finding is about one


@dataclass(frozen=True)
class LintReport:
    intents: int
    exemplars: int
    loo_accuracy: float
    low_margin_share: float
    no_match_share: float
    findings: list[Finding] = field(default_factory=list)
    index_note: str | None = None
    per_intent_accuracy: dict[str, float] = field(default_factory=dict)

    @property
    def errors(self) -> int:
        return sum(f.severity == "error" for f in self.findings)

    @property
    def warnings(self) -> int:
        return sum(f.severity == "warning" for f in self.findings)

    def exit_status(self, strict: bool = False) -> int:
        """1 when an error was found, or a warning with ``strict``; else 0."""
        return int(self.errors > 0 or (strict and self.warnings > 0))

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["errors"] = self.errors
        data["warnings"] = self.warnings
        return data


def _clip(text: str, width: int = 60) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def format_lint(report: LintReport) -> str:
    """Findings grouped by file, errors first within a file, then a summary (the
    index note is the caller's to print: the CLI sends it to stderr)."""
    by_file: defaultdict[str, list[Finding]] = defaultdict(list)
    for finding in report.findings:
        by_file[finding.file or "(intents)"].append(finding)
    lines: list[str] = []
    for file in sorted(by_file):
        lines.append(file)
        ordered = sorted(by_file[file], key=lambda f: (f.severity != "error", f.line or 0, f.check))
        for f in ordered:
            where = f"{file}:{f.line}" if f.line is not None else file
            text = f'  "{_clip(f.text)}"' if f.text is not None else ""
            lines.append(f"  {where:<40} {f.severity:<7} {f.check:<19} {f.message}{text}")
        lines.append("")
    lines.append(
        f"{report.exemplars} exemplars in {report.intents} intents: leave-one-out accuracy "
        f"{100 * report.loo_accuracy:.1f}%, low margin {100 * report.low_margin_share:.1f}%, "
        f"no match {100 * report.no_match_share:.1f}%"
    )
    lines.append(f"{report.errors} errors, {report.warnings} warnings")
    return "\n".join(lines)
