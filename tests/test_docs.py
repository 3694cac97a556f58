"""The README is a first page that points into docs/: its links resolve, its test command is the one CI
runs, docs/cli.md names every command the CLI has, and the eval scripts they point to start."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.main import get_command

from rag.cli import app

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_the_readme_is_a_first_page():
    assert len(README.splitlines()) < 120


def test_every_link_of_the_readme_and_the_docs_resolves():
    for page in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def test_the_readme_test_command_is_the_last_line_ci_runs():
    ci_last = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert f"```bash\n{ci_last}\n```" in README
    assert "-v" in ci_last.split() and "--durations=10" in ci_last.split()


def _commands(group, prefix: str = "rag") -> list[str]:
    names = []
    for name, command in group.commands.items():
        names += _commands(command, f"{prefix} {name}") if hasattr(command, "commands") else [f"{prefix} {name}"]
    return names


def test_the_cli_doc_names_every_command():
    doc = (ROOT / "docs" / "cli.md").read_text()
    commands = _commands(get_command(app))
    assert "rag ask" in commands and "rag corpus stats" in commands
    for command in commands:
        assert f"\n{command}" in doc, f"docs/cli.md does not show `{command}`"


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "eval").glob("*.py")))
def test_every_eval_script_starts(script):
    """The scripts the docs and BENCHMARKS.md tell people to run import what they need (a moved module shows here)."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "eval" / script), "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and "usage" in done.stdout.lower(), done.stderr[-2000:]
