"""The README's examples, run as written against a live stack shaped like `make run`'s.

The commands come from README.md's code blocks, so an edit there is tested: the
conversation, the sub-agent, the cron job, the tenant commands, and the scaling
commands' `--help` (each option the README passes must be one the command has). A
command must exit 0, and where the README shows the answer (`# → {...}`) the output
must have that shape. Sections this test does not name are left alone.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.core.management import call_command

from beamclaw.celery import tenant_queue
from tenants.models import Tenant
from tests.support import ROOT, active_queues, wait_until, worker_is_idle

README = ROOT / "README.md"
README_BASE_URL = "http://127.0.0.1:8000"
# Fresh sequences: the README's ids (turn 1, cron job 1) are a fresh install's.
pytestmark = pytest.mark.django_db(transaction=True, reset_sequences=True)


@dataclass
class Command:
    text: str
    shown: list[str] = field(default_factory=list)  # the `# → ...` lines after it


def code_blocks(section: str) -> list[str]:
    """The shell code blocks under a heading, up to the next heading of its level or higher
    (a `# comment` inside a code block is not a heading)."""
    blocks: list[str] = []
    level = 0  # of the section once found
    fence: list[str] | None = None  # lines of the sh block being read
    in_other_block = False
    for line in README.read_text().splitlines():
        if fence is not None:
            if line.startswith("```"):
                blocks.append("\n".join(fence) + "\n")
                fence = None
            else:
                fence.append(line)
            continue
        if line.startswith("```"):
            in_other_block = not in_other_block
            if level and line.strip() == "```sh":
                fence, in_other_block = [], False
            continue
        if in_other_block or not (heading := re.match(r"^(#+) (.*?)\s*$", line)):
            continue
        if level and len(heading.group(1)) <= level:
            break
        if not level and heading.group(2) == section:
            level = len(heading.group(1))
    assert level, f"README.md has no section '{section}'"
    return blocks


def commands(block: str) -> list[Command]:
    """Split a block into commands: backslash continuations and multi-line quotes join."""
    found: list[Command] = []
    pending = ""
    for line in block.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            if stripped.startswith("# →") and found:
                found[-1].shown.append(stripped[len("# →") :].strip())
            continue
        pending += line + "\n"
        if pending.rstrip().endswith("\\"):
            continue
        try:
            shlex.split(pending, comments=True)
        except ValueError:  # an open quote: the command goes on
            continue
        found.append(Command(pending.strip()))
        pending = ""
    assert not pending, f"unfinished command in README block:\n{pending}"
    return found


def expected_shape(shown: str) -> object | None:
    """The JSON the README shows after `# →`, with its `...` elisions dropped."""
    text = re.sub(r"^\d{3}\s+", "", shown)  # "201 {...}": the status is not in curl -s
    text = re.sub(r",\s*\.\.\.", "", text)
    text = re.sub(r"\.\.\.,?\s*", "", text)
    try:
        return json.loads(text)
    except ValueError:
        return None


ISO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")


def assert_shape(actual: object, expected: object, where: str) -> None:
    """Same keys (at least), same kinds of values; strings equal unless they are times."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: expected an object, got {actual!r}"
        for name, value in expected.items():
            assert name in actual, f"{where}: no '{name}' in {actual!r}"
            assert_shape(actual[name], value, f"{where}.{name}")
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{where}: expected a list, got {actual!r}"
        if expected:
            assert actual, f"{where}: expected items, got none"
            assert_shape(actual[0], expected[0], f"{where}[0]")
    elif isinstance(expected, str) and not ISO_TIME.match(expected):
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"
    elif expected is not None:
        assert type(actual) is type(expected), f"{where}: {actual!r} is not like {expected!r}"


@pytest.fixture
def demo_dir(tmp_path, settings):
    """The project's root as `make run` leaves it, with a var/ of its own: the README's
    relative paths work, and var/demo.json is written by the real bootstrap_demo."""
    for entry in ROOT.iterdir():
        if entry.name not in ("var", ".git"):
            (tmp_path / entry.name).symlink_to(entry)
    settings.VAR_DIR = tmp_path / "var"
    settings.VAR_DIR.mkdir()
    settings.OPENAI_API_KEY = settings.ANTHROPIC_API_KEY = ""  # the offline demo agent
    call_command("bootstrap_demo", stdout=open(os.devnull, "w"))  # noqa: SIM115
    return tmp_path


@pytest.fixture
def stack(platform_env, worker, web, log_dir):
    """web + worker + beat on the suite's Redis and database, as `make run` starts them."""
    from tests.conftest import start_beat

    beat = start_beat(platform_env, log_dir, name="readme-beat")
    yield web
    beat.stop()


