"""Lexical signals over the same sentences the attention scores, for fusion with attention.

A signal maps ``(sentences, question)`` to one score per sentence. Signals are registered by
name in :data:`LEXICAL_SIGNALS`; ``RetrievalConfig(fusion="bm25")`` picks one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from infiniretri_integrations.core.types import Sentence

LexicalSignal = Callable[[Sequence[Sentence], str], list[float]]

_PASSAGE_BREAK = re.compile(r"\n[ \t]*\n")


def passage_leads(sentences: Sequence[Sentence]) -> list[int]:
    """For each sentence, the index of the first sentence of its passage.

    A passage is a run of sentences of one document not separated by a blank line (the
    segmenter starts a new sentence at every blank line, so the break sits in the leading
    whitespace of a passage's first sentence).

    Example:
        >>> s = [Sentence(0, i, 0, 0, t, ()) for i, t in enumerate(["Title\\nA.", " B.", "\\n\\nC.", " D."])]
        >>> passage_leads(s)
        [0, 0, 2, 2]
    """
    leads: list[int] = []
    lead = 0
    for index, sentence in enumerate(sentences):
        starts_passage = index == 0 or (
            sentence.document_index != sentences[index - 1].document_index
            or _PASSAGE_BREAK.search(sentence.text[: len(sentence.text) - len(sentence.text.lstrip())]) is not None
        )
        if starts_passage:
            lead = index
        leads.append(lead)
    return leads


def bm25_passage_scores(sentences: Sequence[Sentence], question: str) -> list[float]:
    """Okapi BM25 (``bm25s``, English stop words) of every sentence for ``question``, each
    sentence indexed together with the first sentence of its passage (its title or heading
    line, when the passage has one), so that a sentence that names its subject only through
    the passage still matches.

    Example:
        >>> s = [Sentence(0, 0, 0, 0, "Paris\\nIt is large.", ()), Sentence(0, 1, 0, 0, " It has a river.", ()),
        ...      Sentence(0, 2, 0, 0, "\\n\\nRome\\nIt is old.", ())]
        >>> [round(x, 2) > 0 for x in bm25_passage_scores(s, "Which river flows through Paris?")]
        [True, True, False]
    """
    try:
        import bm25s
    except ImportError as error:  # pragma: no cover - bm25s is a core dependency
        msg = "fusion='bm25' needs the bm25s package: pip install bm25s"
        raise ImportError(msg) from error

    if not sentences:
        return []
    leads = passage_leads(sentences)
    texts = [
        sentence.text if lead == index else f"{sentences[lead].text} {sentence.text}"
        for index, (sentence, lead) in enumerate(zip(sentences, leads, strict=True))
    ]
    corpus = bm25s.tokenize(texts, stopwords="en", return_ids=False, show_progress=False)
    query = bm25s.tokenize([question], stopwords="en", return_ids=False, show_progress=False)[0]
    if not query or not any(corpus):
        return [0.0] * len(sentences)
    index = bm25s.BM25()
    index.index(corpus, show_progress=False)
    return [float(x) for x in index.get_scores(query)]


LEXICAL_SIGNALS: dict[str, LexicalSignal] = {"bm25": bm25_passage_scores}
"""Lexical signals by name (``RetrievalConfig.fusion``)."""


def lexical_signal(name: str) -> LexicalSignal:
    """The registered signal called ``name``."""
    try:
        return LEXICAL_SIGNALS[name]
    except KeyError:
        msg = f"Unknown fusion signal {name!r}; expected one of {sorted(LEXICAL_SIGNALS)}"
        raise ValueError(msg) from None
