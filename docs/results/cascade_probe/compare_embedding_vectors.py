"""The first stage's input-embedding vectors, the previous implementation (a row per token looked up 64K tokens at
a time, then ``SentenceVectors.add``) against the current one (``embedding_bag`` over the distinct tokens' rows),
side by side in one run on the essays haystack: seconds, and whether scores and rankings are identical.

    git show 5b70007:infiniretri_integrations/core/similarity.py > /tmp/previous_similarity.py
    python docs/results/cascade_probe/compare_embedding_vectors.py --essays ../shared/data/niah_paulgraham/PaulGrahamEssays \\
        --copies 7 --previous /tmp/previous_similarity.py
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

from infiniretri_integrations.core import similarity
from infiniretri_integrations.core.models import default_model
from infiniretri_integrations.core.segmentation import segment_documents

QUESTION = "Which character has been to Rome?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--essays", type=Path, required=True)
    parser.add_argument("--copies", type=int, default=7, help="copies of the essays (7: about 1.08M tokens)")
    parser.add_argument("--previous", type=Path, required=True, help="the previous core/similarity.py")
    args = parser.parse_args()
    spec = importlib.util.spec_from_file_location("previous_similarity", args.previous)
    assert spec is not None and spec.loader is not None
    previous = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = previous  # dataclasses look their module up
    spec.loader.exec_module(previous)
    lm = default_model()
    essays = "\n\n".join(p.read_text() for p in sorted(args.essays.glob("*.txt")))
    (sentences,) = segment_documents([(essays + "\n\n") * args.copies], lm.tokenizer, 256)
    question_ids = lm.tokenizer(QUESTION, add_special_tokens=False)["input_ids"]
    question = similarity.question_embeddings(lm, question_ids)
    print(f"{len(sentences)} sentences, {sum(s.token_count for s in sentences)} tokens")
    for name, weights in (
        ("uniform weights (the first stage)", similarity.TokenWeights.uniform()),
        ("SIF weights", similarity.TokenWeights.of(sentences)),
    ):
        clock = time.perf_counter()
        before = previous.embedding_vectors(lm, sentences, weights)
        seconds_before = time.perf_counter() - clock
        clock = time.perf_counter()
        now = similarity.embedding_vectors(lm, sentences, weights)
        seconds_now = time.perf_counter() - clock
        scores_before = before.scores(sentences, question_ids, question)
        scores_now = now.scores(sentences, question_ids, question)
        print(
            f"{name}: previous {seconds_before:.2f} s, now {seconds_now:.2f} s ({seconds_before / seconds_now:.1f}x);"
            f" scores identical: {scores_before == scores_now}"
        )


if __name__ == "__main__":
    main()
