"""A scenario's result: its figures (for the JSON), its table rows and its goals."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

Figure = float | int | str | dict | list | None


@dataclass
class Row:
    """One line of the table: a figure, what it is set against, and the goal if it has one."""

    label: str
    value: str
    against: str = ""
    ratio: float | None = None
    goal: str = ""
    met: bool | None = None


@dataclass
class Result:
    scenario: str
    setup: str  # sizes and processes, in words
    config: dict = field(default_factory=dict)
    figures: dict[str, Figure] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # problems seen: stuck turns, errors
    error: str | None = None  # the scenario could not run to the end

    def row(self, label: str, value: str, against: str = "", ratio: float | None = None) -> Row:
        row = Row(label, value, against, ratio)
        self.rows.append(row)
        return row

    def goal(self, row: Row, text: str, met: bool | None) -> None:
        row.goal, row.met = text, met

    def note_problems(self, outcomes: list, unfinished: dict[str, int]) -> None:
        """Failed requests and turns left unfinished go in the notes, with their reasons."""
        for outcome in outcomes:
            if outcome.failed:
                self.notes.append(f"failed requests: {dict(outcome.failures.most_common(5))}")
            if outcome.late:
                self.notes.append(
                    f"{outcome.late} turns took longer than the API's 60 s wait "
                    "(followed to the end on their event stream)"
                )
            if outcome.early:
                after = sorted(outcome.early)
                self.notes.append(
                    f"{len(after)} requests with wait=60 got 202 (not finished) after only "
                    f"{after[0]:.1f}-{after[-1]:.1f} s (median {after[len(after) // 2]:.1f} s); "
                    "followed to the end on the turn's event stream"
                )
        if unfinished:
            self.notes.append(f"turns not finished 30 s after the load, by status: {unfinished}")

    @property
    def goals(self) -> list[dict]:
        return [{"figure": r.label, "goal": r.goal, "met": r.met} for r in self.rows if r.goal]

    @property
    def met(self) -> bool | None:
        verdicts = [g["met"] for g in self.goals]
        if self.error or None in verdicts:
            return None
        return all(verdicts)

    def as_json(self) -> dict:
        return {
            "setup": self.setup,
            "config": self.config,
            "figures": self.figures,
            "goals": self.goals,
            "met": self.met,
            "notes": self.notes,
            "error": self.error,
        }


def ratio(value: float | None, floor: float | None) -> float | None:
    if value is None or not floor:
        return None
    return value / floor


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def num(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, int) or abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def platform_cpu(per_component: dict[str, float]) -> float:
    """CPU of the platform and its client; `other` (the rest of the machine) left out."""
    return sum(v for k, v in per_component.items() if k != "other")


def verdict(met: bool | None) -> str:
    return {True: "met", False: "MISSED", None: "n/a"}[met]


def table(results: list[Result], header: list[str]) -> str:
    lines = [*header, ""]
    widths = (34, 20, 30, 7, 14)
    for result in results:
        lines.append(f"{result.scenario} — {result.setup}")
        if result.error:
            lines.append(f"  could not finish: {result.error}")
        cells = ("figure", "value", "against", "ratio", "goal")
        lines.append("  " + "".join((c + " ").ljust(w) for c, w in zip(cells, widths, strict=True)))
        for row in result.rows:
            ratio_text = "" if row.ratio is None else f"{row.ratio:.2f}"
            cells = (row.label, row.value, row.against, ratio_text, row.goal)
            text = "".join((c + " ").ljust(w) for c, w in zip(cells, widths, strict=True))
            if row.goal:
                text += verdict(row.met)
            lines.append(("  " + text).rstrip())
        for note in result.notes:
            lines.append(f"  ! {note}")
        lines.append("")
    return "\n".join(lines)


def write_json(path: str, machine: dict, options: dict, results: list[Result]) -> None:
    document = {
        "machine": machine,
        "options": options,
        "scenarios": {result.scenario: result.as_json() for result in results},
    }
    Path(path).write_text(json.dumps(document, indent=2, default=str) + "\n")
