"""What can go wrong with the index, found and said in one line: Chroma's files checked on disk, the
paper records recovered from its sqlite file, a failure put down to its cause (a stopped server, a full
disk, damaged files, vectors of another size).

A kill while Chroma rewrites its vector files leaves one cut short, and from then on Chroma fails (or
crashes) on every read of that collection; these checks find that from the files themselves, and
`sqlite_records` reads what its sqlite tables still hold whole; `forget_deleted_lists` clears what Chroma leaves
behind of a deleted collection. Only `rag.store` uses this module.
"""

from __future__ import annotations

import errno
import pickletools
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from rag.errors import StoreError

FULL_SIGNS = ("database or disk is full", "No space left on device")


def damaged(folder: Path) -> str | None:
    """What is wrong with the files of the embedded index in `folder`, checked rather than guessed from an
    error message (None: nothing found). Reads only: sqlite is opened read-only for a quick check."""
    sqlite = folder / "chroma.sqlite3"
    if not sqlite.exists():
        return None
    try:
        with closing(sqlite3.connect(f"{sqlite.resolve().as_uri()}?mode=ro", uri=True)) as db:
            verdict = db.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.Error as e:
        if any(sign in str(e) for sign in FULL_SIGNS + ("unable to open", "readonly")):
            return None  # could not look (no room for its lock file): no sign of damage
        return f"chroma.sqlite3 cannot be read: {e}"
    if verdict != "ok":
        return f"chroma.sqlite3 failed an integrity check: {str(verdict)[:80]}"
    return next((f"the vectors of collection {name!r}: {why}" for name, why in vector_damage(folder).items()), None)


def store_error(e: BaseException, where: str, timeout: float) -> StoreError:
    """One line saying what failed in Chroma and how to get going again."""
    said = " ".join(str(e).split())[:160]
    name = type(e).__name__
    if "Timeout" in name:
        return StoreError(
            f"no answer from the Chroma server at {where} within {timeout:g} s (is it stopped or overloaded?); "
            "check the server and run this again"
        )
    if transport_failure(e):
        return StoreError(
            f"lost the connection to the Chroma server at {where} ({name}); restart it and run this again "
            "(an interrupted ingest is completed by the next one)"
        )
    if "dimension" in said:
        return StoreError(
            f"the index holds vectors of another size than the embedder makes ({said}); set RAG_EMBED_BACKEND/RAG_EMBED_MODEL "
            "back to the embedder it was built with, or run `rag ingest --rebuild` to re-embed everything"
        )
    if "readonly" in said.replace("-", "").replace(" ", "") or "Read-only" in said:
        return StoreError(
            f"the index at {where} is read-only ({said}); Chroma writes even when it only searches: "
            "make the folder writable, or copy it to a writable folder and point RAG_DATA_DIR there"
        )
    if where.startswith("http"):
        return StoreError(
            f"the Chroma server at {where} failed ({name}: {said}); check its log and disk space, and run this again"
        )
    folder = Path(where)
    if (damage := damaged(folder)) is not None:
        advice = (
            REPAIR_ADVICE
            if damage.startswith("the vectors")
            else ("move the folder away (keep it if you want to inspect it) and run `rag ingest` to rebuild it")
        )
        return StoreError(f"the index at {where} is damaged ({damage}; the failing call said {name}: {said}); {advice}")
    if _full_disk(e, folder):
        return StoreError(
            f"no space left on the device holding the index ({_free_mb(folder)} MB free); "
            "free space and run the command again: the index is intact"
        )
    return StoreError(
        f"the index at {where} cannot be used ({name}: {said}); its files passed an integrity check, so keep them: "
        "run the command again, and if it fails the same way, run `rag ingest --repair` (it keeps every paper)"
    )


REPAIR_ADVICE = "run `rag ingest --repair` to restore it from the stored paper records (no corpus file needed)"
LOW_SPACE = 64 * 2**20  # bytes free below which a failed write is put down to the disk: Chroma does not always say so


def _full_disk(e: BaseException, folder: Path) -> bool:
    """Whether a failure came from a full disk: said so (ENOSPC, sqlite's SQLITE_FULL), or too little is
    free for Chroma to flush its log, which it reports only as a failed compaction."""
    if isinstance(e, OSError) and e.errno == errno.ENOSPC or any(sign in str(e) for sign in FULL_SIGNS):
        return True
    return _free_mb(folder) * 2**20 < LOW_SPACE


