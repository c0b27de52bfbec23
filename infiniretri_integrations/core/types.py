"""Plain data types shared by the core engine and every adapter."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class SourceDocument:
    """One input document: its text, an optional id and optional metadata (kept untouched).

    Example:
        >>> SourceDocument("Paris is the capital of France.", id="fr", metadata={"lang": "en"}).id
        'fr'
    """

    text: str
    id: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            msg = f"SourceDocument.text must be a str, got {type(self.text).__name__}: {self.text!r:.80}"
            raise TypeError(msg)
        if not isinstance(self.metadata, Mapping):
            msg = f"SourceDocument.metadata must be a mapping (e.g. a dict), got {type(self.metadata).__name__}: {self.metadata!r:.80}"
            raise TypeError(msg)


@dataclass(frozen=True)
class Sentence:
    """A retrieval unit: a span ``text[start:end]`` of one document with its token ids.

    ``start``/``end`` are character offsets into the document's original text; the sentence
    text includes the whitespace that precedes it, so the sentences of a document concatenate
    back to the document exactly.
    """

    document_index: int
    sentence_index: int
    start: int
    end: int
    text: str
    token_ids: tuple[int, ...]

    @property
    def token_count(self) -> int:
        return len(self.token_ids)


@dataclass(frozen=True)
class RetrievedSentence:
    """A sentence the model's attention kept, with where it came from and how it scored."""

    text: str
    score: float
    document_index: int
    document_id: str | None
    sentence_index: int
    start: int
    end: int
    token_count: int
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def stripped(self) -> tuple[str, int, int]:
        """The text without surrounding whitespace and its exact ``(start, end)`` in the source
        document (``document.text[start:end] == text``).

        Example:
            >>> RetrievedSentence(" Bob lives in Rome. ", 1.0, 0, "d", 1, 10, 30, 5).stripped()
            ('Bob lives in Rome.', 11, 29)
        """
        lead = len(self.text) - len(self.text.lstrip())
        body = self.text.strip()
        start = self.start + lead
        return body, start, start + len(body)

    def to_dict(self) -> dict[str, Any]:
        """The sentence as plain data (JSON-ready when its metadata is): the stripped text with
        its span (:meth:`stripped`), score, provenance and size. The one shape every output of
        the package (CLI JSON, LangChain events, Ray rows) uses.

        Example:
            >>> RetrievedSentence(" Bob lives in Rome.", 2.5, 1, "bob", 0, 0, 19, 6, {"page": 3}).to_dict()
            {'text': 'Bob lives in Rome.', 'score': 2.5, 'document_index': 1, 'document_id': 'bob', 'sentence_index': 0, 'start': 1, 'end': 19, 'token_count': 6, 'metadata': {'page': 3}}
        """
        text, start, end = self.stripped()
        return {
            "text": text,
            "score": self.score,
            "document_index": self.document_index,
            "document_id": self.document_id,
            "sentence_index": self.sentence_index,
            "start": start,
            "end": end,
            "token_count": self.token_count,
            "metadata": dict(self.metadata),
        }


@dataclass(frozen=True)
class ChunkProgress:
    """Reported after each chunk is scored (for progress bars and streaming events)."""

    chunk_index: int
    chunk_count: int
    tokens_read: int
    tokens_total: int
    cached_sentences: int
    cached_tokens: int


@dataclass(frozen=True)
class ForwardPass:
    """One scoring forward pass, as handed to an engine's ``on_forward`` hook before it runs.

    ``input_ids`` (``[1, padded_length]``) is exactly what the model is fed: the prompt
    (``length`` real tokens) right-padded to a shape bucket; the question rows start at
    ``question_start``; ``layers`` are the scoring layers (the forward stops after the deepest).
    """

    chunk_index: int
    input_ids: torch.Tensor
    length: int
    question_start: int
    layers: tuple[int, ...]


@dataclass
class RetrievalStats:
    """What one retrieval run did.

    ``input_tokens`` counts every token of the input; ``tokens_read`` the document tokens the
    scoring passes read (equal to ``input_tokens`` unless the cascade, ``candidate_tokens``,
    chose fewer). ``stage_seconds`` splits the call's time into ``segment`` (sentences and
    tokens), ``lexical`` (the BM25 index and scores; 0 without fusion or cascade),
    ``similarity`` (the question's forward and the cosines, the input embeddings for the
    cascade's first stage or ``similarity="embeddings"``; 0 without ``similarity``),
    ``candidates`` (the cascade's choice and the chunk packing) and ``passes`` (the chunk loop);
    for ``retrieve_many`` they are the whole call's.
    """

    documents: int = 0
    skipped_documents: list[int] = field(default_factory=list)
    sentences: int = 0
    input_tokens: int = 0
    chunks: int = 0
    kept_sentences: int = 0
    kept_tokens: int = 0
    scoring_layers: tuple[int, ...] = ()
    seconds: float = 0.0
    tokens_read: int = 0
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def kept_ratio(self) -> float:
        """Kept tokens / input tokens (the paper reports about 4.5% on LongBench)."""
        return self.kept_tokens / self.input_tokens if self.input_tokens else 0.0

    @property
    def seconds_per_1k_tokens(self) -> float:
        return 1000.0 * self.seconds / self.input_tokens if self.input_tokens else 0.0


@dataclass
class RetrievalResult:
    """The kept sentences (document order) and the run's statistics."""

    question: str
    sentences: list[RetrievedSentence]
    stats: RetrievalStats
    documents: list[SourceDocument] = field(default_factory=list, repr=False)

    @property
    def context(self) -> str:
        """The kept sentences joined as the answering model reads them."""
        return join_sentences(self.sentences)

    def by_document(self) -> dict[int, list[RetrievedSentence]]:
        """Kept sentences grouped by source document index (document order inside each group)."""
        groups: dict[int, list[RetrievedSentence]] = {}
        for sentence in self.sentences:
            groups.setdefault(sentence.document_index, []).append(sentence)
        return groups

    def __iter__(self) -> Iterator[RetrievedSentence]:
        return iter(self.sentences)

    def __len__(self) -> int:
        return len(self.sentences)


@dataclass
class Answer:
    """A generated answer and the retrieval it was generated from."""

    text: str
    retrieval: RetrievalResult
    generation_seconds: float = 0.0
    generated_tokens: int = 0


def join_sentences(sentences: list[RetrievedSentence]) -> str:
    """Join kept sentences: adjacent sentences of one document keep their own spacing,
    gaps (skipped text or a new document) become a blank line."""
    parts: list[str] = []
    previous: RetrievedSentence | None = None
    for sentence in sentences:
        text = sentence.text
        contiguous = (
            previous is not None
            and previous.document_index == sentence.document_index
            and previous.sentence_index + 1 == sentence.sentence_index
        )
        if previous is not None and not contiguous:
            parts.append("\n\n")
            text = text.lstrip()
        elif previous is None:
            text = text.lstrip()
        parts.append(text)
        previous = sentence
    return "".join(parts).strip()


class RetrievalCancelled(Exception):
    """A retrieval stopped early because its ``cancel`` event was set (checked between passes).

    The model lock is free again when this is raised: the next call runs normally.
    """


ProgressCallback = Callable[[ChunkProgress, list[RetrievedSentence]], None]
"""Called after each chunk with the progress and the current working set (first question's)."""

ForwardHook = Callable[[ForwardPass], None]
"""Called with what is fed to the model before every scoring forward pass."""
