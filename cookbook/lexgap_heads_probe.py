"""Probe for the lexical gap (#21): do query-focused heads of the packaged model find needles that
share no word with their question? Calibration half only (never the test half):

1. rank every (layer, head) by its share of the question's attention on the needle, on 20 pairs at 2K tokens;
2. check those heads' share on 20 other pairs (chance = the needle's share of the context);
3. score with the 8 best heads (``scoring_heads``), attention alone and fused with BM25, at 4K tokens
   and a 512-token budget, on the same 20 other pairs.

Run: ``HF_HUB_OFFLINE=1 python cookbook/lexgap_heads_probe.py ../shared/data/niah_paulgraham/PaulGrahamEssays``
"""

from __future__ import annotations

import json
import sys

from infiniretri_integrations import InfiniRetriEngine, load_model
from infiniretri_integrations.core.calibration.heads import EvidenceExample, query_focused_heads
from infiniretri_integrations.evaluation.lexgap import build_samples, needle_kept


def main(essays: str) -> None:
    lm = load_model(None, device="cpu")
    short = build_samples(essays, lm.tokenizer, [2000], split="calibration", limit=40)
    examples = [EvidenceExample(s.text, s.question, tuple((a, b) for a, b, _ in s.supporting)) for s in short]
    fit, held = query_focused_heads(lm, examples[:20]), query_focused_heads(lm, examples[20:])
    held_share = {(layer, head): share for layer, head, share in held.ranked()}
    top = fit.ranked()[:8]
    print(
        "held-out share / chance of the 8 best heads:",
        [(layer, head, round(held_share[(layer, head)] / held.uniform, 2)) for layer, head, _ in top],
    )
    heads = tuple(sorted((layer, head) for layer, head, _ in top))
    samples = build_samples(essays, lm.tokenizer, [4000], split="calibration", limit=40)[20:]
    for name, options in {
        "default": {},
        "8 heads alone": {"fusion": None, "scoring_heads": heads},
        "8 heads fused": {"scoring_heads": heads},
    }.items():
        engine = InfiniRetriEngine(lm, **options)
        kept = sum(
            needle_kept(s, [(x.start, x.end) for x in engine.retrieve(s.text, s.question, token_budget=512).sentences])
            for s in samples
        )
        print(f"{name}: needle kept {kept}/{len(samples)} at 512 tokens")
    with open("heads_probe_fit.json", "w", encoding="utf-8") as out:
        json.dump(fit.to_dict(), out)


if __name__ == "__main__":
    main(sys.argv[1])