def _free_mb(folder: Path) -> int:
    """Megabytes free on the device holding `folder` (or the nearest folder above it that exists)."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free // 2**20


def transport_failure(e: BaseException) -> bool:
    import httpx

    return isinstance(e, (httpx.TransportError, ConnectionError))


def forget_deleted_lists(folder: Path) -> None:
    """Delete the list-valued metadata of records that are gone. Chroma 1.5 deletes a collection's records but
    not their rows in `embedding_metadata_array`, and sqlite gives a new record the row id of a deleted one, so
    it inherited that record's lists (after `rag ingest --rebuild`, a chunk carried another paper's file paths)."""
    with closing(sqlite3.connect(folder / "chroma.sqlite3", timeout=30)) as db, db:
        if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'embedding_metadata_array'").fetchone():
            db.execute("DELETE FROM embedding_metadata_array WHERE id NOT IN (SELECT id FROM embeddings)")


HNSW_HEADER = 100  # bytes in the header.bin of Chroma's HNSW files (layout 1; see _hnsw_damage)


def vector_damage(folder: Path, thorough: bool = True) -> dict[str, str]:
    """Collection name -> what is wrong with its HNSW files, for the embedded index in `folder`. A kill while
    Chroma rewrites them leaves one cut short, and from then on every read of that collection fails (or
    crashes the process) until its vectors are written again. Sizes are checked from the header, and the end
    of the metadata pickle; `thorough` also parses all of it (its opcodes only: nothing in it is run)."""
    try:
        with closing(sqlite3.connect(f"{(folder / 'chroma.sqlite3').resolve().as_uri()}?mode=ro", uri=True)) as db:
            rows = db.execute(
                "SELECT s.id, c.name FROM segments s JOIN collections c ON s.collection = c.id WHERE s.scope = 'VECTOR'"
            ).fetchall()
    except sqlite3.Error:
        return {}  # no index yet, or one whose sqlite `damaged` reports
    found = {}
    for segment, name in rows:
        if (folder / segment).is_dir() and (why := _hnsw_damage(folder / segment, thorough)):
            found[name] = why
    return found


def _hnsw_damage(segment: Path, thorough: bool) -> str | None:
    """What is cut short among one segment's HNSW files (None: they are whole, or of a layout not known here)."""
    try:
        header = (segment / "header.bin").read_bytes()
        if len(header) < HNSW_HEADER:
            return f"header.bin is cut short ({len(header)} of {HNSW_HEADER} bytes)"
        if int.from_bytes(header[:4], "little") != 1:
            return None
        count, per_element = (int.from_bytes(header[at : at + 8], "little") for at in (20, 28))
        files = ("data_level0.bin", "length.bin", "link_lists.bin")  # all three must be there
        sizes = {name: (segment / name).stat().st_size for name in files}
        wanted = {"data_level0.bin": count * per_element, "length.bin": 4 * count}  # length.bin: a float32 norm each
        for name, size in wanted.items():
            if sizes[name] < size:
                return f"{name} is cut short ({sizes[name]} of {size} bytes)"
        pickle = segment / "index_metadata.pickle"
        if pickle.exists():
            with open(pickle, "rb") as handle:
                handle.seek(max(pickle.stat().st_size - 1, 0))
                if handle.read(1) != b".":  # every pickle ends with STOP: a cut one almost never does
                    return "index_metadata.pickle is cut short (no end mark)"
                if thorough:
                    handle.seek(0)
                    for _ in pickletools.genops(handle):
                        pass
    except FileNotFoundError as e:
        return f"{Path(str(e.filename)).name} is missing"
    except (ValueError, EOFError) as e:  # pickletools: truncated or garbled opcodes
        return f"index_metadata.pickle is cut short ({type(e).__name__})"
    return None


def sqlite_records(folder: Path, collection: str) -> tuple[list[tuple[str, dict, str]], dict]:
    """(id, metadata, document) of every record of `collection`, and its metadata, from Chroma's sqlite file.
    Refused when its metadata segment has not applied the whole log: the newest records would be missing."""
    uri = f"{(folder / 'chroma.sqlite3').resolve().as_uri()}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True)) as db:
        (cid, segment) = db.execute(
            "SELECT c.id, s.id FROM collections c JOIN segments s ON s.collection = c.id "
            "WHERE c.name = ? AND s.scope = 'METADATA'",
            (collection,),
        ).fetchone()
        applied = db.execute("SELECT seq_id FROM max_seq_id WHERE segment_id = ?", (segment,)).fetchone()
        logged = db.execute("SELECT max(seq_id) FROM embeddings_queue WHERE topic LIKE ?", (f"%/{cid}",)).fetchone()
        if logged[0] is not None and (applied is None or _seq(applied[0]) < logged[0]):
            raise StoreError(
                f"the index at {folder} is damaged (collection {collection!r}) and its newest records are not yet "
                "in sqlite; move the folder away (keep it) and run `rag ingest` on the corpus files"
            )
        stamp = {
            key: _value(row)
            for key, *row in db.execute(
                "SELECT key, str_value, int_value, float_value, bool_value FROM collection_metadata "
                "WHERE collection_id = ?",
                (cid,),
            )
        }
        ids = db.execute("SELECT id, embedding_id FROM embeddings WHERE segment_id = ?", (segment,))
        records: dict[int, tuple[str, dict, str]] = {rowid: (pid, {}, "") for rowid, pid in ids}
        documents: dict[int, str] = {}
        for table in ("embedding_metadata", "embedding_metadata_array"):
            rows = db.execute(
                f"SELECT m.id, m.key, m.string_value, m.int_value, m.float_value, m.bool_value FROM {table} m "
                "JOIN embeddings e ON e.id = m.id WHERE e.segment_id = ? ORDER BY m.rowid",
                (segment,),
            )
            for rowid, key, *row in rows:
                if key == "chroma:document":
                    documents[rowid] = row[0]
                elif table == "embedding_metadata":
                    records[rowid][1][key] = _value(row)
                else:
                    records[rowid][1].setdefault(key, []).append(_value(row))
    return [(pid, meta, documents.get(rowid, "")) for rowid, (pid, meta, _) in records.items()], stamp


def _value(row: list) -> Any:
    """A metadata value from its typed columns (string, int, float, bool: one is set)."""
    text, integer, real, flag = row
    return bool(flag) if flag is not None else next((v for v in (text, integer, real) if v is not None), None)


def _seq(value: Any) -> int:
    """A sequence id as sqlite holds it: an integer, or big-endian bytes in older files."""
    return int.from_bytes(value, "big") if isinstance(value, bytes) else int(value)
