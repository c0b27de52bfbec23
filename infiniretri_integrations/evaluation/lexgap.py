"""Lexical-gap needles: questions that share no content word with the sentence that answers them.

Embedding retrieval is used because questions rarely use a document's words ("Which character
has been to Paris?" against "Lorenzo took a selfie beneath the Eiffel Tower ..."; the style of
NoLiMa, arXiv 2502.05167, with needles of our own). This module measures that gap:

* **The pairs** (``lexgap_pairs.json``, shipped with the package): 120 needle/question pairs in 10
  categories (places, foods, jobs, conditions, hobbies, sports, music, animals, science,
  weather), each with an invented first name (unique in the set), a one-sentence ``needle`` that
  implies the answer through common world knowledge, a ``question`` whose answer is the
  character, the question's ``key`` term, and 2-3 ``hard_negatives``: sentences that literally
  contain the key but name no character and do not answer. No content word of a question
  (lower-cased, stop words and question framing removed, Porter-stemmed, also inside compounds)
  occurs in its needle (:func:`shared_content_words`).
* **The split**: the pairs of each category are split by seed into a calibration half and a test
  half (:func:`~infiniretri_integrations.evaluation.evidence_data.split_halves`), so both halves
  hold every category equally.
* **The samples** (:func:`build_samples`): Paul Graham essays (read at run time from a folder;
  not shipped) cut to a target number of tokens of a given tokenizer, with the needle, the pair's
  hard negatives and the hard negatives of two other pairs of the same category planted at seeded
  sentence boundaries. Only one character's needle is ever in a text, so the answer is unique.
* **The benchmark**: these samples are the evidence benchmark's ``lexgap`` dataset
  (``python -m infiniretri_integrations.evaluation.evidence --datasets lexgap``), scored with its
  metrics: needle recall is ``supporting_recall`` (:func:`needle_kept`), the hard negatives kept
  ``negatives_kept``; :mod:`.lexgap_baselines` prints the same figures as one small table.

Example:
    >>> pair = next(p for p in load_pairs() if p.key == "Paris")
    >>> sorted(content_words(pair.question)), shared_content_words(pair)
    (['pari'], set())
"""

from __future__ import annotations

import functools
import json
import random
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from infiniretri_integrations.evaluation.evidence_data import (
    HALVES,
    EvidenceSample,
    Tokenizer,
    span_covered,
    split_halves,
    split_order,
)

DATASET = "lexgap"
PAIRS_FILE = "lexgap_pairs.json"
LENGTHS = (4000, 16000, 64000)
"""Target lengths in tokens of the benchmark's samples."""
DISTRACTOR_PAIRS = 2
"""Other pairs of the same category whose hard negatives are planted as extra distractors."""
NEGATIVES_PER_PAIR = (2, 3)
MIN_COMPOUND_PART = 3
"""Shortest stem that counts when found inside a longer word (``"bag"`` in ``"bagpipes"``)."""

_STOP_WORD_TEXT = """a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have having
    he her here hers herself him himself his how i if in into is it its itself just me more most my myself
    nor not now of off on once only or other our ours ourselves out over own same she should so some such
    than that the their theirs them themselves then there these they this those through to too under until
    up very was we were what when where which while who whom whose why will with would you your yours
    yourself yourselves among ever"""
STOP_WORDS = frozenset(_STOP_WORD_TEXT.split())
QUESTION_FRAME = frozenset({"character", "characters", "person", "people", "mentioned", "text"})
"""Words that frame a question ("Which person in the text ..."), not content; no needle uses them."""

_WORD = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class LexGapPair:
    """One needle and its question; the answer is ``character``."""

    id: str
    category: str
    character: str
    needle: str
    question: str
    key: str
    hard_negatives: tuple[str, ...]


