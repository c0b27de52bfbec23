"""Lexical signals over the same sentences the attention scores, for fusion with attention.

A signal is an indexer, registered by name in :data:`LEXICAL_SIGNALS` (``RetrievalConfig(fusion="bm25")``
picks one): built once over the sentences, it is then asked per question for one score per
sentence; :func:`lexical_scores_many` scores several questions over one index.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from infiniretri_integrations.core.types import Sentence

LexicalIndex = Callable[[str], list[float]]
"""A signal built over fixed sentences: ``question -> one score per sentence``."""

LexicalIndexer = Callable[[Sequence[Sentence]], LexicalIndex]
"""Builds a :data:`LexicalIndex` over sentences (once for any number of questions)."""

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


def bm25_passage_index(sentences: Sequence[Sentence]) -> LexicalIndex:
    """Okapi BM25 (``bm25s``, English stop words) over ``sentences``, built once: the returned
    function scores every sentence for one question. Each sentence is indexed together with the
    first sentence of its passage (its title or heading line, when the passage has one), so that
    a sentence that names its subject only through the passage still matches.

    Example:
        >>> s = [Sentence(0, 0, 0, 0, "Paris\\nIt is large.", ()), Sentence(0, 1, 0, 0, " It has a river.", ()),
        ...      Sentence(0, 2, 0, 0, "\\n\\nRome\\nIt is old.", ())]
        >>> score = bm25_passage_index(s)
        >>> [x > 0 for x in score("Which river flows through Paris?")], [x > 0 for x in score("Is Rome old?")]
        ([True, True, False], [False, False, True])
    """
    try:
        import bm25s
    except ImportError as error:  # pragma: no cover - bm25s is a core dependency
        msg = "fusion='bm25' needs the bm25s package: pip install bm25s"
        raise ImportError(msg) from error

    count = len(sentences)
    if not sentences:
        return lambda question: []
    leads = passage_leads(sentences)
    texts = [
        sentence.text if lead == index else f"{sentences[lead].text} {sentence.text}"
        for index, (sentence, lead) in enumerate(zip(sentences, leads, strict=True))
    ]
    corpus = bm25s.tokenize(texts, stopwords="en", return_ids=False, show_progress=False)
    if not any(corpus):
        return lambda question: [0.0] * count
    index = bm25s.BM25()
    index.index(corpus, show_progress=False)

    def score(question: str) -> list[float]:
        query = bm25s.tokenize([question], stopwords="en", return_ids=False, show_progress=False)[0]
        if not query:
            return [0.0] * count
        return [float(x) for x in index.get_scores(query)]

    return score


def bm25_passage_scores(sentences: Sequence[Sentence], question: str) -> list[float]:
    """BM25 of every sentence for ``question`` (:func:`bm25_passage_index`, built for one question).

    Example:
        >>> s = [Sentence(0, 0, 0, 0, "Paris\\nIt is large.", ()), Sentence(0, 1, 0, 0, " It has a river.", ()),
        ...      Sentence(0, 2, 0, 0, "\\n\\nRome\\nIt is old.", ())]
        >>> [round(x, 2) > 0 for x in bm25_passage_scores(s, "Which river flows through Paris?")]
        [True, True, False]
    """
    return bm25_passage_index(sentences)(question)


LEXICAL_SIGNALS: dict[str, LexicalIndexer] = {"bm25": bm25_passage_index}
"""Lexical signals by name (``RetrievalConfig.fusion``), as indexers: built once over the
sentences, then asked per question (``retrieve_many`` scores all its questions over one index)."""


def lexical_index(name: str, sentences: Sequence[Sentence]) -> LexicalIndex:
    """The registered signal called ``name``, built once over ``sentences``."""
    if name not in LEXICAL_SIGNALS:
        msg = f"Unknown fusion signal {name!r}; expected one of {sorted(LEXICAL_SIGNALS)}"
        raise ValueError(msg)
    return LEXICAL_SIGNALS[name](sentences)


def lexical_scores_many(name: str, sentences: Sequence[Sentence], questions: Sequence[str]) -> list[list[float]]:
    """The signal ``name`` of every sentence for each question, from ONE index over ``sentences``
    (``[questions][sentences]``; equal to calling the signal once per question).

    Example:
        >>> s = [Sentence(0, 0, 0, 0, "Cats purr.", ()), Sentence(0, 1, 0, 0, "\\n\\nDogs bark.", ())]
        >>> [[x > 0 for x in row] for row in lexical_scores_many("bm25", s, ["Do cats purr?", "Why do dogs bark?"])]
        [[True, False], [False, True]]
    """
    score = lexical_index(name, sentences)
    return [score(question) for question in questions]
