"""The cascade's first stage, other ways (#22): how often the evidence is among the candidates when a quarter of
the input is chosen, on a calibration half. Experiment script (2026-12-05, third session); no pass is run.

* similarity signals fused with BM25 by reciprocal rank (weight 1, as the default first stage): the input
  embeddings (the default), the same with smooth-inverse-frequency token weights, and the hidden states entering
  layer 1 or 2 from a forward pass of the input in independent 256-token windows (a cheap early-layer read);
* the candidate choice: similarity weight 0.5 / 1 / 2, coverage share 0 / 0.1 / 0.25, neighbours 0 / 1.

    python docs/results/cascade_probe/first_stage_variants.py --data ../shared/data --datasets lexgap \\
        --lengths 16k --split calibration
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

import torch

from infiniretri_integrations.core.cascade import candidate_indices
from infiniretri_integrations.core.lexical import bm25_passage_scores
from infiniretri_integrations.core.models import LocalModel, default_model
from infiniretri_integrations.core.scoring import rank_fusion
from infiniretri_integrations.core.segmentation import segment_documents
from infiniretri_integrations.core.similarity import (
    SentenceVectors,
    TokenWeights,
    embedding_vectors,
    question_embeddings,
)
from infiniretri_integrations.core.types import Sentence
from infiniretri_integrations.evaluation.evidence.cli import configure_parser
from infiniretri_integrations.evaluation.evidence.data import load_samples
from infiniretri_integrations.evaluation.lexgap import span_kept

SHARE = 0.25
WINDOW = 256


class _Stop(Exception):
    pass


def states_entering(lm: LocalModel, ids: torch.Tensor, layer: int) -> torch.Tensor:
    """``[batch, tokens, hidden]`` hidden states entering ``layer`` (the forward stops there)."""
    captured: dict[str, torch.Tensor] = {}

    def hook(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        captured["states"] = (args[0] if args else kwargs["hidden_states"]).detach()
        raise _Stop

    handle = lm.model.model.layers[layer].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.inference_mode():
            lm.model(input_ids=ids, use_cache=False)
    except _Stop:
        pass
    finally:
        handle.remove()
    return captured["states"].float()


def windowed_vectors(
    lm: LocalModel, sentences: Sequence[Sentence], layer: int, weights: TokenWeights
) -> SentenceVectors:
    """Sentence vectors from the states entering ``layer``, each window of whole sentences read alone."""
    vectors = SentenceVectors(weights)
    windows: list[list[Sentence]] = [[]]
    for sentence in sentences:
        if windows[-1] and sum(s.token_count for s in windows[-1]) + sentence.token_count > WINDOW:
            windows.append([])
        windows[-1].append(sentence)
    for window in windows:
        ids = torch.tensor([[t for s in window for t in s.token_ids]])
        vectors.add(window, states_entering(lm, ids, layer)[0])
    return vectors


def held(
    sample: Any,
    sentences: Sequence[Sentence],
    budget: int,
    scores: torch.Tensor,
    coverage: float = 0.25,
    neighbours: int = 1,
) -> float:
    """Share of the sample's evidence sentences among the candidates chosen by ``scores``."""
    sizes = [s.token_count for s in sentences]
    documents = [s.document_index for s in sentences]
    chosen = candidate_indices(sizes, documents, scores.tolist(), budget, coverage, neighbours=neighbours)
    spans = [(sentences[i].start, sentences[i].end) for i in chosen]
    return sum(span_kept((start, end), spans) for start, end, _ in sample.supporting) / len(sample.supporting)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    configure_parser(parser)
    args = parser.parse_args()
    lm = default_model()
    totals: dict[str, float] = {}
    seconds: dict[str, float] = {}
    tokens = 0
    samples = load_samples(args, lm.tokenizer)
    for sample in samples:
        (sentences,) = segment_documents([sample.text], lm.tokenizer, 256)
        budget = int(SHARE * sum(s.token_count for s in sentences))
        tokens += sum(s.token_count for s in sentences)
        lexical = torch.tensor(bm25_passage_scores(sentences, sample.question), dtype=torch.float64)
        question_ids = lm.tokenizer(sample.question, add_special_tokens=False)["input_ids"]
        signals: dict[str, torch.Tensor] = {}
        for name, weights in (("embeddings", TokenWeights.uniform()), ("embeddings, SIF", TokenWeights.of(sentences))):
            vectors = embedding_vectors(lm, sentences, weights)
            question = question_embeddings(lm, question_ids)
            signals[name] = torch.tensor(vectors.scores(sentences, question_ids, question), dtype=torch.float64)
        for layer in (1, 2):
            clock = time.perf_counter()
            vectors = windowed_vectors(lm, sentences, layer, TokenWeights.of(sentences))
            seconds[f"layer {layer}"] = seconds.get(f"layer {layer}", 0.0) + time.perf_counter() - clock
            question = states_entering(lm, torch.tensor([question_ids]), layer)[0]
            signals[f"layer {layer}"] = torch.tensor(
                vectors.scores(sentences, question_ids, question), dtype=torch.float64
            )

        rows = {"BM25 alone": held(sample, sentences, budget, lexical)}
        for name, signal in signals.items():
            rows[f"BM25 + {name}"] = held(sample, sentences, budget, rank_fusion(lexical, signal, 1.0))
        for weight in (0.5, 1.0, 2.0):
            fused = rank_fusion(lexical, signals["embeddings"], weight)
            for coverage in (0.0, 0.1, 0.25):
                for neighbours in (0, 1):
                    rows[f"embeddings w{weight} coverage {coverage} neighbours {neighbours}"] = held(
                        sample, sentences, budget, fused, coverage, neighbours
                    )
        for name, value in rows.items():
            totals[name] = totals.get(name, 0.0) + value
    for name, total in totals.items():
        print(f"{name:50s} {total / len(samples):.3f}")
    for name, spent in seconds.items():
        print(f"{name}: {spent / tokens * 1000:.3f} s per 1K tokens ({torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