# ------------------------------------------------------------------------------------------ pairs
def load_pairs(path: str | Path | None = None) -> list[LexGapPair]:
    """The pairs of ``path`` (default: the packaged ``lexgap_pairs.json``), validated.

    Raises:
        ValueError: a malformed record, a duplicate id or character, a key missing from its
            question or a hard negative, a character name in a hard negative or another needle,
            or a needle or hard negative that is not exactly one sentence.
    """
    if path is None:
        source = PAIRS_FILE
        text = resources.files("infiniretri_integrations.evaluation").joinpath(PAIRS_FILE).read_text(encoding="utf-8")
    else:
        source = str(path)
        text = Path(path).read_text(encoding="utf-8")
    data = json.loads(text)
    if not isinstance(data, list):
        msg = f"{source}: expected a JSON list of pairs, got {type(data).__name__}"
        raise ValueError(msg)
    pairs = [_pair(raw, f"{source} record {index}") for index, raw in enumerate(data)]
    _check_set(pairs, source)
    return pairs


def _pair(raw: Any, where: str) -> LexGapPair:
    fields = ("id", "category", "character", "needle", "question", "key", "hard_negatives")
    if not isinstance(raw, dict) or set(raw) != set(fields):
        got = sorted(raw) if isinstance(raw, dict) else type(raw).__name__
        msg = f"{where}: expected exactly the fields {list(fields)}, got {got}"
        raise ValueError(msg)
    for name in fields[:-1]:
        if not isinstance(raw[name], str) or not raw[name].strip():
            msg = f"{where}: {name!r} must be a non-empty string, got {raw[name]!r}"
            raise ValueError(msg)
    negatives = raw["hard_negatives"]
    low, high = NEGATIVES_PER_PAIR
    if not isinstance(negatives, list) or not low <= len(negatives) <= high:
        msg = f"{where}: 'hard_negatives' must be a list of {low}-{high} sentences, got {negatives!r}"
        raise ValueError(msg)
    if not all(isinstance(n, str) and n.strip() for n in negatives):
        msg = f"{where}: every hard negative must be a non-empty string, got {negatives!r}"
        raise ValueError(msg)
    pair = LexGapPair(**{**raw, "hard_negatives": tuple(negatives)})
    if not _has_word(pair.needle, pair.character):
        msg = f"{where}: the needle {pair.needle!r} does not name its character {pair.character!r}"
        raise ValueError(msg)
    if pair.key.lower() not in pair.question.lower():
        msg = f"{where}: the key {pair.key!r} does not occur in the question {pair.question!r}"
        raise ValueError(msg)
    for sentence in (pair.needle, *pair.hard_negatives):
        if len(_sentences(sentence)) != 1:
            msg = f"{where}: {sentence!r} must be exactly one sentence for the package's splitter"
            raise ValueError(msg)
    return pair


def _check_set(pairs: Sequence[LexGapPair], source: str) -> None:
    for name in ("id", "character"):
        values = [getattr(p, name) for p in pairs]
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:
            msg = f"{source}: every {name} must be unique, repeated: {repeated}"
            raise ValueError(msg)
    names = [p.character for p in pairs]
    for pair in pairs:
        for negative in pair.hard_negatives:
            named = [n for n in names if _has_word(negative, n)]
            if named:
                msg = f"{source} {pair.id}: hard negative {negative!r} names characters {named}"
                raise ValueError(msg)
        others = [n for n in names if n != pair.character and _has_word(pair.needle, n)]
        if others:
            msg = f"{source} {pair.id}: the needle {pair.needle!r} names other characters {others}"
            raise ValueError(msg)


def _has_word(text: str, word: str) -> bool:
    return re.search(rf"\b{re.escape(word)}\b", text) is not None


def _sentences(text: str) -> list[tuple[int, int]]:
    from infiniretri_integrations.core.segmentation import sentence_spans

    return sentence_spans(text)


