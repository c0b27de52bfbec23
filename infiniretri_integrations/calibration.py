"""Per-model calibration of the scoring layer (and optionally heads) on a synthetic retrieval task.

Which layer's attention carries the retrieval signal depends on the model; an earlier layer is
also cheaper, because the scoring forward stops there. :func:`calibrate` measures, for every
layer at once, how well that layer's question-row attention (scored exactly as the engine scores
it: question weights, phrase window, ``top_k``) finds a planted fact in filler text, and proposes
a configuration. Nothing is downloaded: the filler is the standard library's documentation
strings and the facts are random (seeded) pseudo-words and numbers.

Each case costs ONE forward pass that captures the question rows of every layer (and, when asked,
every head) and stops after the last layer, so a full calibration of a 30-layer model costs as
many forwards as there are cases.

``scoring_layer="auto"`` in :class:`~infiniretri_integrations.core.config.RetrievalConfig` calls
:func:`calibrated_layers`: the calibration shipped with the package for the model, else the one
cached in the user cache directory, else a fresh calibration (stored for next time).

Command line (prints the table, writes JSON, markdown and a PNG plot)::

    python -m infiniretri_integrations.calibration --model default --out calibration-out
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import os
import random
import sys
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from infiniretri_integrations.core.attention import capture_question_rows
from infiniretri_integrations.core.calibration_store import BUNDLED_DIR, user_calibration_dir
from infiniretri_integrations.core.config import RetrievalConfig
from infiniretri_integrations.core.prompting import build_layout
from infiniretri_integrations.core.scoring import context_scores, question_weights
from infiniretri_integrations.core.segmentation import segment_documents

if TYPE_CHECKING:
    from infiniretri_integrations.core.models import LocalModel

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
"""Version of the cached calibration file format (a different version is rebuilt)."""

DEFAULT_LENGTHS = (1024, 2048, 4096)
DEFAULT_DEPTHS = (10.0, 50.0, 90.0)
DEFAULT_NEEDLES = 2
DEFAULT_DISTRACTORS = 2
TOLERANCE = 0.01
"""Mean reciprocal ranks closer than this count as equal (then the cheaper configuration wins)."""


# ---------------------------------------------------------------------------------------------
# Synthetic cases

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


@functools.lru_cache(maxsize=1)
def _stdlib_filler() -> str:
    from infiniretri_integrations.evaluation.niah import stdlib_docstrings

    return stdlib_docstrings()


def _pseudo_word(rng: random.Random) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 3)))


def _fact(rng: random.Random, template: tuple[str, str], word: str) -> tuple[str, str]:
    values = {
        "word": word,
        "Word": word.capitalize(),
        "number": str(rng.randint(100_000, 999_999)),
        "thing": rng.choice(_OBJECTS),
        "colour": rng.choice(_COLOURS),
        "small": str(rng.randint(2, 19)),
    }
    return template[0].format(**values), template[1].format(**values)


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

    Each case is ``context_tokens`` tokens of filler (a seeded window of the standard library's
    docstrings) with the asked fact at ``depth_percent`` and ``distractors`` facts of the same
    form about other (random) names elsewhere, so a layer must find the right one.
    """
    from infiniretri_integrations.evaluation.niah import build_case

    rng = random.Random(seed)
    haystack = filler if filler is not None else _stdlib_filler()
    paragraphs = [p for p in haystack.split("\n\n") if p.strip()]
    cases: list[SyntheticCase] = []
    for length in lengths:
        for depth in depths:
            for _ in range(needles):
                template = rng.choice(_TEMPLATES)
                words: list[str] = []
                while len(words) < 1 + distractors:
                    word = _pseudo_word(rng)
                    if word not in words:
                        words.append(word)
                needle, question = _fact(rng, template, words[0])
                others = tuple(_fact(rng, template, w)[0] for w in words[1:])
                start = rng.randrange(len(paragraphs))
                pieces: list[str] = []
                chars = 0
                while chars < 8 * length + 2000 and len(pieces) < len(paragraphs):  # enough filler, rotated
                    pieces.append(paragraphs[(start + len(pieces)) % len(paragraphs)])
                    chars += len(pieces[-1]) + 2
                # plant the distractors at random paragraph boundaries inside the context first
                reach, chars = 1, 0
                while reach < len(pieces) and chars < 3 * length:  # paragraphs inside the context
                    chars += len(pieces[reach - 1]) + 2
                    reach += 1
                for other in others:
                    pieces.insert(rng.randrange(1, max(2, reach)), other)
                body = "\n\n".join(pieces)
                case = build_case(body, tokenizer, int(length), float(depth), needle=f"\n{needle}\n", question=question)
                cases.append(
                    SyntheticCase(
                        text=case.text,
                        needle=needle,
                        question=question,
                        distractors=others,
                        context_tokens=int(length),
                        depth_percent=float(depth),
                    )
                )
    return cases


