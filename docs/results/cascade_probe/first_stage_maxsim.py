"""The cascade's first stage with token-level similarity over the input embeddings (#22): how often the evidence is
among the candidates when a quarter of the input is chosen, on a calibration half. Experiment script (2026-12-05,
fourth session); no pass is run.

The default first stage compares mean-pooled (standardised) input embeddings of each sentence and the question. Here
each question token is matched with its most similar token of the sentence instead (late interaction, as ColBERT
does with contextual states): ``maxsim`` (mean over the question's tokens), ``maxsim_soft`` (a token identical to the
question's counts 0, so that the hard negatives that repeat the question's words gain nothing: BM25 already finds
those), ``maxsim_soft_sif`` (question tokens weighted by their rarity in the input), ``maxsim_soft_top`` (the best
question token only); each alone, fused with BM25, and fused with BM25 and the default's mean-pooled similarity.

    python docs/results/cascade_probe/first_stage_maxsim.py --data ../shared/data --datasets lexgap \\
        --lengths 16k --split calibration
"""

from __future__ import annotations

import argparse

import torch
from first_stage_variants import SHARE, held

from infiniretri_integrations.core.lexical import bm25_passage_scores
from infiniretri_integrations.core.models import default_model
from infiniretri_integrations.core.scoring import rank_fusion, rank_fusion_many
from infiniretri_integrations.core.segmentation import segment_documents
from infiniretri_integrations.core.similarity import TokenWeights, embedding_vectors, question_embeddings
from infiniretri_integrations.core.types import Sentence
from infiniretri_integrations.evaluation.evidence.cli import configure_parser
from infiniretri_integrations.evaluation.evidence.data import load_samples

SIF_SMOOTHING = 1e-3


def token_similarities(
    table: torch.Tensor, sentences: list[Sentence], question_ids: list[int]
) -> dict[str, torch.Tensor]:
    """``{variant: [sentences]}`` token-level similarities of each sentence to the question (see the module)."""
    ids = torch.tensor([t for s in sentences for t in s.token_ids])
    owner = torch.repeat_interleave(torch.arange(len(sentences)), torch.tensor([s.token_count for s in sentences]))
    tokens = table[ids]
    mean, std = tokens.mean(0), tokens.std(0).clamp_min(1e-6)
    context = torch.nn.functional.normalize((tokens - mean) / std, dim=-1)
    question_tensor = torch.tensor(question_ids)
    question = torch.nn.functional.normalize((table[question_tensor] - mean) / std, dim=-1)
    similarity = question @ context.T
    soft = similarity.masked_fill(question_tensor[:, None] == ids[None, :], 0.0)
    frequency = torch.bincount(ids, minlength=table.shape[0]).float()[question_tensor] / len(ids)
    rarity = SIF_SMOOTHING / (SIF_SMOOTHING + frequency)

    def best_per_sentence(matrix: torch.Tensor) -> torch.Tensor:
        out = torch.full((matrix.shape[0], len(sentences)), -1.0)
        return out.scatter_reduce(1, owner.expand(matrix.shape[0], -1), matrix, reduce="amax")

    best, best_soft = best_per_sentence(similarity), best_per_sentence(soft)
    return {
        "maxsim": best.mean(0),
        "maxsim_soft": best_soft.mean(0),
        "maxsim_soft_sif": (rarity[:, None] * best_soft).sum(0) / rarity.sum(),
        "maxsim_soft_top": best_soft.max(0).values,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    configure_parser(parser)
    args = parser.parse_args()
    lm = default_model()
    table = lm.model.get_input_embeddings().weight.detach().float()
    totals: dict[str, float] = {}
    samples = load_samples(args, lm.tokenizer)
    for sample in samples:
        (sentences,) = segment_documents([sample.text], lm.tokenizer, 256)
        budget = int(SHARE * sum(s.token_count for s in sentences))
        lexical = torch.tensor(bm25_passage_scores(sentences, sample.question), dtype=torch.float64)
        question_ids = lm.tokenizer(sample.question, add_special_tokens=False)["input_ids"]
        vectors = embedding_vectors(lm, sentences, TokenWeights.uniform())
        pooled = vectors.scores(sentences, question_ids, question_embeddings(lm, question_ids))
        embeddings = torch.tensor(pooled, dtype=torch.float64)
        rows = {
            "BM25 alone": held(sample, sentences, budget, lexical),
            "mean-pooled embeddings alone": held(sample, sentences, budget, embeddings),
            "BM25 + mean-pooled embeddings (default)": held(
                sample, sentences, budget, rank_fusion(lexical, embeddings)
            ),
        }
        for name, signal in token_similarities(table, sentences, question_ids).items():
            signal = signal.double()
            rows[f"{name} alone"] = held(sample, sentences, budget, signal)
            rows[f"BM25 + {name}"] = held(sample, sentences, budget, rank_fusion(lexical, signal))
            fused = rank_fusion_many(lexical, [(embeddings, 1.0), (signal, 1.0)])
            rows[f"BM25 + embeddings + {name}"] = held(sample, sentences, budget, fused)
        for name, value in rows.items():
            totals[name] = totals.get(name, 0.0) + value
    for name, total in totals.items():
        print(f"{name:45s} {total / len(samples):.3f}")


if __name__ == "__main__":
    main()
