"""The highlight view (core/highlight.py) of a real retrieval on the tiny model."""

from __future__ import annotations

import html
import re

import pytest

from infiniretri_integrations import InfiniRetriEngine, SourceDocument
from infiniretri_integrations.core.highlight import html_page, to_html

DOCS = [
    SourceDocument("Alice lives in Paris. Bob lives in Rome & works <late>. The weather in Rome is warm.", id="a.txt"),
    SourceDocument(
        "Carol has three cats.\n\nDave plays the violin every evening. The bakery opens at six.", id="b.txt"
    ),
]


@pytest.fixture(scope="module")
def result(tiny_llama):
    return InfiniRetriEngine(tiny_llama, tokens_per_pass=6, chunk_size=64, max_sentence_tokens=32).retrieve(
        DOCS, "Where does Bob live?"
    )


def test_every_kept_sentence_is_marked_with_its_score(result) -> None:
    fragment = to_html(result)
    marks = re.findall(r"<mark style='[^']*' title='score ([^']+)'>(.*?)</mark>", fragment, flags=re.S)
    assert result.sentences and len(marks) == len(result.sentences)
    expected = sorted((f"{s.score:.4g}", s.text.strip()) for s in result.sentences)
    assert sorted((score, html.unescape(text)) for score, text in marks) == expected


def test_documents_are_shown_whole_and_escaped(result) -> None:
    fragment = to_html(result)
    bodies = re.findall(r"<div class='doc'>(.*?)</div>", fragment, flags=re.S)
    assert [html.unescape(re.sub(r"<[^>]+>", "", body)) for body in bodies] == [d.text for d in DOCS]
    assert "<late>" not in fragment and "&lt;late&gt;" in fragment


def test_fragment_for_notebooks_page_for_files(result) -> None:
    fragment = to_html(result, answer="Rome")
    assert fragment.startswith("<div class='infiniretri'>") and "<html" not in fragment
    assert "Rome</p>" in fragment and html.escape(result.question) in fragment
    page = html_page(result, answer="Rome", model="tiny")
    assert page.startswith("<!doctype html>") and fragment in page and "model tiny" in page


def test_long_documents_are_cut_with_a_note(result) -> None:
    fragment = to_html(result, max_chars=30)
    assert "more characters not shown" in fragment
