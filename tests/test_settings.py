"""docs/settings.md and .env.example list every setting with its real default, by concern; settings keep
their bounds; the JSON field lists of docs/cli.md match what `--json` prints."""

import json
import re
from pathlib import Path

import pytest

from rag.config import CONCERNS, Settings, env_example, settings_rows, settings_table
from rag.types import Answer, Citation, Hit, Paper

ROOT = Path(__file__).resolve().parent.parent


def test_the_settings_doc_holds_the_generated_tables():
    doc = (ROOT / "docs" / "settings.md").read_text()
    assert settings_table() in doc, "docs/settings.md is out of date: paste `python -m rag.config` into it"
    assert doc.count("| `RAG_") == len(settings_rows()), "docs/settings.md lists a setting that no longer exists"


def test_env_example_is_the_generated_one():
    assert (ROOT / ".env.example").read_text() == env_example(), (
        "regenerate it: python -m rag.config --env > .env.example"
    )


def test_every_setting_belongs_to_exactly_one_concern():
    named = [name for concern in CONCERNS for name in concern.model_fields]
    assert sorted(named) == sorted(Settings.model_fields) and len(named) == len(set(named))


def test_settings_read_from_env(monkeypatch):
    monkeypatch.setenv("RAG_TOP_K", "3")
    monkeypatch.setenv("RAG_CHROMA_HOST", "127.0.0.1")
    s = Settings()
    assert s.top_k == 3 and s.chroma_host == "127.0.0.1"


@pytest.mark.parametrize(
    ("value", "paths"),
    [
        ("/data/my.jsonl", ["/data/my.jsonl"]),
        ('["/a.jsonl", "/b"]', ["/a.jsonl", "/b"]),
        ("/a.jsonl:/b", ["/a.jsonl", "/b"]),
    ],
)
def test_corpus_paths_from_the_environment_take_the_forms_users_write(monkeypatch, value, paths):
    monkeypatch.setenv("RAG_CORPUS_PATHS", value)
    assert [str(p) for p in Settings(_env_file=None).corpus_paths] == paths


def test_a_corpus_paths_value_that_cannot_be_parsed_is_one_config_line(monkeypatch):
    from rag.config import get_settings
    from rag.errors import ConfigError

    monkeypatch.setenv("RAG_CORPUS_PATHS", "[broken")
    get_settings.cache_clear()
    try:
        with pytest.raises(ConfigError, match=r"RAG_CORPUS_PATHS: .*not a JSON list of paths") as e:
            get_settings()
    finally:
        get_settings.cache_clear()
    assert "\n" not in str(e.value)


def test_bounded_settings_reject_values_out_of_range(monkeypatch):
    """A weight, threshold or count outside its range stops at start-up with one line naming the variable."""
    from rag.config import get_settings
    from rag.errors import ConfigError

    for name, value in (
        ("RAG_BM25_WEIGHT", "1.5"),
        ("RAG_REFUSE_BELOW", "-0.1"),
        ("RAG_TOP_K", "0"),
        ("RAG_COLLECTION", "ab"),
    ):
        with monkeypatch.context() as mp:
            mp.setenv(name, value)
            get_settings.cache_clear()
            with pytest.raises(ConfigError, match=f"^{name}: "):
                get_settings()
    get_settings.cache_clear()


def test_openai_api_key_is_the_fallback_for_both_endpoints(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fallback-0000")
    s = Settings(_env_file=None)
    assert s.llm_api_key.get_secret_value() == s.embed_api_key.get_secret_value() == "sk-fallback-0000"
    monkeypatch.setenv("RAG_LLM_API_KEY", "sk-own-1111")
    assert Settings(_env_file=None).llm_api_key.get_secret_value() == "sk-own-1111"


# ---------------------------------------------------------------- the JSON shapes docs/cli.md lists


def _doc_names(opening: str) -> str:
    """The docs/cli.md paragraph that starts with `opening`, after it."""
    doc = (ROOT / "docs" / "cli.md").read_text()
    start = doc.index(opening) + len(opening)
    return doc[start : doc.index("\n\n", start)]


def _fields(text: str) -> set[str]:
    return set(re.findall(r"`([a-z_][a-z0-9_]*)`", text))


def _sample_answer() -> Answer:
    paper = Paper("p1", "A Title", "An abstract sentence.", date_raw="2024", year=2024)
    citation = Citation(
        n=1,
        paper_id="p1",
        title="A Title",
        claim="c",
        quote="q",
        quote_start=0,
        quote_end=1,
        support=1.0,
        supported=True,
    )
    return Answer(
        question="q", text="t [1]", mode="extractive", model="m", citations=[citation], sources=[Hit(paper, 1.0)]
    )


def test_the_cli_doc_lists_every_search_json_field():
    listed = _fields(_doc_names("`rag search --json` prints a list of objects with"))
    assert listed == set(_sample_answer().sources[0].to_json()), (
        "docs/cli.md's `rag search --json` fields differ from Hit.to_json"
    )


def test_the_cli_doc_lists_every_ask_json_field():
    text = _doc_names("`rag ask --json` prints one object with")
    each = re.search(r"\(each ([^)]*)\)", text)
    assert each, "docs/cli.md no longer lists the citation fields as (each ...)"
    from rag.references import answer_json

    shown = answer_json(_sample_answer())
    assert _fields(text.replace(each.group(0), "")) == set(shown), (
        "docs/cli.md's `rag ask --json` fields differ from answer_json"
    )
    assert _fields(each.group(1)) == set(shown["citations"][0]), (
        "docs/cli.md's citation fields differ from Citation.to_json"
    )


def _doc_json(name: str) -> dict:
    """The first ```json block of a docs/ file."""
    doc = (ROOT / "docs" / name).read_text()
    return json.loads(re.search(r"```json\n(.*?)\n```", doc, re.S).group(1))


def test_the_http_api_doc_shows_a_chat_completion_with_every_field():
    from rag.api_models import ChatCompletion, SearchResult

    shown = _doc_json("http-api.md")
    assert set(shown) == set(ChatCompletion.model_fields), "docs/http-api.md's answer JSON differs from ChatCompletion"
    assert set(shown["search_results"][0]) == set(SearchResult.model_fields)
    from rag.references import answer_json

    assert set(shown["rag"]) <= set(answer_json(_sample_answer()))


def test_numbers_chosen_on_dev_come_from_rag_tuned_and_are_not_listed_as_settings():
    """The fusion weight and the refusal floor can be overridden by the tuning script, but the docs and
    .env.example do not offer them to users as knobs."""
    from rag import tuned

    s = Settings()
    assert (s.bm25_weight, s.refuse_below) == (tuned.BM25_WEIGHT, tuned.REFUSE_BELOW)
    listed = {var for var, _, _ in settings_rows()}
    assert not {"RAG_BM25_WEIGHT", "RAG_REFUSE_BELOW"} & listed and "RAG_TOP_K" in listed
    assert "RAG_REFUSE_BELOW" not in env_example()