# ---------------------------------------------------------------------------------------------
# One forward pass, every layer's (and head's) question rows


def all_layer_rows(
    lm: LocalModel, input_ids: torch.Tensor, row_start: int, last_layer: int | None = None
) -> dict[int, torch.Tensor]:
    """Question-row attention of every layer up to ``last_layer`` (default: all), per head, in
    one forward pass: ``{layer: [heads, length - row_start, length]}`` (float32, on the CPU).

    Summing a layer's tensor over heads gives exactly what
    :func:`~infiniretri_integrations.core.attention.score_rows` returns for that layer.
    """
    last = lm.num_layers - 1 if last_layer is None else last_layer
    rows = capture_question_rows(lm, input_ids, row_start, range(last + 1), keep_heads=True)
    return {layer: tensor.cpu() for layer, tensor in rows.items()}


# ---------------------------------------------------------------------------------------------
# Metrics


@dataclass
class _Prepared:
    ids: torch.Tensor
    context_start: int
    context_end: int
    question_start: int
    token_sentence: torch.Tensor
    needle_sentences: tuple[int, ...]
    sentence_count: int


def _prepare(lm: LocalModel, case: SyntheticCase, config: RetrievalConfig) -> _Prepared:
    (sentences,) = segment_documents([case.text], lm.tokenizer, config.max_sentence_tokens)
    target = " ".join(case.needle.split())
    needle_sentences = tuple(
        i
        for i, s in enumerate(sentences)
        if target in " ".join(s.text.split()) or (" ".join(s.text.split()) in target and len(s.text.strip()) > 10)
    )
    if not needle_sentences:
        msg = f"needle sentence not found after segmentation: {case.needle!r}"
        raise RuntimeError(msg)
    layout = build_layout(lm.tokenizer, config, case.question)
    context_ids = [t for s in sentences for t in s.token_ids]
    ids, context_start, context_end, question_start = layout.assemble(context_ids)
    token_sentence = torch.repeat_interleave(
        torch.arange(len(sentences)), torch.tensor([len(s.token_ids) for s in sentences])
    )
    return _Prepared(
        torch.tensor([ids]),
        context_start,
        context_end,
        question_start,
        token_sentence,
        needle_sentences,
        len(sentences),
    )


def _case_metrics(rows: torch.Tensor, prep: _Prepared, config: RetrievalConfig) -> tuple[float, float, float]:
    """``(hit, reciprocal_rank, token_rank_fraction)`` for question rows ``[rows, length]``.

    hit: the needle sentence holds one of the ``top_k`` best context tokens (it would be kept);
    reciprocal rank: of the needle sentence among all sentences by their best token score;
    token rank fraction: rank of the needle's best token / number of context tokens (lower is better).
    """
    weights = question_weights(rows, prep.question_start) if config.question_weights else None
    scores = context_scores(rows, prep.context_start, prep.context_end, weights, config.phrase_window)
    count = prep.sentence_count
    best = torch.full((count,), float("-inf")).scatter_reduce(0, prep.token_sentence, scores, reduce="amax")
    needle_best = max(float(best[i]) for i in prep.needle_sentences)
    sentence_rank = 1 + int((best > needle_best).sum())
    token_rank = 1 + int((scores > needle_best).sum())
    hit = token_rank <= config.top_k
    return float(hit), 1.0 / sentence_rank, token_rank / scores.numel()


@dataclass
class Candidate:
    """Quality of one scoring configuration over the calibration cases."""

    layers: tuple[int, ...]
    heads: tuple[int, ...] | None
    hit_rate: float
    mrr: float
    token_rank: float
    cost: float

    @property
    def label(self) -> str:
        text = "+".join(str(layer) for layer in self.layers)
        return text if self.heads is None else f"{text} heads {','.join(map(str, self.heads))}"

    def key(self) -> tuple[float, float]:
        return (self.hit_rate, self.mrr)


