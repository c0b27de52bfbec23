"""Reader-free evidence benchmark: does a method keep the evidence, at an equal token budget?

Every method chooses among the same units of the same text and fills the same budget of the
reader's tokens (the packaged SmolLM2 tokenizer); the kept character spans are scored against
the gold evidence. No reader is needed (``--reader`` adds one, for F1 beside the evidence).

Data (:mod:`infiniretri_integrations.evaluation.evidence_data`):

* ``hotpotqa-long``: each HotpotQA question's 2 gold + 8 distractor paragraphs padded with other
  questions' paragraphs to 8K / 32K / 128K tokens, LongBench "Passage N" format, gold paragraphs
  at seeded varied positions.
* ``leval``: L-Eval questions whose short gold answer occurs in the document (natural_question,
  scientific_qa, multidoc_qa, legal_contract_qa), documents up to a token cap.
* ``lexgap`` (asked for by name; not in the default ``--datasets``): the lexical-gap needles
  (:mod:`~infiniretri_integrations.evaluation.lexgap`), each needle planted with its pair's hard
  negatives in the Paul Graham essays (``<data>/niah_paulgraham/PaulGrahamEssays``) at 4K / 16K /
  64K tokens (its default ``--lengths``); ``--split``, ``--seed`` and ``--limit`` (first N pairs of
  the half) as for HotpotQA.

Metrics, per question (means with seeded percentile-bootstrap 95% CIs over questions):

* ``supporting_recall`` (HotpotQA): the fraction of the gold supporting sentences covered; a
  sentence counts as covered when at least 50% of its characters (``COVERAGE``) lie inside kept
  spans.
* ``both_paragraphs`` (HotpotQA): 1 when, for each of the two gold paragraphs, at least one of its
  supporting sentences is covered (the multi-hop question then has both of its hops).
* on ``lexgap``, ``supporting_recall`` is needle recall (1 when the needle sentence is covered,
  the same 50% rule) and ``negatives_kept`` the fraction of the pair's own hard negatives covered
  (a field only lexgap records have); ``both_paragraphs`` is ``None``.
* ``answer_recall``: 1 when the normalised gold answer (LongBench normalisation) occurs as whole
  words in the normalised kept text. Yes/no answers (8 of the 100 HotpotQA questions, a few L-Eval ones) are
  excluded (``None``): the word occurs anywhere.

Units and the budget rule: sentences are the package's own splitter
(:func:`~infiniretri_integrations.core.segmentation.segment_documents` with the reader's tokenizer
and the engine's ``max_sentence_tokens``), so every sentence method chooses among the engine's
sentences; chunk methods pack those sentences into chunks of ``chunk_tokens`` (200) tokens. A
unit's size is its token count. Every method fills a budget the same way
(:func:`~infiniretri_integrations.core.scoring.fill_budget`, the engine's own rule):
units in score order, each added if it still fits (otherwise skipped), until none fits; the kept
units are returned in document order. The engine applies its own ``token_budget`` through its
real chunk loop.

Methods (:data:`METHODS`): ``infiniretri`` (and ``infiniretri[name]`` variants from
``--variant name='{"scoring_layer": 12}'``), ``bm25_sentences``, ``bm25_passage_sentences`` (BM25
over sentences indexed with their passage's first line, the engine's fusion signal),
``minilm_sentences``, ``bm25_chunks``, ``minilm_chunks``, ``random_sentences`` and ``reference``
(the authors' ``infini-retri==0.0.3``, last layer; only on ``--reference-limit`` questions at the
shortest HotpotQA length). The reference keeps what its top-K rule keeps; that text is scored as it
is (budget ``null`` in the records, "as kept" in the table) and also cut to each budget: its kept
text is mapped onto the package's sentences (a sentence is kept when >= 50% of its characters
are), and those sentences fill the budget in document order (the reference exposes no
per-sentence score to rank them by).

The split: each dataset's questions are split once by ``--seed`` into a calibration half and a
test half (:func:`~infiniretri_integrations.evaluation.evidence_data.split_halves`); the table's
result is the test half; calibration-half figures are printed separately, labelled as such.

Example::

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python -m infiniretri_integrations.evaluation.evidence \\
        --data ../shared/data --lengths 8k,32k --methods bm25_sentences,minilm_sentences,random_sentences \\
        --out docs/results/evidence/baselines.json --table docs/results/evidence/baselines.md \\
        --plot docs/results/evidence/baselines.png
    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python -m infiniretri_integrations.evaluation.evidence \\
        --data ../shared/data --datasets lexgap --lengths 4k,16k --split test --budgets 256,512 \\
        --methods infiniretri,bm25_sentences,minilm_sentences,random_sentences --out lexgap.json

The package: :mod:`.data` (settings, loading the samples), :mod:`.metrics` (spans against the
gold evidence, the bootstrap CI), :mod:`.methods` (the methods and the budget cut),
:mod:`.runner` (:class:`EvidenceBench`, :func:`run_benchmark`), :mod:`.report` (tables,
paired differences, the plot) and :mod:`.cli` (the command line); every name is re-exported here.
"""