# ------------------------------------------------------------------------------ content words
def words(text: str) -> list[str]:
    """The lower-cased, accent-free words of ``text`` without stop words, question framing and
    possessive ``'s`` (hyphenated compounds give their parts).

    Example:
        >>> words("Which character ate at Lorenzo's café in the e-reader shop?")
        ['ate', 'lorenzo', 'cafe', 'e', 'reader', 'shop']
    """
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    plain = re.sub(r"['’]s\b", "", plain)
    return [w for w in _WORD.findall(plain) if w not in STOP_WORDS and w not in QUESTION_FRAME]


@functools.cache
def _porter() -> Any:
    try:
        from nltk.stem.porter import PorterStemmer
    except ImportError:
        msg = "content_words needs NLTK's Porter stemmer: pip install nltk"
        raise ImportError(msg) from None
    return PorterStemmer()


@functools.cache
def stem(word: str) -> str:
    """The Porter stem (NLTK) of a lower-cased word.

    Example:
        >>> stem("photographing"), stem("cities")
        ('photograph', 'citi')
    """
    return str(_porter().stem(word))


def content_words(text: str) -> set[str]:
    """The stems of the content words of ``text`` (:func:`words`, then :func:`stem`).

    Example:
        >>> sorted(content_words("Who among the people mentioned has visited Rome?"))
        ['rome', 'visit']
    """
    return {stem(w) for w in words(text)}


def shared_content_words(pair: LexGapPair) -> set[str]:
    """Stems of the question's content words that its needle also holds: the same stem, or one
    word's stem (at least :data:`MIN_COMPOUND_PART` letters) inside the other word, so that
    ``"camp"`` is found in ``"campfire"`` and ``"bag"`` in ``"bagpipes"``. Empty for every pair.

    Example:
        >>> pair = LexGapPair("x", "c", "Ana", "Ana lit a campfire.", "Who went camping?", "camping", ())
        >>> shared_content_words(pair)
        {'camp'}
    """
    needle = words(pair.needle)
    shared = set()
    for question_word in words(pair.question):
        root = stem(question_word)
        for needle_word in needle:
            other = stem(needle_word)
            if (
                root == other
                or (len(root) >= MIN_COMPOUND_PART and root in needle_word)
                or (len(other) >= MIN_COMPOUND_PART and other in question_word)
            ):
                shared.add(root)
    return shared


# ------------------------------------------------------------------------------------------ split
def pair_halves(pairs: Sequence[LexGapPair], seed: int) -> dict[str, str]:
    """Each pair's half: the pairs of each category split by
    :func:`~infiniretri_integrations.evaluation.evidence_data.split_halves`, so that each half
    holds half of every category.

    Example:
        >>> halves = pair_halves(load_pairs(), seed=0)
        >>> sorted(set(halves.values())), sum(h == "test" for h in halves.values())
        (['calibration', 'test'], 60)
    """
    halves: dict[str, str] = {}
    for category in sorted({p.category for p in pairs}):
        halves.update(split_halves([p.id for p in pairs if p.category == category], seed))
    return halves


def pair_order(pairs: Sequence[LexGapPair], seed: int) -> list[LexGapPair]:
    """The pairs in seeded order, categories taking turns (the first ``N`` of a half cover the
    categories evenly)."""
    by_id = {p.id: p for p in pairs}
    queues = [
        split_order([p.id for p in pairs if p.category == category], seed)
        for category in sorted({p.category for p in pairs})
    ]
    longest = max((len(q) for q in queues), default=0)
    return [by_id[q[i]] for i in range(longest) for q in queues if i < len(q)]


# ---------------------------------------------------------------------------------------- samples
def load_essays(folder: str | Path) -> list[str]:
    """The texts of the ``*.txt`` essays in ``folder``, sorted by file name."""
    files = sorted(Path(folder).glob("*.txt"))
    if not files:
        msg = f"No .txt essays found in {str(folder)!r} (expected the Paul Graham essays folder)"
        raise FileNotFoundError(msg)
    return [path.read_text(encoding="utf-8", errors="replace").strip() for path in files]