def _summarise(values: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    n = len(values)
    return (
        round(sum(v[0] for v in values) / n, 4),
        round(sum(v[1] for v in values) / n, 4),
        round(sum(v[2] for v in values) / n, 4),
    )


def _better(a: Candidate, b: Candidate) -> bool:
    """``a`` strictly better than ``b`` (more hits, or as many and a clearly higher MRR)."""
    if a.hit_rate != b.hit_rate:
        return a.hit_rate > b.hit_rate
    return a.mrr > b.mrr + TOLERANCE


def _pick(candidates: Sequence[Candidate]) -> Candidate:
    """The best by (hit rate, MRR); among those within the tolerance, the cheapest (earliest)."""
    top = max(candidates, key=lambda c: c.key())
    close = [c for c in candidates if c.hit_rate == top.hit_rate and c.mrr >= top.mrr - TOLERANCE]
    return min(close, key=lambda c: (c.cost, len(c.layers), -c.mrr))


# ---------------------------------------------------------------------------------------------
# The report


@dataclass
class CalibrationReport:
    """Per-layer (and per-head) quality on the synthetic task and the proposed configuration."""

    model: str
    fingerprint: str
    num_layers: int
    num_heads: int
    settings: dict[str, Any]
    layers: list[dict[str, Any]]
    combinations: list[dict[str, Any]]
    proposal: dict[str, Any]
    heads: list[list[dict[str, Any]]] | None = None
    seconds: float = 0.0
    schema_version: int = SCHEMA_VERSION

    @property
    def scoring_layer(self) -> int | tuple[int, ...]:
        layer = self.proposal["scoring_layer"]
        return tuple(layer) if isinstance(layer, list) else int(layer)

    @property
    def scoring_heads(self) -> tuple[int, ...] | None:
        heads = self.proposal.get("scoring_heads")
        return None if heads is None else tuple(heads)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["scoring_layer"] = self.proposal["scoring_layer"]
        data["scoring_heads"] = self.proposal.get("scoring_heads")
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CalibrationReport:
        names = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in names})

    def to_markdown(self) -> str:
        """The per-layer table (and the proposal); per-head best heads when measured."""
        lines = [
            f"Calibration of **{self.model}** ({self.num_layers} layers, {self.num_heads} heads), "
            f"{self.settings['cases']} synthetic cases (lengths {self.settings['lengths']}, depths {self.settings['depths']}, seed {self.settings['seed']}), {self.seconds:.0f} s.",
            "",
            "| layer | kept (hit rate) | MRR | needle token rank (fraction) | cost |",
            "|---|---|---|---|---|",
        ]
        chosen = self.proposal["scoring_layer"]
        for row in self.layers:
            mark = " **<-**" if chosen == row["layer"] else ""
            lines.append(
                f"| {row['layer']}{mark} | {row['hit_rate']:.2f} | {row['mrr']:.3f} | {row['token_rank']:.3f} | {row['cost']:.2f} |"
            )
        if self.combinations:
            lines += [
                "",
                "Combinations (rows summed over the layers, as the engine does):",
                "",
                "| layers | hit rate | MRR | cost |",
                "|---|---|---|---|",
            ]
            for row in self.combinations:
                lines.append(f"| {row['label']} | {row['hit_rate']:.2f} | {row['mrr']:.3f} | {row['cost']:.2f} |")
        if self.heads:
            lines += [
                "",
                "Best single heads (per layer, by MRR):",
                "",
                "| layer | head | hit rate | MRR |",
                "|---|---|---|---|",
            ]
            for layer_heads in self.heads:
                top = max(layer_heads, key=lambda r: (r["hit_rate"], r["mrr"]))
                lines.append(f"| {top['layer']} | {top['head']} | {top['hit_rate']:.2f} | {top['mrr']:.3f} |")
        p = self.proposal
        lines += [
            "",
            f"**Proposed:** scoring_layer={p['scoring_layer']}, scoring_heads={p.get('scoring_heads')} "
            f"(hit rate {p['hit_rate']:.2f}, MRR {p['mrr']:.3f}, cost {p['cost']:.2f} of a full forward).",
        ]
        return "\n".join(lines)

    def plot(self, path: str | Path) -> Path:
        """Per-layer hit rate and MRR (and a layer x head MRR heat map when heads were measured)."""
        try:
            import matplotlib
        except ImportError as error:  # pragma: no cover - depends on the environment
            msg = "plotting needs matplotlib: pip install matplotlib (or the package's 'eval' extra)"
            raise ImportError(msg) from error
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator

        panels = 2 if self.heads else 1
        fig, axes = plt.subplots(1, panels, figsize=(7.5 * panels, 4), squeeze=False)
        ax = axes[0][0]
        xs = [r["layer"] for r in self.layers]
        ax.plot(xs, [r["hit_rate"] for r in self.layers], "o-", label="kept (hit rate, top_k)")
        ax.plot(xs, [r["mrr"] for r in self.layers], "s-", label="MRR of the needle sentence")
        ax.plot(xs, [1 - r["token_rank"] for r in self.layers], "^:", label="1 - needle token rank fraction", alpha=0.6)
        chosen = self.proposal["scoring_layer"]
        for layer in chosen if isinstance(chosen, list) else [chosen]:
            ax.axvline(layer, color="green", linestyle="--", alpha=0.6)
        ax.set_xlabel("layer")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(0, 1.05)
        ax.set_title(f"{self.model}: retrieval quality per layer (proposed: {chosen})", fontsize=10)
        ax.legend(fontsize=8, loc="lower right")
        ax.grid(alpha=0.3)
        if self.heads:
            hx = axes[0][1]
            matrix = [[r["mrr"] for r in layer_heads] for layer_heads in self.heads]
            image = hx.imshow(list(map(list, zip(*matrix, strict=True))), aspect="auto", origin="lower", cmap="viridis")
            hx.set_xlabel("layer")
            hx.set_ylabel("head")
            hx.set_yticks(range(self.num_heads))
            hx.xaxis.set_major_locator(MaxNLocator(integer=True))
            hx.set_title("MRR per head", fontsize=10)
            fig.colorbar(image, ax=hx)
        fig.tight_layout()
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(target, dpi=110)
        plt.close(fig)
        return target


