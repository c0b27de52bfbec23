"""A highlight view of one retrieval: every document with the kept sentences marked, darker for a
higher attention score (hover a sentence for its score).

:func:`to_html` gives a fragment (a notebook shows it as the result's rich display);
:func:`html_page` wraps it in a self-contained page (the CLI's ``--html``).

Example:
    >>> from infiniretri_integrations.core.types import RetrievalResult, RetrievalStats, RetrievedSentence, SourceDocument
    >>> doc = SourceDocument("Alice lives in Paris. Bob lives in Rome.", id="people.txt")
    >>> kept = RetrievedSentence(" Bob lives in Rome.", 0.9, 0, "people.txt", 1, 21, 40, 5)
    >>> fragment = to_html(RetrievalResult("Where does Bob live?", [kept], RetrievalStats(), [doc]))
    >>> "title='score 0.9'>Bob lives in Rome.</mark>" in fragment and "Alice lives in Paris." in fragment
    True
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from infiniretri_integrations.core.types import RetrievalResult, RetrievedSentence

MAX_CHARS = 2_000_000
"""Longer documents are cut in the view (with a note saying how much is not shown)."""

_STYLE = """
.infiniretri { font-family: system-ui, sans-serif; line-height: 1.5; }
.infiniretri .doc { white-space: pre-wrap; border: 1px solid #ddd; border-radius: 6px; padding: 1rem;
  margin: 0.5rem 0 1rem; font-size: 0.92rem; max-height: 40rem; overflow: auto; }
.infiniretri mark { border-radius: 3px; padding: 0 1px; color: inherit; }
.infiniretri .meta { color: #555; font-size: 0.9rem; }
.infiniretri .answer { background: #eef6ff; border-left: 4px solid #3b82f6; padding: 0.6rem 1rem; }
.infiniretri .legend span { display: inline-block; width: 2.2rem; height: 0.9rem; vertical-align: middle; }
"""


def to_html(result: RetrievalResult, *, answer: str | None = None, max_chars: int = MAX_CHARS) -> str:
    """The question, statistics and every document with its kept sentences highlighted, as an
    HTML fragment (one ``<div class='infiniretri'>`` with its own style)."""
    stats = result.stats
    scores = [s.score for s in result.sentences]
    low, high = (min(scores), max(scores)) if scores else (0.0, 1.0)
    spread = (high - low) or 1.0
    by_document = result.by_document()
    parts = [
        f"<div class='infiniretri'><style>{_STYLE}</style>",
        f"<p><b>Question:</b> {html.escape(result.question)}</p>",
    ]
    if answer is not None:
        parts.append(f"<p class='answer'><b>Answer:</b> {html.escape(answer)}</p>")
    parts.append(
        f"<p class='meta'>{stats.kept_sentences} sentences kept ({stats.kept_tokens} of {stats.input_tokens} tokens, "
        f"{stats.kept_ratio:.1%}) in {stats.chunks} chunk(s); scoring layer(s) {list(stats.scoring_layers)}; "
        f"{stats.seconds:.1f}s</p>"
    )
    swatches = "".join(f"<span style='background:{_colour(level)}'></span>" for level in (0.0, 0.5, 1.0))
    parts.append(f"<p class='legend meta'>score: low {swatches} high</p>")
    for index, doc in enumerate(result.documents):
        kept = sorted(by_document.get(index, []), key=lambda s: s.start)
        name = doc.id if doc.id is not None else f"document {index + 1}"
        parts.append(f"<h3>{html.escape(str(name))} <span class='meta'>({len(kept)} kept)</span></h3>")
        parts.append(f"<div class='doc'>{_marked(doc.text, kept, low, spread, max_chars)}</div>")
    parts.append("</div>")
    return "".join(parts)


def html_page(result: RetrievalResult, *, answer: str | None = None, model: str | None = None) -> str:
    """:func:`to_html` as a complete page (title, heading, the model's name)."""
    title = html.escape(result.question)
    by = f"<p class='infiniretri meta'>model {html.escape(model)}</p>" if model else ""
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>InfiniRetri: {title}</title></head>"
        "<body style='max-width: 60rem; margin: 2rem auto; color: #222'>"
        f"<h1 class='infiniretri'>InfiniRetri</h1>{by}{to_html(result, answer=answer)}</body></html>"
    )


def _marked(text: str, kept: list[RetrievedSentence], low: float, spread: float, max_chars: int) -> str:
    """``text`` escaped, each kept sentence (leading whitespace outside the mark) in a ``<mark>``."""
    parts: list[str] = []
    cursor, limit = 0, min(len(text), max_chars)
    for sentence in kept:
        start, end = max(sentence.start, cursor), min(sentence.end, limit)
        while start < end and text[start].isspace():
            start += 1
        if start >= end:
            continue
        parts.append(html.escape(text[cursor:start]))
        colour = _colour((sentence.score - low) / spread)
        parts.append(
            f"<mark style='background:{colour}' title='score {sentence.score:.4g}'>{html.escape(text[start:end])}</mark>"
        )
        cursor = end
    parts.append(html.escape(text[cursor:limit]))
    if limit < len(text):
        parts.append(f"\n[... {len(text) - limit} more characters not shown]")
    return "".join(parts)


def _colour(level: float) -> str:
    """Yellow (low) to orange-red (high), always visibly marked."""
    level = min(1.0, max(0.0, level))
    return f"rgba(255,{int(220 - 120 * level)},0,{0.25 + 0.65 * level:.2f})"