def build_samples(
    haystack_dir: str | Path,
    tokenizer: Tokenizer,
    lengths: Sequence[int],
    seed: int = 0,
    split: str = "all",
    limit: int | None = None,
    pairs: Sequence[LexGapPair] | None = None,
) -> list[EvidenceSample]:
    """One sample per pair and length: the essays of ``haystack_dir`` cut to each length in
    ``tokenizer`` tokens with the pair's needle and distractors planted (:func:`build_sample`).

    ``split`` keeps one half (``"calibration"``, ``"test"``) or ``"all"``; ``limit`` the first
    pairs of :func:`pair_order`. Deterministic for a seed.
    """
    if split != "all" and split not in HALVES:
        msg = f"split must be 'all' or one of {list(HALVES)}, got {split!r}"
        raise ValueError(msg)
    pool = list(load_pairs() if pairs is None else pairs)
    halves = pair_halves(pool, seed)
    order = [p for p in pair_order(pool, seed) if split == "all" or halves[p.id] == split]
    if limit is not None:
        order = order[:limit]
    essays = load_essays(haystack_dir)
    return [
        build_sample(pair, pool, essays, tokenizer, length, seed, halves[pair.id])
        for length in lengths
        for pair in order
    ]


def build_sample(
    pair: LexGapPair,
    pool: Sequence[LexGapPair],
    essays: Sequence[str],
    tokenizer: Tokenizer,
    target_tokens: int,
    seed: int,
    half: str,
) -> EvidenceSample:
    """The essays (starting at a seeded essay, repeated when too short) cut at a sentence end to
    at most ``target_tokens`` tokens with, at distinct seeded sentence boundaries, the needle,
    the pair's hard negatives and those of :data:`DISTRACTOR_PAIRS` other pairs of its category.

    ``supporting`` is the needle's character span; ``metadata`` holds the key, the needle's depth
    (0-1, by characters), the spans of the planted negatives and the distractor pairs' ids.
    """
    rng = random.Random(f"lexgap:{seed}:{pair.id}:{target_tokens}")
    others = sorted((p for p in pool if p.category == pair.category and p.id != pair.id), key=lambda p: p.id)
    distractors = rng.sample(others, min(DISTRACTOR_PAIRS, len(others)))
    planted = [pair.needle, *pair.hard_negatives, *(n for p in distractors for n in p.hard_negatives)]
    depths = [rng.random() for _ in planted]
    first = rng.randrange(len(essays))
    haystack = "\n\n".join([*essays[first:], *essays[:first]])
    planted_tokens = sum(_count(tokenizer, " " + sentence) for sentence in planted)
    room = target_tokens - planted_tokens
    if room <= 0:
        msg = f"target_tokens ({target_tokens}) must exceed the {planted_tokens} tokens of the planted sentences"
        raise ValueError(msg)
    body = _cut(haystack, tokenizer, room)
    while True:
        text, spans = _plant(body, planted, depths)
        tokens = _count(tokenizer, text)
        if tokens <= target_tokens:
            break
        body = body[: _sentence_ends(body)[-2]]
    needle_start, needle_end = spans[0]
    own = len(pair.hard_negatives)
    return EvidenceSample(
        dataset=DATASET,
        id=pair.id,
        question=pair.question,
        answers=(pair.character,),
        text=text,
        half=half,
        task=pair.category,
        target_tokens=target_tokens,
        input_tokens=tokens,
        supporting=((needle_start, needle_end, 0),),
        metadata={
            "key": pair.key,
            "depth": round(needle_start / len(text), 3),
            "negatives": [list(s) for s in spans[1 : 1 + own]],
            "distractors": [list(s) for s in spans[1 + own :]],
            "distractor_pairs": [p.id for p in distractors],
            "first_essay": first,
        },
    )