# ---------------------------------------------------------------------------------------------
# Calibration


def calibrate(
    lm: LocalModel,
    *,
    seed: int = 0,
    lengths: Sequence[int] = DEFAULT_LENGTHS,
    depths: Sequence[float] = DEFAULT_DEPTHS,
    needles: int = DEFAULT_NEEDLES,
    distractors: int = DEFAULT_DISTRACTORS,
    heads: bool = False,
    combine: int = 3,
    config: RetrievalConfig | None = None,
    progress: bool | None = True,
) -> CalibrationReport:
    """Measure retrieval quality per layer (optionally per head) and propose a configuration.

    Args:
        lm: the model.
        seed: makes the cases (and so the result) deterministic.
        lengths, depths, needles: the case grid (``needles`` cases per length and depth, each with
            a different random fact); ``distractors`` similar facts about other names per case.
        heads: also measure every head on its own (reported; with a single proposed layer, the
            best few heads of that layer are proposed when strictly better than all heads).
        combine: also try the sum of the best 2..``combine`` layers; kept only if strictly better.
        config: the method's settings used to score (default: :class:`RetrievalConfig()`).
        progress: show a progress bar (``None``: only on a terminal).

    Returns:
        The report; ``report.scoring_layer`` / ``report.scoring_heads`` is the proposal.

    Example:
        >>> from infiniretri_integrations import default_model  # doctest: +SKIP
        >>> report = calibrate(default_model())  # doctest: +SKIP
        >>> print(report.to_markdown())  # doctest: +SKIP
    """
    cfg = config or RetrievalConfig()
    started = time.perf_counter()
    window = lm.context_window
    usable = [n for n in lengths if n + 200 < window]
    if not usable:
        msg = f"no calibration length fits the model window ({window} tokens): {list(lengths)}"
        raise ValueError(msg)
    cases = synthetic_cases(
        lm.tokenizer, seed=seed, lengths=usable, depths=depths, needles=needles, distractors=distractors
    )
    num_layers, num_heads = lm.num_layers, lm.num_heads
    per_layer: list[list[tuple[float, float, float]]] = [[] for _ in range(num_layers)]
    per_head: list[list[list[tuple[float, float, float]]]] = [[[] for _ in range(num_heads)] for _ in range(num_layers)]
    stored: list[tuple[_Prepared, dict[int, torch.Tensor]]] = []
    bar = _progress(len(cases), progress, f"Calibrating {lm.name}")
    try:
        for case in cases:
            prep = _prepare(lm, case, cfg)
            rows = all_layer_rows(lm, prep.ids, prep.question_start)
            summed = {layer: tensor.sum(dim=0) for layer, tensor in rows.items()}
            for layer in range(num_layers):
                per_layer[layer].append(_case_metrics(summed[layer], prep, cfg))
                if heads:
                    for head in range(num_heads):
                        per_head[layer][head].append(_case_metrics(rows[layer][head], prep, cfg))
            stored.append((prep, summed))
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()

    def cost(layers: Sequence[int]) -> float:
        return round((max(layers) + 1) / num_layers, 4)

    singles = []
    layer_rows = []
    for layer in range(num_layers):
        hit, mrr, rank = _summarise(per_layer[layer])
        singles.append(Candidate((layer,), None, hit, mrr, rank, cost([layer])))
        layer_rows.append({"layer": layer, "hit_rate": hit, "mrr": mrr, "token_rank": rank, "cost": cost([layer])})
    best = _pick(singles)

    combos: list[Candidate] = []
    if combine >= 2:
        ranked = sorted(singles, key=lambda c: (-c.hit_rate, -c.mrr, c.cost))[:combine]
        top_layers = [c.layers[0] for c in ranked]
        sets = [tuple(sorted(top_layers[:n])) for n in range(2, len(top_layers) + 1)]
        sets += [
            tuple(sorted((a, b)))
            for i, a in enumerate(top_layers)
            for b in top_layers[i + 1 :]
            if tuple(sorted((a, b))) not in sets
        ]
        for layer_set in sets:
            values = []
            for prep, summed in stored:
                total = summed[layer_set[0]]
                for layer in layer_set[1:]:
                    total = total + summed[layer]
                values.append(_case_metrics(total, prep, cfg))
            hit, mrr, rank = _summarise(values)
            combos.append(Candidate(layer_set, None, hit, mrr, rank, cost(layer_set)))
    chosen = best
    for combo in combos:
        if _better(combo, chosen):
            chosen = combo

    head_rows = None
    if heads:
        head_rows = []
        for layer in range(num_layers):
            row = []
            for head in range(num_heads):
                hit, mrr, rank = _summarise(per_head[layer][head])
                row.append({"layer": layer, "head": head, "hit_rate": hit, "mrr": mrr, "token_rank": rank})
            head_rows.append(row)
        if len(chosen.layers) == 1:
            chosen = _head_subsets(lm, chosen, head_rows[chosen.layers[0]], cases, cfg, combos) or chosen
    del stored

    proposal = {
        "scoring_layer": chosen.layers[0] if len(chosen.layers) == 1 else list(chosen.layers),
        "scoring_heads": None if chosen.heads is None else list(chosen.heads),
        "hit_rate": chosen.hit_rate,
        "mrr": chosen.mrr,
        "token_rank": chosen.token_rank,
        "cost": chosen.cost,
        "best_single_layer": best.layers[0],
    }
    settings = {
        "seed": seed,
        "lengths": list(usable),
        "depths": [float(d) for d in depths],
        "needles": needles,
        "distractors": distractors,
        "heads": heads,
        "combine": combine,
        "cases": len(cases),
        "top_k": cfg.top_k,
        "phrase_window": cfg.phrase_window,
        "question_weights": cfg.question_weights,
    }
    report = CalibrationReport(
        model=lm.name,
        fingerprint=lm.fingerprint(),
        num_layers=num_layers,
        num_heads=num_heads,
        settings=settings,
        layers=layer_rows,
        combinations=[
            {
                "label": c.label,
                "layers": list(c.layers),
                "hit_rate": c.hit_rate,
                "mrr": c.mrr,
                "token_rank": c.token_rank,
                "cost": c.cost,
            }
            for c in combos
        ],
        proposal=proposal,
        heads=head_rows,
        seconds=round(time.perf_counter() - started, 1),
    )
    logger.info(
        "Calibrated %s in %.0fs: scoring_layer=%s scoring_heads=%s",
        lm.name,
        report.seconds,
        proposal["scoring_layer"],
        proposal["scoring_heads"],
    )
    return report


