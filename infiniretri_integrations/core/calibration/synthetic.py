"""The calibration task: random (seeded) facts planted in filler text, with distractors.

Each case is ``context_tokens`` tokens of the standard library's documentation strings with one
fact about a made-up name at ``depth_percent`` and a few facts of the same form about other
made-up names elsewhere; its question asks about the first name, so a layer must find the right
fact among similar ones. Nothing is downloaded, and a seed gives the same cases every time.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from infiniretri_integrations.core.calibration.haystack import plant_needle, stdlib_docstrings

DEFAULT_LENGTHS = (1024, 2048, 4096)
DEFAULT_DEPTHS = (10.0, 50.0, 90.0)
DEFAULT_NEEDLES = 2
DEFAULT_DISTRACTORS = 2

_SYLLABLES = (
    "ba",
    "ko",
    "ri",
    "du",
    "mel",
    "sa",
    "ti",
    "vo",
    "zan",
    "pe",
    "lu",
    "gor",
    "ni",
    "fa",
    "qui",
    "dre",
    "mo",
    "sul",
)
_OBJECTS = (
    "blue teapot",
    "garden shed",
    "left boot",
    "piano bench",
    "flour tin",
    "old atlas",
    "clock case",
    "bird house",
)
_COLOURS = ("crimson", "olive", "amber", "violet", "teal", "maroon", "ivory", "cobalt")
_TEMPLATES = (
    ("The secret code of the {word} project is {number}.", "What is the secret code of the {word} project?"),
    ("{Word} keeps the spare key hidden inside the {thing}.", "Where does {Word} keep the spare key?"),
    ("The favourite colour of the painter {Word} is {colour}.", "What is the favourite colour of the painter {Word}?"),
    ("The train to {Word} leaves from platform {small}.", "From which platform does the train to {Word} leave?"),
)


@dataclass(frozen=True)
class SyntheticCase:
    """Filler text with facts planted in it; the question asks about ``needle``."""

    text: str
    needle: str
    question: str
    distractors: tuple[str, ...]
    context_tokens: int
    depth_percent: float


def _pseudo_word(rng: random.Random) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 3)))


def _fact(rng: random.Random, template: tuple[str, str], word: str) -> tuple[str, str]:
    """``(statement, question)`` of ``template`` about ``word``, with random values."""
    values = {
        "word": word,
        "Word": word.capitalize(),
        "number": str(rng.randint(100_000, 999_999)),
        "thing": rng.choice(_OBJECTS),
        "colour": rng.choice(_COLOURS),
        "small": str(rng.randint(2, 19)),
    }
    return template[0].format(**values), template[1].format(**values)


def _distinct_words(rng: random.Random, count: int) -> list[str]:
    words: list[str] = []
    while len(words) < count:
        word = _pseudo_word(rng)
        if word not in words:
            words.append(word)
    return words


def _filler_with_distractors(
    rng: random.Random, paragraphs: Sequence[str], length: int, distractors: Sequence[str]
) -> str:
    """Enough filler paragraphs for ``length`` tokens (a rotated window starting at a random
    paragraph), with the distractor facts inserted at random paragraph boundaries that fall
    inside the first ``length`` tokens."""
    start = rng.randrange(len(paragraphs))
    pieces: list[str] = []
    chars = 0
    while chars < 8 * length + 2000 and len(pieces) < len(paragraphs):
        pieces.append(paragraphs[(start + len(pieces)) % len(paragraphs)])
        chars += len(pieces[-1]) + 2
    reach, chars = 1, 0
    while reach < len(pieces) and chars < 3 * length:
        chars += len(pieces[reach - 1]) + 2
        reach += 1
    for other in distractors:
        pieces.insert(rng.randrange(1, max(2, reach)), other)
    return "\n\n".join(pieces)


def synthetic_cases(
    tokenizer: Any,
    *,
    seed: int = 0,
    lengths: Sequence[int] = DEFAULT_LENGTHS,
    depths: Sequence[float] = DEFAULT_DEPTHS,
    needles: int = DEFAULT_NEEDLES,
    distractors: int = DEFAULT_DISTRACTORS,
    filler: str | None = None,
) -> list[SyntheticCase]:
    """``len(lengths) * len(depths) * needles`` cases, deterministic for a seed.

    Each case is ``context_tokens`` tokens of filler (a seeded window of ``filler``, by default
    the standard library's docstrings) with the asked fact at ``depth_percent`` and
    ``distractors`` facts of the same form about other (random) names elsewhere.
    """
    rng = random.Random(seed)
    haystack = filler if filler is not None else stdlib_docstrings()
    paragraphs = [p for p in haystack.split("\n\n") if p.strip()]
    cases: list[SyntheticCase] = []
    for length in lengths:
        for depth in depths:
            for _ in range(needles):
                template = rng.choice(_TEMPLATES)
                words = _distinct_words(rng, 1 + distractors)
                needle, question = _fact(rng, template, words[0])
                others = tuple(_fact(rng, template, word)[0] for word in words[1:])
                body = _filler_with_distractors(rng, paragraphs, int(length), others)
                planted = plant_needle(body, tokenizer, int(length), float(depth), f"\n{needle}\n", question)
                if not all(other in planted.text for other in others):
                    # dense text (code, tables) holds fewer characters per token than the placement
                    # assumed and a distractor fell past the cut: put the distractors first instead
                    for other in others:
                        body = body.replace(f"\n\n{other}", "", 1)
                    body = "\n\n".join([*others, body])
                    planted = plant_needle(body, tokenizer, int(length), float(depth), f"\n{needle}\n", question)
                cases.append(
                    SyntheticCase(
                        text=planted.text,
                        needle=needle,
                        question=question,
                        distractors=others,
                        context_tokens=int(length),
                        depth_percent=float(depth),
                    )
                )
    return cases
