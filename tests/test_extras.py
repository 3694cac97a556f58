"""Each front door whose optional packages are missing stops with one line naming the extra to install.

A subprocess hides the door's modules (None in sys.modules makes them unimportable) and runs the `rag`
command; it must exit 1 with that line and no traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a `rag` process per door

REPO = Path(__file__).resolve().parent.parent
DOORS = [  # (command, hidden modules, extra)
    (["ui"], ["streamlit"], "ui"),
    (["serve"], ["fastapi"], "api"),
    (["serve"], ["uvicorn"], "api"),
    (["mcp"], ["mcp"], "mcp"),
    (["eval"], ["matplotlib"], "eval"),
    (["bench", "--quick"], ["matplotlib"], "eval"),
    (["llm", "serve", "--model", "missing.gguf"], ["xllamacpp"], "local-llm"),
]
RUN_HIDDEN = (
    "import sys; hidden, args = sys.argv[1].split(','), sys.argv[2:]; sys.modules.update(dict.fromkeys(hidden)); "
    "sys.argv = ['rag', *args]; from rag.cli import main; main()"
)


def _extras() -> dict[str, list[str]]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]


@pytest.mark.parametrize(("args", "hidden", "extra"), DOORS, ids=[f"{' '.join(d[0][:2])}-{d[1][0]}" for d in DOORS])
def test_a_door_without_its_extra_names_it_in_one_line(
    tmp_path: Path, args: list[str], hidden: list[str], extra: str
) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAG_DATA_DIR": str(tmp_path / "index")}
    done = subprocess.run(
        [sys.executable, "-c", RUN_HIDDEN, ",".join(hidden), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"needs the {extra} extra: pip install 'rag-abstracts[{extra}]'" in lines[0]
    assert extra in _extras(), f"pyproject.toml declares no {extra} extra"


def test_all_installs_every_front_door_and_test_every_extra() -> None:
    extras = _extras()
    doors = [extra for extra in extras if extra not in {"all", "test", "local-llm"}]
    assert extras["all"] == [f"rag-abstracts[{','.join(doors)}]"]
    assert "rag-abstracts[all,local-llm]" in extras["test"]