def run(command: Command, *, cwd: Path, env: dict[str, str], prelude: str) -> str:
    result = subprocess.run(
        ["bash", "-c", f"set -euo pipefail\n{prelude}{command.text}"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, (
        f"README command failed (exit {result.returncode}):\n{command.text}\n"
        f"stdout: {result.stdout[-2000:]}\nstderr: {result.stderr[-2000:]}"
    )
    return result.stdout


def check_output(command: Command, output: str) -> None:
    for shown in command.shown:
        expected = expected_shape(shown)
        if expected is None:
            continue
        try:
            actual = json.loads(output)
        except ValueError:
            raise AssertionError(f"not JSON, while the README shows {shown}:\n{output[:2000]}")
        try:
            assert_shape(actual, expected, command.text.splitlines()[0][:60])
        except AssertionError as mismatch:
            raise AssertionError(f"{mismatch}\nthe whole answer: {output[:3000]}") from None


def shell_env(platform_env: dict[str, str], demo_dir: Path) -> dict[str, str]:
    # A fresh machine's PATH: no virtualenv on it, so a bare `python` or `celery` fails.
    env = dict(platform_env, PATH="/usr/bin:/bin", BEAMCLAW_VAR_DIR=str(demo_dir / "var"))
    # A new shell: DEBUG is on only where the README turns it on (`export DEBUG=1`).
    env.pop("DEBUG", None)
    return env


# Some twenty commands, each a fresh Python process; on SQLite under a busy suite that
# passes the default 120 s, while each command keeps its own 120 s limit.
@pytest.mark.timeout(360)
def test_the_readme_examples_run_as_written(stack, demo_dir, platform_env):
    # As under `make run`, where the worker starts after bootstrap_demo: the demo tenant's
    # queue is consumed before the first message (a busy suite's worker can take its
    # reconcile tick late, and the README's `"wait": 30` would then answer `queued`).
    queue = tenant_queue(Tenant.objects.get().slug)
    hostname = f"worker@{os.uname().nodename}"
    wait_until(lambda: queue in active_queues(hostname), timeout=60, message=f"{queue} consumed")
    # And idle, as a fresh `make run`'s worker is: the suite's earlier tests may have left it
    # turns to finish, and the README's answers within `"wait": 30` are an idle stack's.
    wait_until(lambda: worker_is_idle(hostname), timeout=120, message="the worker idle")
    env = shell_env(platform_env, demo_dir)
    prelude = ""  # variable assignments (KEY=..., API=...) carry to later commands
    sections = [
        ("A conversation", None),
        ("Sub-agents", None),
        ("Scheduled jobs", 1),  # the first block; the second needs a Slack workspace
        ("Tenants and API keys by hand", None),
        ("Marketplace", None),
    ]
    ran = 0
    for section, count in sections:
        blocks = code_blocks(section)
        assert blocks, f"README section '{section}' has no sh block"
        for block in blocks[:count]:
            for command in commands(block.replace(README_BASE_URL, stack)):
                # `KEY=$(...)`, `API=http://...` or `export DEBUG=1` alone; not
                # `DEBUG=1 manage.py ...`. Later commands run in the same shell, as a reader's.
                assignment = re.sub(r"^export\s+", "", re.sub(r"\s+#.*$", "", command.text))
                if re.fullmatch(r"[A-Z_]+=(\$\(.*\)|\S+)", assignment):
                    run(command, cwd=demo_dir, env=env, prelude=prelude)
                    prelude += command.text + "\n"
                    continue
                check_output(command, run(command, cwd=demo_dir, env=env, prelude=prelude))
                ran += 1
    assert ran >= 10


def test_the_readme_scaling_commands_exist_with_the_options_it_shows(demo_dir, platform_env):
    # The reader's shell, which exported DEBUG=1 in "A conversation".
    env = dict(shell_env(platform_env, demo_dir), DEBUG="1")
    makefile = (ROOT / "Makefile").read_text()
    checked = 0
    for block in code_blocks("Scaling out"):
        for command in commands(block):
            words = shlex.split(command.text, comments=True)
            if words[0] == "curl":
                continue  # answers of the running stack, not commands of this install
            if words[0] == "make":  # make targets reinstall the virtualenv: not run here
                assert re.search(rf"^{words[1]}:", makefile, re.MULTILINE), command.text
                if words[1] != "worker":
                    continue
                # `make worker ARGS=...` passes ARGS to a Celery worker.
                passed = [w for w in words[2:] if w.startswith("ARGS=")]
                extra = shlex.split(passed[0][len("ARGS=") :]) if passed else []
                words = [".venv/bin/celery", "-A", "beamclaw", "worker", *extra]
            # `.venv/bin/python manage.py <cmd> ...` or `.venv/bin/celery -A beamclaw <cmd> ...`
            prefix = {".venv/bin/python": 3, ".venv/bin/celery": 4}.get(words[0])
            assert prefix, f"{command.text}: not run through .venv/bin like the other sections"
            program = prefix
            help_text = run(
                Command(shlex.join([*words[:program], "--help"])),
                cwd=demo_dir,
                env=env,
                prelude="",
            )
            for option in (w.split("=")[0] for w in words[program:] if w.startswith("--")):
                assert option in help_text, f"{command.text}: no {option} in its --help"
            checked += 1
    assert checked >= 5


def test_the_readme_splitter_keeps_multi_line_commands_whole():
    block = 'X=1\ncurl -s \\\n  -d \'{"a": 1,\n  "b": 2}\'\n# → {"a": 1, ...}\n# note\n'
    found = commands(block)
    assert [c.text.splitlines()[0] for c in found] == ["X=1", "curl -s \\"]
    assert found[1].shown == ['{"a": 1, ...}']
    assert expected_shape(found[1].shown[0]) == {"a": 1}
