"""Bibliography and metadata formats (rag.formats) read through rag.corpus, on hand-written fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag import corpus, ids
from rag.store import paper_from_meta, paper_to_meta
from rag.types import Paper

FORMATS = Path(__file__).parent / "fixtures" / "formats"


def read(name: str) -> tuple[dict[str, Paper], list[str]]:
    papers, problems = corpus.read_file(FORMATS / name)
    return {p.title: p for p in papers}, [str(p) for p in problems]


def test_bibtex_fields_macros_accents_and_braces():
    papers, problems = read("library.bib")
    tidal = papers["TIDAL: Sparse Attention Guided by BERT-style Token Salience for Long Documents"]
    assert tidal.abstract.endswith("with no retraining of the base model.")
    assert "cuts memory by 60% and keeps 98% of the quality" in tidal.abstract  # a bare % is not a comment
    assert (tidal.year, tidal.authors, tidal.doi) == (2022, 3, "10.5555/tidal.2022.7")
    assert tidal.venue == "Proceedings of the Workshop on Invented Language Systems 2022"  # @string # "..."
    moss = papers["Respiration of Glacier Moss under Repeated Freeze-Thaw Cycles"]
    assert moss.arxiv_id == "2104.05678" and moss.categories == ["q-bio.PE"]
    assert moss.venue == "Journal of Fictional Computing" and "within two hours of thawing" in moss.abstract
    pebbles = papers["Counting Pebbles with Acoustic Sensors"]
    assert (pebbles.date, pebbles.doi, pebbles.link) == ("2019-11-05", "", None)
    assert problems == [
        "library.bib:31: entry 'nobody2020empty' has no abstract; skipped",
        "library.bib:37: doi 'not-a-doi' is not a DOI (10.NNNN/...); read without it",
        "library.bib:45: malformed BibTeX entry (unbalanced braces or quotes?); skipped",
    ]


def test_bibtex_accented_author_names_are_counted_as_people(tmp_path):
    bib = tmp_path / "one.bib"
    bib.write_text(
        "@article{a, title={{\\\"O}l {\\'e}t{\\'e}}, author={M{\\\"u}ller, J. and Dupont, {\\'E}.}, "
        "abstract={Short {{Abstract}} here.}, year={2020}}\n"
    )
    papers, problems = corpus.read_file(bib)
    assert problems == []
    assert (papers[0].title, papers[0].abstract, papers[0].authors) == ("Öl été", "Short Abstract here.", 2)


def test_ris_multiline_fields_and_alternative_tags():
    papers, problems = read("refs.ris")
    desal = papers["Solar-Powered Desalination Using Floating Graphite Membranes"]
    assert desal.abstract.startswith("A floating membrane") and desal.abstract.endswith("per square metre per hour.")
    assert (desal.date, desal.authors, desal.doi) == ("2020-03-17", 2, "10.5555/desal.2020.3")
    assert (desal.url, desal.venue) == ("https://example.org/desal", "Journal of Imaginary Water Research")
    wind = papers["Wind Turbine Blades from Recycled Fishing Nets"]  # T1, A1, N2, Y1, T2
    assert (wind.year, wind.authors, wind.venue) == (2018, 1, "Invented Conference on Renewable Materials")
    assert problems == ["refs.ris:24: record 3 has no abstract; skipped"]


def test_bibtex_duplicate_key_is_reported(tmp_path):
    bib = tmp_path / "dup.bib"
    bib.write_text("@misc{same, title={One}, abstract={First text.}}\n\n@misc{same, title={Two}, abstract={Second.}}\n")
    papers, problems = corpus.read_file(bib)
    assert [p.title for p in papers] == ["One"]
    message = "dup.bib:3: key 'same' is used earlier in the file; skipped: give the entry its own key"
    assert [str(p) for p in problems] == [message]


def test_ris_record_without_end_tag_is_reported(tmp_path):
    ris = tmp_path / "open.ris"
    ris.write_text("TY  - JOUR\nTI  - Closed\nAB  - Has an end.\nER  - \n\nTY  - JOUR\nTI  - Open\nAB  - Never ends.\n")
    papers, problems = corpus.read_file(ris)
    assert [p.title for p in papers] == ["Closed"]
    assert [str(p) for p in problems] == ["open.ris: 1 record(s) not closed by 'ER  -'; skipped"]


def test_medline_continuation_lines_and_ids():
    papers, problems = read("pubmed.nbib")
    sleep = papers["Sleep spindles predict recall of invented word lists in older adults."]
    assert sleep.abstract.startswith("Older adults learned") and "sleep spindles during the nap" in sleep.abstract
    assert (sleep.pmid, sleep.doi, sleep.date, sleep.authors) == ("31234567", "10.5555/sleep.2019.11", "2019-05-03", 2)
    assert sleep.venue == "Journal of Made-up Neuroscience"
    assert problems == ["pubmed.nbib:18: record PMID 30111222 has no abstract; skipped"]


def test_csl_json_items():
    papers, problems = read("zotero.json")
    bees = papers["Bees Learn Maze Shortcuts from Vibrations of Their Nestmates"]
    assert (bees.date, bees.authors, bees.doi) == ("2023-05-01", 3, "10.5555/bees.2023.5")
    assert (bees.venue, bees.url) == ("Invented Journal of Insect Behaviour", "https://doi.org/10.5555/BEES.2023.5")
    edge = papers["Edge Caching for Rural Video Classrooms"]
    assert (edge.year, edge.date, edge.venue, edge.link) == (2021, "", "", None)
    assert problems == ["zotero.json:3: item 'item3' has no abstract; skipped"]


def test_arxiv_snapshot_lines():
    papers, problems = read("arxiv.jsonl")
    old = papers["Compressing Telegraph Logs with Grammar Rules"]
    assert (old.arxiv_id, old.doi, old.categories) == ("cs/0112017", "10.5555/telegraph.2001.1", ["cs.DS", "cs.IT"])
    assert (old.date, old.authors, old.venue) == ("2008-02-03", 2, "Invented Letters 12 (2001) 3-9")
    moss = papers["Respiration of glacier moss under repeated freeze-thaw cycles"]  # the title's newline is undone
    assert moss.link == "https://arxiv.org/abs/2104.05678" and moss.categories == ["q-bio.PE", "physics.bio-ph"]
    assert problems == ["arxiv.jsonl:3: arXiv record 2201.00001 has no abstract; skipped"]


def test_openalex_abstract_rebuilt_in_position_order_across_gaps():
    papers, problems = read("openalex.jsonl")
    coral = papers["Coral Larvae Settle Faster on Textured Ceramic Tiles"]
    expected = "Coral larvae settled faster on textured tiles than smooth on textured ones, and more tiles survived."
    assert coral.abstract == expected  # positions 15-19 are missing
    assert (coral.doi, coral.pmid, coral.date, coral.authors) == ("10.5555/coral.2024.2", "38000001", "2024-02-29", 2)
    assert (coral.venue, coral.url) == ("Invented Marine Letters", "https://example.org/coral")
    assert problems == ["openalex.jsonl:2: OpenAlex work https://openalex.org/W1000000002 has no abstract; skipped"]


def test_semantic_scholar_lines():
    papers, problems = read("s2.jsonl")
    bread = papers["Predicting Bread Staling from Crumb Photographs"]
    assert (bread.doi, bread.arxiv_id, bread.pmid) == ("10.5555/bread.2022.4", "2209.01234", "36000002")
    assert (bread.date, bread.authors, bread.venue) == ("2022-09-14", 1, "Invented Workshop on Food Vision")
    assert bread.categories == ["Computer Science", "Agricultural and Food Sciences"]
    assert problems == ["s2.jsonl:2: paper 99887766554433221100ffeeddccbbaa99887766 has no abstract; skipped"]


def test_plain_jsonl_and_csv_read_identifier_columns(tmp_path):
    (tmp_path / "a.csv").write_text(
        "title,doi,arxiv_id,venue,categories,url,abstract\n"
        "Quiet Fans,DOI:10.5555/FANS.1,,Fan Letters,cs.SD;eess.AS,javascript:alert(1),"
        "Fans get quieter with notched blades.\n"
        "Loud Fans,10.5/bad,hep-th/9901001v2,,,,Fans get louder without them.\n"
    )
    papers, problems = corpus.read_file(tmp_path / "a.csv")
    quiet, loud = papers
    assert (quiet.doi, quiet.venue, quiet.url) == ("10.5555/fans.1", "Fan Letters", "")
    assert quiet.categories == ["cs.SD", "eess.AS"]
    assert (loud.doi, loud.arxiv_id, loud.link) == ("", "hep-th/9901001v2", "https://arxiv.org/abs/hep-th/9901001v2")
    assert [str(p) for p in problems] == ["a.csv:3: doi '10.5/bad' is not a DOI (10.NNNN/...); read without it"]


def test_same_doi_or_arxiv_id_from_two_sources_is_one_paper():
    loaded = corpus.load([FORMATS / "library.bib", FORMATS / "arxiv.jsonl"])
    moss = [p for p in loaded.papers if p.arxiv_id == "2104.05678"]
    assert len(moss) == 1 and moss[0].sources == ["arxiv.jsonl", "library.bib"]
    assert moss[0].venue == "Journal of Fictional Computing"  # metadata the first sighting lacked
    assert loaded.merged == 1


def test_identifiers_survive_storage():
    paper = read("s2.jsonl")[0]["Predicting Bread Staling from Crumb Photographs"]
    back = paper_from_meta(paper_to_meta(paper))
    assert (back.doi, back.arxiv_id, back.pmid, back.venue, back.categories) == (
        paper.doi,
        paper.arxiv_id,
        paper.pmid,
        paper.venue,
        paper.categories,
    )
    plain = Paper(paper_id="x", title="t", abstract="a")
    assert not {"doi", "arxiv_id", "pmid", "url", "venue", "categories"} & paper_to_meta(plain).keys()


@pytest.mark.parametrize(
    "doi, arxiv, pmid, url, link",
    [
        ("https://doi.org/10.1000/ABC", "", "", "", "https://doi.org/10.1000/abc"),
        ("doi:10.1000/x(1)", "", "", "", "https://doi.org/10.1000/x(1)"),
        ("", "arXiv:2301.01234v2", "", "", "https://arxiv.org/abs/2301.01234v2"),
        ("", "math.AG/0309136", "", "", "https://arxiv.org/abs/math.AG/0309136"),
        ("", "", "12345", "", "https://pubmed.ncbi.nlm.nih.gov/12345/"),
        ("", "", "", "https://arxiv.org/abs/2301.01234", "https://arxiv.org/abs/2301.01234"),
        ("", "", "", "https://dx.doi.org/10.1000/q", "https://doi.org/10.1000/q"),
        ('10.1000/x"><script>', "", "", "", None),
        ("10.1000/a b", "", "", "", None),
        ("", "2301.012", "", "", None),
        ("", "../../etc", "", "", None),
        ("", "", "012345", "", None),
        ("", "", "12a", "", None),
        ("", "", "", "https://evil.example/10.1000/x", None),
        ("", "", "", "javascript:alert(1)//doi.org/10.1000/x", None),
        ("", "", "", "https://doi.org.evil.example/10.1000/x", None),
    ],
)
def test_links_only_from_valid_identifiers(doi, arxiv, pmid, url, link):
    assert ids.link(doi, arxiv, pmid, url) == link


def test_category_and_venue_filters_fail_closed(tmp_path, make_settings):
    from rag.embed import HashingEmbedding
    from rag.ingest import ingest
    from rag.retrieve import Retriever
    from rag.store import open_store
    from rag.types import Filters

    settings = make_settings(data_dir=tmp_path / "index", corpus_paths=[FORMATS], embed_backend="hashing")
    embedder, store = HashingEmbedding(), open_store(settings)
    ingest([FORMATS], settings, embedder, store=store)
    retriever = Retriever(settings, embedder, store)

    def titles(**filters: tuple[str, ...]) -> list[str]:
        hits = retriever.search("moss coral bread bees telegraph fishing nets", 20, Filters(**filters))
        return sorted(h.paper.title[:20] for h in hits)

    assert len(titles()) == 11
    assert titles(categories=("q-bio.PE",)) == ["Respiration of glaci"]
    assert titles(categories=("cs.DS", "Computer Science")) == ["Compressing Telegrap", "Predicting Bread Sta"]
    assert titles(venues=("INVENTED MARINE LETTERS",)) == ["Coral Larvae Settle "]
    assert titles(venues=("Invented Marine",)) == []  # the whole name, not a part
    assert titles(categories=("q-bio.PE",), venues=("Invented Marine Letters",)) == []
    assert titles(categories=("cs.DS",), year_from=2020) == []
