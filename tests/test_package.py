"""The package as a user installs it: a built wheel, installed non-editable into a fresh venv,
run from a directory that has nothing to do with the source tree.

The fresh venv borrows the test venv's third-party packages through a `.pth` line (no network,
no second copy of chromadb), but `rag` itself comes only from the wheel: the repository is not
on its sys.path, so a file the wheel forgets to ship makes these tests fail.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import free_port, wait_for_ui

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "__pycache__",
    "*.egg-info",
    "build",
    "dist",
    ".pytest_cache",
    "test-artifacts",
    "out",
    "index",
    "tests",
)
FP8_QUESTION = "which papers report FP8 training speedups?"
TIMEOUT = 300


@dataclass
class Installed:
    venv: Path
    site: Path  # the fresh venv's own site-packages, where the wheel went
    work: Path  # an unrelated working directory
    xdg: Path  # XDG_DATA_HOME: where the default index must land
    env: dict[str, str]

    def run(self, args: list[str], timeout: float = TIMEOUT, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            args, cwd=self.work, env={**self.env, **extra}, capture_output=True, text=True, timeout=timeout
        )

    def rag(self, *args: str, **extra: str) -> subprocess.CompletedProcess:
        return self.run([str(self.venv / "bin" / "rag"), *args], **extra)

    def python(self, code: str) -> subprocess.CompletedProcess:
        return self.run([str(self.venv / "bin" / "python"), "-c", code])


def _check(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"{proc.args} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def _copy_source(root: Path) -> Path:
    """A copy of the source tree: builds write build/ and *.egg-info beside the sources."""
    src = root / "src"
    shutil.copytree(REPO, src, ignore=NOT_SOURCE)
    return src


def _build_wheel(src: Path, root: Path) -> Path:
    dist = root / "dist"
    _check(
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--no-build-isolation",
                "--no-index",
                "-q",
                "-w",
                str(dist),
                str(src),
            ],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
    )
    wheels = sorted(dist.glob("rag_abstracts-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def _fresh_venv(venv: Path) -> tuple[Path, Path]:
    """A venv whose own site-packages is empty but for a line pointing at this venv's packages."""
    _check(
        subprocess.run(
            [sys.executable, "-m", "venv", "--without-pip", str(venv)], capture_output=True, text=True, timeout=TIMEOUT
        )
    )
    site = Path(
        _check(
            subprocess.run(
                [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                capture_output=True,
                text=True,
                timeout=60,
            )
        ).stdout.strip()
    )
    # A plain path line: the borrowed folder's own .pth files (the editable install of the
    # repository among them) are not run, so they cannot put the source tree on sys.path.
    (site / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv, site


def _clean_env() -> dict[str, str]:
    """This environment without RAG_* settings or anything that would put the repository on sys.path."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith("RAG_") and k not in ("PYTHONPATH", "PYTHONHOME")
    }


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("package")
    wheel = _build_wheel(_copy_source(root), root)
    venv, site = _fresh_venv(root / "venv")
    env = _clean_env()
    env.update(
        HOME=str(root / "home"),
        XDG_DATA_HOME=str(root / "xdg"),
        RAG_EMBED_BACKEND="hashing",
        ANONYMIZED_TELEMETRY="False",
    )
    (root / "home").mkdir()
    work = root / "elsewhere"
    work.mkdir()
    inst = Installed(venv, site, work, root / "xdg", env)
    _check(
        inst.run(
            [
                str(venv / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "-q",
                "--no-deps",
                "--no-index",
                "--force-reinstall",
                str(wheel),
            ]
        )
    )
    return inst


def test_rag_is_imported_from_the_wheel_with_its_files(installed: Installed):
    code = (
        "import json, sys, rag, rag.config as c, rag.prompt as a\n"
        "print(json.dumps({'rag': rag.__file__, 'path': sys.path, 'prompt': a.load_prompt('system')[:40],\n"
        "  'dirs': {n: str(getattr(c, n)) for n in ('PROMPTS_DIR', 'UI_DIR', 'DEFAULT_CORPUS', 'DATASETS_DIR')},\n"
        "  'data_dir': str(c.Settings().data_dir)}))"
    )
    got = json.loads(_check(installed.python(code)).stdout)
    assert Path(got["rag"]).is_relative_to(installed.site), got["rag"]
    assert str(REPO) not in [str(Path(p).resolve()) for p in got["path"] if p], got["path"]
    assert got["prompt"].strip(), "the system prompt is empty"
    for name, folder in got["dirs"].items():
        assert Path(folder).is_relative_to(installed.site / "rag"), (name, folder)
    assert sorted(p.name for p in Path(got["dirs"]["PROMPTS_DIR"]).glob("*.txt")) == sorted(
        p.name for p in (REPO / "prompts").glob("*.txt")
    )
    assert (Path(got["dirs"]["UI_DIR"]) / "app.py").is_file()
    assert sorted(p.name for p in Path(got["dirs"]["DEFAULT_CORPUS"]).iterdir()) == sorted(
        p.name for p in (REPO / "data" / "corpus").iterdir()
    )
    assert (Path(got["dirs"]["DATASETS_DIR"]) / "default.jsonl").is_file()
    assert got["data_dir"] == str(installed.xdg / "rag-abstracts")  # the per-user folder, not the package


def test_help_lists_the_commands(installed: Installed):
    proc = _check(installed.rag("--help"))
    for command in ("ask", "search", "ingest", "eval", "ui"):
        assert command in proc.stdout, proc.stdout


def test_ask_indexes_the_bundled_corpus_into_the_user_data_folder(installed: Installed):
    proc = _check(installed.rag("ask", "--json", FP8_QUESTION))
    answer = json.loads(proc.stdout)
    assert "index is empty" in proc.stderr
    assert not answer["refused"], answer["answer"]
    assert answer["citations"] and all("FP8" in c["title"] for c in answer["citations"]), answer["answer"]
    bundled = {p.name for p in (REPO / "data" / "corpus").iterdir()}
    assert answer["sources"] and all(s["source"] in bundled for s in answer["sources"]), answer["sources"]
    assert (installed.xdg / "rag-abstracts" / "chroma").is_dir()
    assert not list(installed.work.iterdir()), "rag ask wrote into the working directory"


def test_eval_runs_on_questions_from_the_bundled_dataset(installed: Installed):
    datasets = Path(_check(installed.python("import rag.config as c; print(c.DATASETS_DIR)")).stdout.strip())
    subset = installed.work.parent / "three.jsonl"
    subset.write_text("".join((datasets / "default.jsonl").read_text().splitlines(keepends=True)[:3]))
    out = installed.work.parent / "eval-out"
    proc = _check(installed.rag("eval", "--dataset", str(subset), "--out", str(out)))
    assert "3 questions in" in proc.stdout, proc.stdout
    results = json.loads((out / "results.json").read_text())
    assert [q["id"] for q in results["questions"]] == ["q001", "q002", "q003"]
    assert (out / "report.md").is_file()


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_ui_serves_and_a_sigterm_stops_the_server(installed: Installed):
    port = free_port()
    log = installed.work.parent / "ui.log"
    with open(log, "wb") as sink:
        proc = subprocess.Popen(
            [str(installed.venv / "bin" / "rag"), "ui", "--port", str(port)],
            cwd=installed.work,
            env=installed.env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_ui(proc, f"http://127.0.0.1:{port}", log)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
            assert r.status == 200

        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        deadline = time.monotonic() + 10
        while _port_open(port) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _port_open(port), "the UI still serves after `rag ui` was stopped"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_an_editable_install_reads_the_checkout(tmp_path: Path):
    """`pip install -e '.[all]'` (the README's set-up): the files are read where they sit in the checkout."""
    src = _copy_source(tmp_path)
    venv, _ = _fresh_venv(tmp_path / "venv")
    python = str(venv / "bin" / "python")
    env = _clean_env()
    _check(
        subprocess.run(
            [python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--no-build-isolation", "-e", str(src)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
    )
    code = (
        "import json, rag.config as c, rag.prompt as a\n"
        "print(json.dumps({'root': str(c.PROJECT_ROOT), 'ui': str(c.UI_DIR), 'prompt': a.load_prompt('system')[:40]}))"
    )
    got = json.loads(
        _check(
            subprocess.run([python, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        ).stdout
    )
    assert got["root"] == str(src) and got["ui"] == str(src / "ui"), got
    assert got["prompt"] == (src / "prompts" / "system.txt").read_text()[:40]
