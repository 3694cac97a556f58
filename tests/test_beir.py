"""`rag eval --beir` on a tiny BEIR-format folder (30 documents, 8 judged test queries), and its reader."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rag.dev import beir
from rag.errors import CorpusError

TINY = Path(__file__).resolve().parent / "fixtures" / "beir" / "tiny"


def test_reader_keeps_judged_test_queries_with_relevant_documents():
    data = beir.load(TINY)
    assert len(data.docs) == 30 and data.docs[0] == {
        "_id": "d01",
        "title": "Honeybee waggle dance",
        "text": data.docs[0]["text"],
    }
    assert list(data.queries) == [f"q{i}" for i in range(1, 9)]  # q9 has no judgement in qrels/test.tsv
    assert data.qrels["q1"] == {"d01": 1}  # the score-0 judgement of d02 is not a relevant document
    assert data.qrels["q3"] == {"d06": 2, "d07": 1}


def test_conversion_to_the_product_format(tmp_path):
    from rag import corpus

    data = beir.load(TINY)
    path = beir.convert(data.docs, tmp_path)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows[0] == {"id": "d01", "title": "Honeybee waggle dance", "abstract": data.docs[0]["text"]}
    assert rows[-1] == {
        "id": "d30",
        "title": "Exoplanet transit photometry",
        "abstract": "Exoplanet transit photometry",
    }
    loaded = corpus.load([path])
    assert not loaded.problems and len(loaded.papers) == 30
    assert beir.paper_ids(data.docs, loaded.papers) == {d["_id"]: d["_id"] for d in data.docs}


def test_ids_are_mapped_by_text_when_the_product_hashes_them(tmp_path):
    """Without an explicit id the product hashes title and abstract; the mapping still finds every document."""
    from rag import corpus

    data = beir.load(TINY)
    plain = tmp_path / "plain.jsonl"
    plain.write_text(
        "".join(json.dumps({"title": d["title"], "abstract": d["text"] or d["title"]}) + "\n" for d in data.docs)
    )
    papers = corpus.load([plain]).papers
    mapping = beir.paper_ids(data.docs, papers)
    assert mapping == {d["_id"]: corpus.paper_id(d["title"], d["text"] or d["title"]) for d in data.docs}
    assert set(mapping.values()) == {p.paper_id for p in papers}


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda d: (d / "qrels" / "test.tsv").unlink(), r"missing qrels/test.tsv; a BEIR folder has"),
        (
            lambda d: (d / "qrels" / "test.tsv").write_text("q1\td01\t1\n"),
            r"test.tsv: the first line must be the header",
        ),
        (
            lambda d: (d / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1 d01 1\n"),
            r"test.tsv:2: expected query-id, corpus-id",
        ),
        (
            lambda d: (d / "corpus.jsonl").write_text('{"_id": "d1"}\n{"title": "no id"}\n'),
            r"corpus.jsonl:2: a BEIR record needs an '_id'",
        ),
        (lambda d: (d / "queries.jsonl").write_text("{oops\n"), r"queries.jsonl:1: not JSON"),
        (
            lambda d: (d / "queries.jsonl").write_text('{"_id": "other", "text": "t"}\n'),
            r"no query there has a relevant document and a text",
        ),
    ],
)
def test_a_broken_folder_is_one_clear_error(tmp_path, breakage, message):
    folder = shutil.copytree(TINY, tmp_path / "broken")
    breakage(folder)
    with pytest.raises(CorpusError, match=message):
        beir.load(folder)


def test_collection_name_is_one_chroma_accepts(tmp_path):
    assert beir.collection_name(TINY) == "beir-tiny"
    assert beir.collection_name(tmp_path / "SciFact (v2)!") == "beir-SciFact-v2"


@pytest.mark.slow  # `rag eval --beir` twice in a subprocess
def test_rag_eval_beir_end_to_end(tmp_path):
    env = {
        "RAG_DATA_DIR": str(tmp_path / "index"),
        "RAG_EMBED_BACKEND": "hashing",
        "PATH": "/usr/bin:/bin",
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
        "COLUMNS": "100",
    }
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "rag.cli", "eval", "--beir", str(TINY), "--out", str(out)]
    first = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    result = json.loads((out / "beir.json").read_text())
    assert (result["dataset"], result["collection"], result["documents"], result["indexed"], result["queries"]) == (
        "tiny",
        "beir-tiny",
        30,
        30,
        8,
    )
    for method in ("bm25", "dense", "hybrid"):
        assert set(result["methods"][method]) == {"ndcg@10", "recall@10", "recall@100", "mrr@10"}
        assert result["methods"][method]["recall@100"] == 1.0  # 30 documents: every relevant one is within 100
    # obvious answers: BM25 ranks each query's relevant documents first
    assert result["methods"]["bm25"] == {"ndcg@10": 1.0, "recall@10": 1.0, "recall@100": 1.0, "mrr@10": 1.0}
    assert result["per_query"]["q8"]["bm25"]["mrr@10"] == 1.0  # the title-only document was indexed and found
    assert (out / "beir.png").read_bytes()[:4] == b"\x89PNG"
    assert "embedding" in first.stderr and "queries" in first.stderr  # the progress bars
    assert "beir-tiny" in first.stdout and "ndcg@10" in first.stdout

    import chromadb

    client = chromadb.PersistentClient(path=str(tmp_path / "index" / "chroma"))
    assert sorted(c.name for c in client.list_collections()) == [
        "beir-tiny",
        "beir-tiny-papers",
    ]  # the product's own index is untouched

    again = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert json.loads((out / "beir.json").read_text()) == result