def _head_subsets(
    lm: LocalModel,
    layer: Candidate,
    head_rows: list[dict[str, Any]],
    cases: list[SyntheticCase],
    cfg: RetrievalConfig,
    out: list[Candidate],
) -> Candidate | None:
    """Sums of the best 1..4 heads of ``layer`` (a second pass up to that layer only); the best
    one if strictly better than all heads."""
    order = [r["head"] for r in sorted(head_rows, key=lambda r: (-r["hit_rate"], -r["mrr"], r["head"]))]
    subsets = [tuple(sorted(order[:n])) for n in range(1, min(4, len(order) - 1) + 1)]
    values: dict[tuple[int, ...], list[tuple[float, float, float]]] = {s: [] for s in subsets}
    index = layer.layers[0]
    for case in cases:
        prep = _prepare(lm, case, cfg)
        rows = all_layer_rows(lm, prep.ids, prep.question_start, last_layer=index)[index]
        for subset in subsets:
            values[subset].append(_case_metrics(rows[list(subset)].sum(dim=0), prep, cfg))
    best: Candidate | None = None
    for subset in subsets:
        hit, mrr, rank = _summarise(values[subset])
        candidate = Candidate(layer.layers, subset, hit, mrr, rank, layer.cost)
        out.append(candidate)
        if _better(candidate, best or layer):
            best = candidate
    return best


