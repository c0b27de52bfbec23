"""Real-model selection cases whose kept spans and scores are pinned (float32).

``python -m tests.regression.pin_cases --write`` records them in ``pinned_selection.json``; the test
``test_pinned_selection.py`` recomputes them and compares. The pins were written before the engine
was split into stages, so a restructure that changes what is kept, or a score, fails the test.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

PINS = Path(__file__).with_name("pinned_selection.json")

_TOWNS = ["Arden", "Belmoor", "Caskill", "Dunmere", "Eastwick", "Farrow", "Glenhollow", "Harwick"]
_TRADES = ["weaving", "glassmaking", "boat building", "cheese making", "printing", "clock repair"]
_THINGS = ["the bridge", "the library", "the mill", "the harbour wall", "the town hall", "the observatory"]


def report_text(seed: int = 7, paragraphs: int = 7) -> str:
    """A deterministic, plain-English text of about 650 SmolLM2 tokens: short paragraphs of facts
    about invented towns, with a heading line each (as the passages of the evidence data have)."""
    rng = random.Random(seed)
    out = []
    for p in range(paragraphs):
        town = _TOWNS[p % len(_TOWNS)]
        year = 1820 + 7 * p
        sentences = [
            f"{town} records, part {p + 1}",
            f"In {year} the people of {town} rebuilt {rng.choice(_THINGS)} after a winter flood.",
            f"Most families in {town} lived from {rng.choice(_TRADES)}, and the trade grew for a decade.",
            f"A visitor wrote that {town} had {rng.randint(3, 40)} inns and a market every {rng.choice(['Monday', 'Thursday', 'Saturday'])}.",
            f"The council of {town} met in a room above the bakery until {year + rng.randint(5, 30)}.",
        ]
        out.append(sentences[0] + "\n" + " ".join(sentences[1:]))
    out.insert(
        4, "Glenhollow notes\nThe vault under the Glenhollow chapel holds the key code 4172, written on a slate."
    )
    return "\n\n".join(out)


SECOND_TEXT = (
    "Travel diary\nMarco spent the whole summer photographing the Colosseum. He ate supplì every evening. "
    "His sister Lena stayed in Lisbon and learned to sail on the Tagus. In August she bought a small boat.\n\n"
    "Notes\nThe diary was found in a box of old maps. Nobody knows who kept the maps."
)

QUESTIONS = ("What is the key code in the vault?", "When did the people of Farrow rebuild something?")

_OFF = {"similarity": None, "probe": None}
"""The cases pinned before the similarity signal existed run without it (their pins are unchanged)."""

_NO_PROBE = {"probe": None}
"""The cases pinned before the attention probe existed run without it (their pins are unchanged)."""

CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "defaults": ("one", {"chunk_size": 200, **_OFF}),
    "top_k_rule": ("one", {"chunk_size": 200, "fusion": None, "tokens_per_pass": 48, **_OFF}),
    "budget_64": ("one", {"chunk_size": 200, "token_budget": 64, **_OFF}),
    "budget_capped_cache": ("one", {"chunk_size": 200, "token_budget": 48, "working_set_tokens": 120, **_OFF}),
    "fusion_in_every_pass": ("one", {"chunk_size": 200, "fusion_stage": "pass", "tokens_per_pass": 48, **_OFF}),
    "content_free": ("one", {"chunk_size": 200, "content_free": True, "fusion": None, "tokens_per_pass": 48, **_OFF}),
    "heads_pairs": (
        "one",
        {"chunk_size": 200, "scoring_heads": [[18, 7], [18, 6], [17, 3]], "tokens_per_pass": 32, **_OFF},
    ),
    "batched_budget_64": ("many", {"chunk_size": 200, "token_budget": 64, "batch_size": 2, **_OFF}),
    "shared_context_budget_64": ("shared", {"chunk_size": 200, "token_budget": 64, **_OFF}),
    "similarity_defaults": ("one", {"chunk_size": 200, **_NO_PROBE}),
    "similarity_budget_64": ("one", {"chunk_size": 200, "token_budget": 64, **_NO_PROBE}),
    "similarity_no_fusion": ("one", {"chunk_size": 200, "fusion": None, "token_budget": 64, **_NO_PROBE}),
    "similarity_embeddings": ("one", {"chunk_size": 200, "token_budget": 64, "similarity": "embeddings", **_NO_PROBE}),
    "similarity_every_pass": ("one", {"chunk_size": 200, "fusion_stage": "pass", "token_budget": 64, **_NO_PROBE}),
    "similarity_batched": ("many", {"chunk_size": 200, "token_budget": 64, "batch_size": 2, **_NO_PROBE}),
    "similarity_shared_context": ("shared", {"chunk_size": 200, "token_budget": 64, **_NO_PROBE}),
    "probe_defaults": ("one", {"chunk_size": 200}),
    "probe_budget_64": ("one", {"chunk_size": 200, "token_budget": 64}),
    "probe_alone": ("one", {"chunk_size": 200, "fusion": None, "similarity": None, "token_budget": 64}),
    "probe_batched": ("many", {"chunk_size": 200, "token_budget": 64, "batch_size": 2}),
}
"""Case name -> (how it runs, engine options): ``"one"`` is one ``retrieve`` of the first of
:data:`QUESTIONS`; ``"many"`` both questions in one batched ``retrieve_many`` (which equals one
``retrieve`` per question); ``"shared"`` both with ``share_context=True``."""


def documents() -> list[dict[str, Any]]:
    return [
        {"text": report_text(), "id": "report", "metadata": {"kind": "report"}},
        {"text": SECOND_TEXT, "id": "diary", "metadata": {"kind": "diary"}},
    ]


def _pins_of(result: Any) -> list[list[Any]]:
    return [[s.document_index, s.sentence_index, s.start, s.end, s.score, s.token_count] for s in result.sentences]


def compute(engine: Any) -> dict[str, Any]:
    """Every case's kept sentences, ``[document_index, sentence_index, start, end, score, tokens]``
    per question, keyed ``"case/question"``."""
    docs = documents()
    pins: dict[str, Any] = {}
    for name, (mode, options) in CASES.items():
        if mode == "one":
            results = [engine.retrieve(docs, QUESTIONS[0], **options)]
        else:
            results = engine.retrieve_many(docs, list(QUESTIONS), share_context=mode == "shared", **options)
        for result in results:
            pins[f"{name}/{result.question}"] = _pins_of(result)
    return pins


def float32_engine() -> Any:
    import torch

    from infiniretri_integrations import InfiniRetriEngine, default_model

    return InfiniRetriEngine(default_model(device="cpu", dtype=torch.float32), show_progress=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="record the pins (only before a deliberate change)")
    args = parser.parse_args()
    pins = compute(float32_engine())
    if args.write:
        PINS.write_text(json.dumps(pins, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {len(pins)} cases to {PINS}")
    else:
        print(json.dumps(pins, indent=1))


if __name__ == "__main__":
    main()