from __future__ import annotations

from infiniretri_integrations.evaluation.evidence.cli import configure_parser, main, run
from infiniretri_integrations.evaluation.evidence.data import (
    BUDGETS,
    COVERAGE,
    DATASET_LENGTHS,
    DATASETS,
    DEFAULT_DATASETS,
    DEFAULT_SEED,
    HOTPOT_FILE,
    LENGTHS,
    LEVAL_FOLDER,
    LEVAL_TASKS,
    LEXGAP_FOLDER,
    RESAMPLES,
    RESULTS_KEY,
    YES_NO,
    EvidenceSample,
    Span,
    check_inputs,
    dataset_lengths,
    load_samples,
)
from infiniretri_integrations.evaluation.evidence.methods import (
    CHEAP_METHODS,
    DEFAULT_METHODS,
    METHODS,
    Bench,
    MethodFn,
    MethodSpec,
    Scorer,
    Selection,
    base_method,
    cut_to_budgets,
    in_document_order,
    parse_variant,
    rank_by_scores,
    units_kept,
)
from infiniretri_integrations.evaluation.evidence.metrics import (
    bootstrap_ci,
    covered_fraction,
    evidence_metrics,
    kept_text,
    locate_pieces,
    merge_spans,
    negatives_kept,
    span_covered,
)
from infiniretri_integrations.evaluation.evidence.report import (
    SUMMARY_METRICS,
    compact_tables,
    markdown_table,
    metric_label,
    paired_differences,
    paired_table,
    plot,
    primary_metric,
    report,
    summarize,
)
from infiniretri_integrations.evaluation.evidence.runner import FIXED_META, EvidenceBench, run_benchmark
from infiniretri_integrations.evaluation.evidence_data import answer_in_text, hotpot_samples, leval_samples
from infiniretri_integrations.evaluation.metrics import best_f1, normalize_answer
from infiniretri_integrations.evaluation.reference import reference_kept_text
from infiniretri_integrations.evaluation.results_file import read_results, write_results

__all__ = [
    "BUDGETS",
    "CHEAP_METHODS",
    "COVERAGE",
    "DATASETS",
    "DATASET_LENGTHS",
    "DEFAULT_DATASETS",
    "DEFAULT_METHODS",
    "DEFAULT_SEED",
    "FIXED_META",
    "HOTPOT_FILE",
    "LENGTHS",
    "LEVAL_FOLDER",
    "LEVAL_TASKS",
    "LEXGAP_FOLDER",
    "METHODS",
    "RESAMPLES",
    "RESULTS_KEY",
    "SUMMARY_METRICS",
    "YES_NO",
    "Bench",
    "EvidenceBench",
    "EvidenceSample",
    "MethodFn",
    "MethodSpec",
    "Scorer",
    "Selection",
    "Span",
    "answer_in_text",
    "base_method",
    "best_f1",
    "bootstrap_ci",
    "check_inputs",
    "compact_tables",
    "configure_parser",
    "covered_fraction",
    "cut_to_budgets",
    "dataset_lengths",
    "evidence_metrics",
    "hotpot_samples",
    "in_document_order",
    "kept_text",
    "leval_samples",
    "load_samples",
    "locate_pieces",
    "main",
    "markdown_table",
    "merge_spans",
    "metric_label",
    "negatives_kept",
    "normalize_answer",
    "paired_differences",
    "paired_table",
    "parse_variant",
    "plot",
    "primary_metric",
    "rank_by_scores",
    "read_results",
    "reference_kept_text",
    "report",
    "run",
    "run_benchmark",
    "span_covered",
    "summarize",
    "units_kept",
    "write_results",
]