def _progress(total: int, show: bool | None, desc: str) -> Any:
    if show is None:
        show = sys.stderr.isatty()
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="case")


# ---------------------------------------------------------------------------------------------
# The cache behind scoring_layer="auto"


def _checksum(payload: dict[str, Any]) -> str:
    body = {k: v for k, v in payload.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def cache_path(lm: LocalModel) -> Path:
    """Where the calibration of ``lm`` is cached (``<user cache>/calibrations/<fingerprint>.json``)."""
    return user_calibration_dir() / f"{lm.fingerprint()}.json"


def store_calibration(lm: LocalModel, report: CalibrationReport, path: str | Path | None = None) -> Path:
    """Write ``report`` atomically as the cached calibration of ``lm`` (with a checksum)."""
    target = Path(path) if path is not None else cache_path(lm)
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = report.to_dict()
    payload["checksum"] = _checksum(payload)
    staging = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    staging.write_text(json.dumps(payload, indent=1), encoding="utf-8")
    staging.replace(target)
    return target


def load_cached_calibration(lm: LocalModel, settings: dict[str, Any] | None = None) -> CalibrationReport | None:
    """The cached calibration of ``lm``, or ``None``. A file that is unreadable, fails its checksum,
    has another schema version, another fingerprint, other ``settings`` or an out-of-range layer
    is logged and deleted (so that it is rebuilt)."""
    path = cache_path(lm)
    if not path.is_file():
        return None
    problem = None
    report = None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            problem = "not a JSON object"
        elif data.get("schema_version") != SCHEMA_VERSION:
            problem = f"schema version {data.get('schema_version')!r}, expected {SCHEMA_VERSION}"
        elif data.get("checksum") != _checksum(data):
            problem = "checksum mismatch (file corrupt or edited)"
        elif data.get("fingerprint") != lm.fingerprint():
            problem = "made for another model"
        else:
            report = CalibrationReport.from_dict(data)
            layers = report.scoring_layer if isinstance(report.scoring_layer, tuple) else (report.scoring_layer,)
            if not all(0 <= layer < lm.num_layers for layer in layers):
                problem, report = f"layer {report.scoring_layer} out of range", None
            elif settings is not None and any(report.settings.get(k) != v for k, v in settings.items()):
                problem, report = "made with other calibration settings", None
    except (OSError, ValueError, TypeError, KeyError) as error:
        problem, report = f"unreadable ({error})", None
    if problem is not None:
        logger.warning("Discarding cached calibration %s: %s; it will be rebuilt", path, problem)
        with suppress(OSError):
            path.unlink()
        return None
    return report


def clear_calibration_cache(lm: LocalModel | None = None) -> int:
    """Delete the cached calibration of ``lm`` (``None``: of every model). Returns files removed.

    Bundled calibrations (shipped with the package) are not affected.
    """
    folder = user_calibration_dir()
    if not folder.is_dir():
        return 0
    paths = [cache_path(lm)] if lm is not None else list(folder.glob("*.json"))
    removed = 0
    for path in paths:
        if path.is_file():
            path.unlink()
            removed += 1
    return removed


def _bundled(lm: LocalModel) -> dict[str, Any] | None:
    fingerprint = lm.fingerprint()
    for path in sorted(BUNDLED_DIR.glob("*.json")) if BUNDLED_DIR.is_dir() else []:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("fingerprint") == fingerprint and "scoring_layer" in data:
            return data
    return None


def calibrated_config(
    lm: LocalModel, *, refresh: bool = False, progress: bool | None = True, **settings: Any
) -> tuple[int | tuple[int, ...], tuple[int, ...] | None]:
    """``(scoring_layer, scoring_heads)`` for ``lm``: the bundled calibration (validated on NIH),
    else the cached one, else a fresh :func:`calibrate` (stored in the user cache).

    Args:
        refresh: ignore the bundled and cached results and calibrate again.
        **settings: passed to :func:`calibrate` (a cached file made with other settings is rebuilt).
    """
    if not refresh and not settings:
        bundled = _bundled(lm)
        if bundled is not None:
            layer = bundled["scoring_layer"]
            heads = bundled.get("scoring_heads")
            return (tuple(layer) if isinstance(layer, list) else int(layer)), (None if heads is None else tuple(heads))
    expected = None
    if settings:
        expected = {
            k: (list(v) if isinstance(v, tuple) else v)
            for k, v in settings.items()
            if k in {"seed", "lengths", "depths", "needles", "distractors", "heads", "combine"}
        }
        if "depths" in expected:
            expected["depths"] = [float(d) for d in expected["depths"]]
    report = None if refresh else load_cached_calibration(lm, expected)
    if report is None:
        logger.warning("No calibration for %s yet: calibrating once (cached in %s)", lm.name, user_calibration_dir())
        report = calibrate(lm, progress=progress, **settings)
        store_calibration(lm, report)
    return report.scoring_layer, report.scoring_heads


def calibrated_layers(lm: LocalModel, **kwargs: Any) -> int | tuple[int, ...]:
    """The calibrated scoring layer(s) of ``lm`` (what ``scoring_layer="auto"`` uses); see
    :func:`calibrated_config`."""
    return calibrated_config(lm, **kwargs)[0]


# ---------------------------------------------------------------------------------------------
# Command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infiniretri_integrations.calibration", description="Calibrate the scoring layer of a model."
    )
    parser.add_argument(
        "--model",
        default="default",
        help="'default' (the packaged SmolLM2-135M-Instruct) or a model folder / .gguf file",
    )
    parser.add_argument("--out", default="calibration-out", help="folder for calibration-<model>.json/.md/.png")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lengths", type=int, nargs="+", default=list(DEFAULT_LENGTHS))
    parser.add_argument("--depths", type=float, nargs="+", default=list(DEFAULT_DEPTHS))
    parser.add_argument("--needles", type=int, default=DEFAULT_NEEDLES)
    parser.add_argument("--distractors", type=int, default=DEFAULT_DISTRACTORS)
    parser.add_argument("--heads", action="store_true", help="also measure every head")
    parser.add_argument(
        "--store", action="store_true", help="also store the result in the user cache (used by scoring_layer='auto')"
    )
    parser.add_argument(
        "--clear-cache", action="store_true", help="delete the cached calibration of the model and exit"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from infiniretri_integrations.core.models import default_model, load_model

    lm = default_model() if args.model == "default" else load_model(args.model)
    if args.clear_cache:
        print(f"removed {clear_calibration_cache(lm)} cached calibration file(s) for {lm.name}")
        return 0
    report = calibrate(
        lm,
        seed=args.seed,
        lengths=args.lengths,
        depths=args.depths,
        needles=args.needles,
        distractors=args.distractors,
        heads=args.heads,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "calibration-" + "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in lm.name.lower())
    (out / f"{stem}.json").write_text(json.dumps(report.to_dict(), indent=1), encoding="utf-8")
    (out / f"{stem}.md").write_text(report.to_markdown() + "\n", encoding="utf-8")
    try:
        report.plot(out / f"{stem}.png")
    except ImportError as error:
        print(f"(no plot: {error})", file=sys.stderr)
    if args.store:
        print(f"stored in {store_calibration(lm, report)}")
    print(report.to_markdown())
    print(f"\nwritten: {out / stem}.json, .md, .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
