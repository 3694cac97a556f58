"""The README settings table and .env.example list every setting with its real default; settings keep
their bounds; the README's JSON field lists match what `--json` prints."""

import re
from pathlib import Path

import pytest

from rag.config import Settings, settings_rows
from rag.types import Answer, Citation, Hit, Paper

ROOT = Path(__file__).resolve().parent.parent


def test_readme_table_matches_settings():
    readme = (ROOT / "README.md").read_text()
    for var, default, _ in settings_rows():
        shown = f"`{default}`" if default else "(unset)"
        assert f"| `{var}` | {shown} |" in readme, f"README settings table is missing or wrong for {var}"
    assert readme.count("| `RAG_") == len(settings_rows()), "README lists a setting that no longer exists"


def test_env_example_lists_every_setting():
    example = (ROOT / ".env.example").read_text()
    for var, default, _ in settings_rows():
        assert f"# {var}={default}\n" in example


def test_settings_read_from_env(monkeypatch):
    monkeypatch.setenv("RAG_TOP_K", "3")
    monkeypatch.setenv("RAG_CHROMA_HOST", "127.0.0.1")
    s = Settings()
    assert s.top_k == 3 and s.chroma_host == "127.0.0.1"


@pytest.mark.parametrize(
    ("value", "paths"),
    [("/data/my.jsonl", ["/data/my.jsonl"]), ('["/a.jsonl", "/b"]', ["/a.jsonl", "/b"]), ("/a.jsonl:/b", ["/a.jsonl", "/b"])],
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

    for name, value in (("RAG_BM25_WEIGHT", "1.5"), ("RAG_REFUSE_BELOW", "-0.1"), ("RAG_TOP_K", "0"), ("RAG_COLLECTION", "ab")):
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


# ---------------------------------------------------------------- the README's JSON shapes


def _readme_names(opening: str) -> str:
    """The README paragraph that starts with `opening`, after it."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index(opening) + len(opening)
    return readme[start : readme.index("\n\n", start)]


def _fields(text: str) -> set[str]:
    return set(re.findall(r"`([a-z_][a-z0-9_]*)`", text))


def _sample_answer() -> Answer:
    paper = Paper("p1", "A Title", "An abstract sentence.", date_raw="2024", year=2024)
    citation = Citation(n=1, paper_id="p1", title="A Title", claim="c", quote="q", quote_start=0, quote_end=1, support=1.0, supported=True)
    return Answer(question="q", text="t [1]", mode="extractive", model="m", citations=[citation], sources=[Hit(paper, 1.0)])


def test_readme_lists_every_search_json_field():
    listed = _fields(_readme_names("`rag search --json` prints a list of objects with"))
    assert listed == set(_sample_answer().sources[0].to_json()), "README's `rag search --json` fields differ from Hit.to_json"


def test_readme_lists_every_ask_json_field():
    text = _readme_names("`rag ask --json` prints one object with")
    each = re.search(r"\(each ([^)]*)\)", text)
    assert each, "README no longer lists the citation fields as (each ...)"
    shown = _sample_answer().to_json()
    assert _fields(text.replace(each.group(0), "")) == set(shown), "README's `rag ask --json` fields differ from Answer.to_json"
    assert _fields(each.group(1)) == set(shown["citations"][0]), "README's citation fields differ from Citation.to_json"
