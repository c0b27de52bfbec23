"""A self-contained HTML picture of one retrieval: every document with the kept sentences
highlighted, darker for a higher attention score (hover a sentence for its score).

Example:
    >>> from infiniretri_integrations.core.types import RetrievalResult, RetrievalStats, RetrievedSentence, SourceDocument
    >>> doc = SourceDocument("Alice lives in Paris. Bob lives in Rome.", id="people.txt")
    >>> kept = RetrievedSentence(" Bob lives in Rome.", 0.9, 0, "people.txt", 1, 21, 40, 5)
    >>> page = render_html(RetrievalResult("Where does Bob live?", [kept], RetrievalStats(), [doc]), answer="Rome")
    >>> "title='score 0.9" in page and "Alice lives in Paris." in page
    True
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; line-height: 1.5; color: #222; }
.doc { white-space: pre-wrap; border: 1px solid #ddd; border-radius: 6px; padding: 1rem; margin: 1rem 0; font-size: 0.92rem; }
mark { border-radius: 3px; padding: 0 1px; color: inherit; }
.meta { color: #555; font-size: 0.9rem; }
.answer { background: #eef6ff; border-left: 4px solid #3b82f6; padding: 0.6rem 1rem; }
.legend span { display: inline-block; width: 2.2rem; height: 0.9rem; vertical-align: middle; }
"""


def render_html(result: Any, answer: str | None = None, model: str | None = None, max_chars: int = 2_000_000) -> str:
    """The page as a string. Documents longer than ``max_chars`` are cut (with a note)."""
    scores = [s.score for s in result.sentences]
    low, high = (min(scores), max(scores)) if scores else (0.0, 1.0)
    spread = (high - low) or 1.0
    by_document = result.by_document()
    stats = result.stats
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>InfiniRetri: ",
        html.escape(result.question),
        f"</title><style>{_STYLE}</style></head><body>",
        f"<h1>InfiniRetri</h1><p><b>Question:</b> {html.escape(result.question)}</p>",
    ]
    if answer is not None:
        parts.append(f"<p class='answer'><b>Answer:</b> {html.escape(answer)}</p>")
    parts.append(
        f"<p class='meta'>{stats.kept_sentences} sentences kept ({stats.kept_tokens} of {stats.input_tokens} tokens, "
        f"{stats.kept_ratio:.1%}) in {stats.chunks} chunk(s); scoring layer(s) {list(stats.scoring_layers)}; "
        f"{stats.seconds:.1f}s" + (f"; model {html.escape(model)}" if model else "") + "</p>"
    )
    parts.append(
        "<p class='legend meta'>score: low <span style='background:" + _colour(0.0) + "'></span>"
        "<span style='background:" + _colour(0.5) + "'></span><span style='background:" + _colour(1.0) + "'></span> high</p>"
    )
    for index, doc in enumerate(result.documents):
        text = doc.text
        name = doc.id or f"document {index + 1}"
        kept = sorted(by_document.get(index, []), key=lambda s: s.start)
        parts.append(f"<h2>{html.escape(str(name))} <span class='meta'>({len(kept)} kept)</span></h2><div class='doc'>")
        cursor = 0
        limit = min(len(text), max_chars)
        for sentence in kept:
            start, end = max(sentence.start, cursor), min(sentence.end, limit)
            if start >= end:
                continue
            parts.append(html.escape(text[cursor:start]))
            level = (sentence.score - low) / spread
            parts.append(f"<mark style='background:{_colour(level)}' title='score {sentence.score:.4g}'>{html.escape(text[start:end])}</mark>")
            cursor = end
        parts.append(html.escape(text[cursor:limit]))
        if limit < len(text):
            parts.append(f"\n[... {len(text) - limit} more characters not shown]")
        parts.append("</div>")
    parts.append("</body></html>")
    return "".join(parts)


def _colour(level: float) -> str:
    """Yellow (low) to orange-red (high), always visibly marked."""
    level = min(1.0, max(0.0, level))
    alpha = 0.25 + 0.65 * level
    green = int(220 - 120 * level)
    return f"rgba(255,{green},0,{alpha:.2f})"


def write_html(path: str | Path, result: Any, answer: str | None = None, model: str | None = None) -> Path:
    """Write :func:`render_html` to ``path``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_html(result, answer=answer, model=model), encoding="utf-8")
    return target
