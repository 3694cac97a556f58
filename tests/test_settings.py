"""The README settings table and .env.example must list every setting with its real default."""

from pathlib import Path

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
