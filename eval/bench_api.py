"""Load on `rag serve`: requests/s and p95 latency with 1, 10 and 50 concurrent clients, for `/v1/search`
and extractive `/v1/chat/completions`. Every response must equal the one the same request got when sent
alone; the script exits 1 if any differs or fails. Writes bench_api.json and bench_api.png to --out.

    python eval/bench_api.py [--out bench-out] [--requests 200] [--max-seconds 60] [--questions 20]

The server is a real `rag serve` subprocess on 127.0.0.1 over the configured index (RAG_DATA_DIR etc.;
an empty index is filled with the default corpus first), answering extractively.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = (1, 10, 50)
TIMEOUT = 120.0  # seconds per request; the first one also builds the index


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_questions(n: int) -> list[str]:
    lines = (ROOT / "eval" / "datasets" / "default.jsonl").read_text().splitlines()
    return [json.loads(line)["question"] for line in lines if line.strip()][:n]


def search_request(question: str) -> tuple[str, dict[str, Any]]:
    return "/v1/search", {"query": question}


def chat_request(question: str) -> tuple[str, dict[str, Any]]:
    return "/v1/chat/completions", {"model": "any", "messages": [{"role": "user", "content": question}]}


def search_print(body: dict[str, Any]) -> Any:
    return [(h["paper_id"], h["score"]) for h in body["results"]]


def chat_print(body: dict[str, Any]) -> Any:
    rag = body["rag"]
    return (
        body["choices"][0]["message"]["content"],
        rag["refused"],
        [(c["n"], c["paper_id"], c["quote"]) for c in rag["citations"]],
        [s["paper_id"] for s in rag["sources"]],
    )


ENDPOINTS: dict[str, tuple[Callable[[str], tuple[str, dict]], Callable[[dict], Any]]] = {
    "search": (search_request, search_print),
    "chat (extractive)": (chat_request, chat_print),
}


def start_server(port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "RAG_LLM_BACKEND": "extractive", "ANONYMIZED_TELEMETRY": "False"}
    with open(log, "wb") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rag.cli", "serve", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=f,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            sys.exit(f"rag serve did not start; its log:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.3)


async def serial(base: str, questions: list[str]) -> dict[str, list[Any]]:
    """Each request alone, once: the answers every concurrent run must reproduce."""
    expected: dict[str, list[Any]] = {}
    async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT) as client:
        for name, (build, fingerprint) in ENDPOINTS.items():
            expected[name] = []
            for q in questions:
                path, body = build(q)
                r = await client.post(path, json=body)
                r.raise_for_status()
                expected[name].append(fingerprint(r.json()))
    return expected


async def load(
    base: str, name: str, clients: int, questions: list[str], expected: list[Any], total: int, max_seconds: float
) -> dict[str, Any]:
    """`clients` workers send requests back to back until `total` are done or time is up."""
    build, fingerprint = ENDPOINTS[name]
    latencies: list[float] = []
    failures: Counter[str] = Counter()  # what went wrong, so a failed request can be looked into
    wrong = issued = 0
    deadline = time.monotonic() + max_seconds

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal issued, wrong
        while issued < total and time.monotonic() < deadline:
            i = issued % len(questions)
            issued += 1
            path, body = build(questions[i])
            t = time.perf_counter()
            try:
                r = await client.post(path, json=body)
                failure = None if r.status_code == 200 else f"HTTP {r.status_code}: {r.text[:200]}"
                wrong += failure is None and fingerprint(r.json()) != expected[i]
            except httpx.HTTPError as e:
                failure = f"{type(e).__name__}: {e}"
            latencies.append(time.perf_counter() - t)
            failures.update([failure] if failure else [])

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT, limits=limits) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(clients)))
        seconds = time.perf_counter() - t0
    ordered = sorted(latencies)
    return {
        "endpoint": name,
        "clients": clients,
        "requests": len(ordered),
        "seconds": round(seconds, 3),
        "requests_per_s": round(len(ordered) / seconds, 2),
        "p50_ms": round(1000 * ordered[len(ordered) // 2], 1),
        "p95_ms": round(1000 * ordered[math.ceil(0.95 * len(ordered)) - 1], 1),
        "max_ms": round(1000 * ordered[-1], 1),
        "failed": failures.total(),
        "failures": dict(failures),
        "different_from_serial": wrong,
        "load_average_1m": round(
            os.getloadavg()[0], 2
        ),  # other work on the machine skews the figures; this says how much
    }


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (rate, p95) = plt.subplots(1, 2, figsize=(10, 4))
    for name in ENDPOINTS:
        mine = [r for r in rows if r["endpoint"] == name]
        rate.plot([r["clients"] for r in mine], [r["requests_per_s"] for r in mine], marker="o", label=name)
        p95.plot([r["clients"] for r in mine], [r["p95_ms"] for r in mine], marker="o", label=name)
    for ax, label in ((rate, "requests/s"), (p95, "p95 latency (ms)")):
        ax.set_xscale("log")
        ax.set_xticks(CLIENTS, [str(c) for c in CLIENTS])
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("rag serve on 127.0.0.1 (extractive answers)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench-out")
    parser.add_argument("--requests", type=int, default=200, help="Requests per endpoint and client count.")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="Time limit per endpoint and client count.")
    parser.add_argument(
        "--questions", type=int, default=20, help="Distinct questions, from eval/datasets/default.jsonl."
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_server(port, args.out / "server.log")
    try:
        questions = load_questions(args.questions)
        t = time.perf_counter()
        expected = asyncio.run(serial(base, questions))
        print(
            f"serial pass ({len(questions)} questions per endpoint, index opened on first use): {time.perf_counter() - t:.1f} s"
        )
        rows = []
        for name in ENDPOINTS:
            for clients in CLIENTS:
                row = asyncio.run(load(base, name, clients, questions, expected[name], args.requests, args.max_seconds))
                rows.append(row)
                print(
                    f"{name:18} {clients:3} clients: {row['requests']:4} requests in {row['seconds']:6.1f} s, "
                    f"{row['requests_per_s']:7.1f} req/s, p50 {row['p50_ms']:7.1f} ms, p95 {row['p95_ms']:7.1f} ms, "
                    f"failed {row['failed']}, different from serial {row['different_from_serial']}, "
                    f"load average {row['load_average_1m']:.1f} on {os.cpu_count()} cores"
                )
                for failure, count in row["failures"].items():
                    print(f"    {count} x {failure}")
    finally:
        server.terminate()
        server.wait(timeout=15)
    (args.out / "bench_api.json").write_text(
        json.dumps({"questions": len(questions), "cores": os.cpu_count(), "runs": rows}, indent=2)
    )
    plot(rows, args.out / "bench_api.png")
    print(f"wrote {args.out / 'bench_api.json'} and {args.out / 'bench_api.png'}")
    if any(r["failed"] or r["different_from_serial"] for r in rows):
        sys.exit("some responses failed or differed from the serial ones")


if __name__ == "__main__":
    main()