def _count(tokenizer: Tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _cut(haystack: str, tokenizer: Tokenizer, tokens: int) -> str:
    """The longest prefix of ``haystack`` (repeated as needed) that ends at a sentence end within
    its first ``tokens`` tokens."""
    chars = tokens * 6 + 1000  # more characters than ``tokens`` tokens take in prose: one tokenizer call
    text = haystack
    while True:
        while len(text) < chars:
            text += "\n\n" + haystack
        window = text[:chars]
        encoded = tokenizer(window, add_special_tokens=False, return_offsets_mapping=True)
        if len(encoded["input_ids"]) > tokens:
            break
        chars *= 2
    limit = encoded["offset_mapping"][tokens - 1][1]
    ends = [end for end in _sentence_ends(window[: limit + 1]) if end <= limit]
    if not ends:
        msg = f"no sentence ends within the first {tokens} tokens of the haystack"
        raise ValueError(msg)
    return window[: ends[-1]]


_SENTENCE_END = re.compile(r"[.!?][\"'”’)\]]*$")


def _sentence_ends(text: str) -> list[int]:
    """Ends of the package splitter's sentences that close with terminal punctuation followed by
    whitespace or the end of the text: where a planted sentence stays a sentence of its own."""
    ends = [end for _, end in _sentences(text)]
    return [e for e in ends if _SENTENCE_END.search(text, max(0, e - 4), e) and (e == len(text) or text[e].isspace())]


def _plant(body: str, sentences: Sequence[str], depths: Sequence[float]) -> tuple[str, list[tuple[int, int]]]:
    """``body`` with each sentence inserted (after a space) at the free sentence end nearest its
    depth, and each inserted sentence's span, in the order given."""
    ends = _sentence_ends(body)
    if len(ends) < len(sentences):
        msg = f"the haystack has {len(ends)} sentence ends, fewer than the {len(sentences)} sentences to plant"
        raise ValueError(msg)
    slots: list[int] = []
    for depth in depths:
        wanted = round(depth * (len(ends) - 1))
        free = min((i for i in range(len(ends)) if i not in slots), key=lambda i: (abs(i - wanted), i))
        slots.append(free)
    pieces: list[str] = []
    spans: list[tuple[int, int]] = [(0, 0)] * len(sentences)
    cursor = 0
    length = 0
    for slot, index in sorted(zip(slots, range(len(sentences)), strict=True)):
        chunk = body[cursor : ends[slot]] + " "
        pieces.append(chunk)
        length += len(chunk)
        spans[index] = (length, length + len(sentences[index]))
        pieces.append(sentences[index])
        length += len(sentences[index])
        cursor = ends[slot]
    pieces.append(body[cursor:])
    return "".join(pieces), spans


def span_kept(span: tuple[int, int], kept_spans: Sequence[tuple[int, int]]) -> bool:
    """Whether the kept character spans cover at least half of ``span``: the evidence benchmark's
    one rule, :func:`~infiniretri_integrations.evaluation.evidence.metrics.span_covered`.

    Example:
        >>> span_kept((10, 20), [(0, 12), (14, 18)]), span_kept((10, 20), [(0, 14)])
        (True, False)
    """
    return span_covered(span, kept_spans)


def needle_kept(sample: EvidenceSample, kept_spans: Sequence[tuple[int, int]]) -> bool:
    """Whether the kept character spans cover at least half of the needle sentence (:func:`span_kept`;
    the evidence benchmark's ``supporting_recall`` of a lexical-gap sample is this, as 1.0 or 0.0).

    Example:
        >>> sample = EvidenceSample("lexgap", "x", "q", ("Ana",), "Hi. Ana ate.", "test", supporting=((4, 12, 0),))
        >>> needle_kept(sample, [(0, 9)]), needle_kept(sample, [(0, 7)])
        (True, False)
    """
    start, end, _ = sample.supporting[0]
    return span_kept((start, end), kept_spans)
