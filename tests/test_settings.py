"""The README settings table and .env.example must list every setting with its real default."""

from pathlib import Path

import pytest

from rag.config import Settings, settings_rows

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
