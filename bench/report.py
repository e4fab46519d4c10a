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


# What serves a turn: the goals compare this. The fake model server, celery-beat, the bench
# client and the rest of the machine (`other`) are shown beside it, each on its own line.
SERVER = ("web", "workers", "postgres", "redis", "rabbitmq")
NOT_SERVER = ("model", "beat", "client", "other")


def server_cpu(per_component: dict[str, float]) -> float:
    """Server CPU per unit: web + workers + PostgreSQL + Redis (+ RabbitMQ if it is the
    broker), the sum of the lines cpu_rows() shows for it."""
    return round(sum(round(per_component.get(k, 0.0), 2) for k in SERVER), 2)


def cpu_rows(result: Result, label: str, per_component: dict[str, float]) -> Row:
    """Two rows whose values are the sums of the lines they show: the server's CPU per
    unit by process, then everything the machine spent (server, model, beat, the bench
    client, the rest of the machine). Returns the server's row (for a goal)."""
    shown = {k: round(v, 2) for k, v in per_component.items()}
    server_parts = [k for k in SERVER if k in shown and (shown[k] or k != "rabbitmq")]
    server = server_cpu(shown)
    row = result.row(
        f"server CPU ms per {label}",
        f"{server:.2f}",
        " + ".join(f"{k} {shown[k]:.2f}" for k in server_parts),
    )
    rest = [k for k in NOT_SERVER if k in shown]
    total = round(server + sum(shown[k] for k in rest), 2)
    result.row(
        f"  all CPU ms per {label}",
        f"{total:.2f}",
        " + ".join([f"server {server:.2f}", *(f"{k} {shown[k]:.2f}" for k in rest)]),
    )
    return row


def median_range(values: list[float]) -> tuple[float | None, float | None, float | None]:
    """(median, min, max) of repeated runs; Nones for none."""
    if not values:
        return None, None, None
    ordered = sorted(values)
    middle = len(ordered) // 2
    median = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    return median, ordered[0], ordered[-1]


def spread(values: list[float]) -> str:
    """`median (min-max, n runs)`, or `value (1 run)`."""
    median, low, high = median_range(values)
    if median is None:
        return "-"
    if len(values) == 1:
        return f"{num(median)} (1 run)"
    return f"{num(median)} ({num(low)}-{num(high)}, {len(values)} runs)"


def verdict(met: bool | None) -> str:
    return {True: "met", False: "MISSED", None: "n/a"}[met]


def table(results: list[Result], header: list[str]) -> str:
    lines = [*header, ""]
    widths = (34, 26, 30, 7, 14)
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
