"""Speed benchmark, measured side by side in one run on the same model and inputs:

1. this engine's full read (default settings with ``candidate_tokens=None``: every token is read,
   also beyond the cascade's threshold; benchmark_cascade measures the cascade), and optionally
   with the last layer as the reference uses;
2. the authors' package ``infini-retri==0.0.3`` (when installed) with the same model, chunk size,
   top-K and phrase window;
3. the floor: a plain forward pass (SDPA kernel, no LM head) over exactly the token sequences the
   engine fed, through the scoring layer.

Prints seconds per 1K input tokens, ratios (engine / floor, reference / engine), peak memory,
whether the needle was found, and how far the kept sentences agree with the reference's and
(every other engine row: other dtypes, int8, variants) with the default engine's. Writes JSON for
comparisons across runs.

Example::

    python -m infiniretri_integrations.benchmark --essays ../shared/data/niah_paulgraham/PaulGrahamEssays \\
        --lengths 8000 32000 128000 --reference-lengths 8000 --json results/bench.json
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from infiniretri_integrations.cli_common import (
    DTYPES,
    Parser,
    add_model_arguments,
    add_version_argument,
    model_from_args,
    run_command,
)
from infiniretri_integrations.core.attention import forward_through
from infiniretri_integrations.core.config import RetrievalConfig
from infiniretri_integrations.core.engine import InfiniRetriEngine
from infiniretri_integrations.core.models import LocalModel, quantize_int8
from infiniretri_integrations.core.scoring_setup import trim_to_scoring
from infiniretri_integrations.core.segmentation import sentence_spans
from infiniretri_integrations.core.storage import write_atomic
from infiniretri_integrations.core.types import ForwardPass
from infiniretri_integrations.evaluation.niah import build_case, load_haystack, needle_retrieved
from infiniretri_integrations.evaluation.reference import (
    INSTALL_HINT,
    eager_attention,
    reference_generate,
    reference_kept_text,
    reference_pipeline,
)


@dataclass
class Measurement:
    method: str
    context_tokens: int
    depth_percent: float
    seconds: float
    input_tokens: int
    peak_memory_mb: float | None
    needle_found: bool | None
    kept_tokens: int | None = None
    forward_passes: int | None = None
    agreement_with_reference: float | None = None
    resident_before_mb: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds_per_1k(self) -> float:
        return 1000.0 * self.seconds / max(1, self.input_tokens)


# ---------------------------------------------------------------- memory
def _reset_peak_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    with suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _proc_status_mb(field: str) -> float | None:
    """A ``VmRSS``/``VmHWM`` line of /proc/self/status in MB (Linux), else ``None``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _resident_memory_mb(device: torch.device) -> float | None:
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device) / 2**20
    return _proc_status_mb("VmRSS")


def _peak_memory_mb(device: torch.device) -> float | None:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return _proc_status_mb("VmHWM")


@contextmanager
def _measured(device: torch.device) -> Iterator[dict[str, float | None]]:
    record: dict[str, float | None] = {}
    _reset_peak_memory(device)
    record["resident_before_mb"] = _resident_memory_mb(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    yield record
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    record["seconds"] = time.perf_counter() - started
    record["peak_memory_mb"] = _peak_memory_mb(device)


# ---------------------------------------------------------------- methods
def run_engine(
    lm: LocalModel, text: str, question: str, config: RetrievalConfig, needle: str
) -> tuple[Measurement, list[ForwardPass], list[str]]:
    """The engine, recording (through its ``on_forward`` hook) exactly what it fed to the model."""
    passes: list[ForwardPass] = []
    engine = InfiniRetriEngine(lm, config=config, show_progress=False)
    with _measured(lm.device) as record:
        result = engine.retrieve([text], question, on_forward=passes.append)
    kept = [s.text for s in result.sentences]
    measurement = Measurement(
        method="engine",
        context_tokens=0,
        depth_percent=0,
        seconds=float(record["seconds"] or 0.0),
        input_tokens=result.stats.input_tokens,
        peak_memory_mb=record["peak_memory_mb"],
        resident_before_mb=record["resident_before_mb"],
        needle_found=needle_retrieved(kept, needle),
        kept_tokens=result.stats.kept_tokens,
        forward_passes=result.stats.chunks,
        extra={"scoring_layers": list(result.stats.scoring_layers), "dtype": str(lm.dtype)},
    )
    return measurement, passes, kept


def run_floor(lm: LocalModel, passes: Sequence[ForwardPass], input_tokens: int) -> Measurement:
    """The same forward passes without the scoring: each recorded sequence through
    :func:`~infiniretri_integrations.core.attention.forward_through` up to its deepest scoring
    layer (the model's SDPA attention, no LM head): the least work any implementation must do."""
    with _measured(lm.device) as record:
        for forward in passes:
            forward_through(lm, forward.input_ids, max(forward.layers))
    return Measurement(
        method="floor",
        context_tokens=0,
        depth_percent=0,
        seconds=float(record["seconds"] or 0.0),
        input_tokens=input_tokens,
        peak_memory_mb=record["peak_memory_mb"],
        resident_before_mb=record["resident_before_mb"],
        needle_found=None,
        forward_passes=len(passes),
        extra={"through_layer": max((max(p.layers) for p in passes), default=None)},
    )


def run_reference(
    lm: LocalModel, text: str, question: str, config: RetrievalConfig, needle: str, input_tokens: int
) -> tuple[Measurement, str]:
    """The authors' package on the same model (it requires eager attention and output_attentions)."""
    with eager_attention(lm.model):
        pipeline = reference_pipeline(lm, config)
        with _measured(lm.device) as record:
            _, info = reference_generate(pipeline, lm, text, question, config.prompt_template, gen_name="bench")
    kept_text = reference_kept_text(str(info["input_text"]), config.prompt_template)
    measurement = Measurement(
        method="reference",
        context_tokens=0,
        depth_percent=0,
        seconds=float(record["seconds"] or 0.0),
        input_tokens=input_tokens,
        peak_memory_mb=record["peak_memory_mb"],
        resident_before_mb=record["resident_before_mb"],
        needle_found=" ".join(needle.split()) in " ".join(kept_text.split()),
        kept_tokens=len(lm.tokenizer(kept_text, add_special_tokens=False)["input_ids"]),
        extra={"note": "includes one generated token"},
    )
    return measurement, kept_text


def kept_jaccard(ours: Sequence[str], theirs: Sequence[str]) -> float:
    """Jaccard overlap of two engines' kept sentences (1.0: the same selection).

    Example:
        >>> kept_jaccard(["a", "b", "c"], ["b", "c", "d"])
        0.5
    """
    mine, other = set(ours), set(theirs)
    if not mine and not other:
        return 1.0
    return len(mine & other) / len(mine | other)


def sentence_agreement(ours: Sequence[str], reference_text: str) -> float:
    """Jaccard overlap of the two kept sets, as normalised sentences."""

    def normalise(text: str) -> str:
        return re.sub(r"\s+", " ", text).strip()

    theirs = {normalise(reference_text[s:e]) for s, e in sentence_spans(reference_text)} - {""}
    mine = set()
    for text in ours:
        mine |= {normalise(text[s:e]) for s, e in sentence_spans(text)} - {""}
    if not mine and not theirs:
        return 1.0
    return len(mine & theirs) / len(mine | theirs)


# ---------------------------------------------------------------- driver
def run(
    models: Sequence[tuple[str, LocalModel]],
    haystack: str,
    lengths: Sequence[int],
    reference_lengths: Sequence[int],
    depths: Sequence[float],
    config: RetrievalConfig,
    compare_last_layer: bool,
    log: Callable[[str], None] = print,
    extra_variants: Sequence[tuple[str, dict[str, Any]]] = (),
) -> list[Measurement]:
    """Measure every method on every case. ``models`` are (label, model) pairs holding the same
    weights in different dtypes; the first is the primary one (methods without a ``[label]``).
    ``extra_variants`` are (name, options) engine variants measured beside the defaults as
    ``engine[name]`` (primary model only), each with its own floor."""
    results: list[Measurement] = []
    for _, lm in models:
        warm = build_case(haystack, lm.tokenizer, 2000, 50)
        run_engine(lm, warm.text, warm.question, config, warm.needle)  # warm-up (kernels, allocator)
    primary_lm = models[0][1]
    primary_kept: list[str] = []
    for length in lengths:
        for depth in depths:
            case = build_case(haystack, primary_lm.tokenizer, length, depth)
            for index, (label, lm) in enumerate(models):
                suffix = "" if index == 0 else f"[{label}]"
                variants: list[tuple[str, RetrievalConfig]] = [(f"engine{suffix}", config)]
                if compare_last_layer and length in reference_lengths and index == 0:
                    variants.append(("engine_last_layer", config.replace(scoring_layer=-1)))
                if index == 0:
                    variants += [(f"engine[{name}]", config.replace(**options)) for name, options in extra_variants]
                engines: dict[str, tuple[Measurement, list[str]]] = {}
                for name, variant_config in variants:
                    measurement, passes, kept = run_engine(lm, case.text, case.question, variant_config, case.needle)
                    measurement.method, measurement.context_tokens, measurement.depth_percent = name, length, depth
                    if index == 0 and name == "engine":
                        primary_kept = kept
                    else:
                        measurement.extra["kept_jaccard_with_engine"] = kept_jaccard(kept, primary_kept)
                    engines[name] = (measurement, kept)
                    results.append(measurement)
                    log(_line(measurement))
                    floor = run_floor(lm, passes, measurement.input_tokens)
                    floor.method, floor.context_tokens, floor.depth_percent = f"floor[{name}]", length, depth
                    floor.extra["engine_over_floor"] = measurement.seconds / floor.seconds
                    results.append(floor)
                    log(_line(floor) + f"   engine/floor = {measurement.seconds / floor.seconds:.2f}x")
                if length not in reference_lengths:
                    continue
                input_tokens = engines[f"engine{suffix}"][0].input_tokens
                reference, kept_text = run_reference(lm, case.text, case.question, config, case.needle, input_tokens)
                reference.method = f"reference{suffix}"
                reference.context_tokens, reference.depth_percent = length, depth
                reference.extra["dtype"] = str(lm.dtype)
                for name, (engine_result, kept) in engines.items():
                    agreement = sentence_agreement(kept, kept_text)
                    reference.extra[f"agreement[{name}]"] = agreement
                    reference.extra[f"reference_over[{name}]"] = reference.seconds / engine_result.seconds
                    engine_result.agreement_with_reference = agreement
                if index > 0:
                    primary = next(
                        r
                        for r in results
                        if r.method == "engine" and r.context_tokens == length and r.depth_percent == depth
                    )
                    reference.extra["reference_over[engine]"] = reference.seconds / primary.seconds
                results.append(reference)
                ratios = ", ".join(f"{k} = {v:.2f}" for k, v in reference.extra.items() if isinstance(v, float))
                log(_line(reference) + "   " + ratios)
    return results


def _line(m: Measurement) -> str:
    memory = f"{m.peak_memory_mb:6.0f} MB" if m.peak_memory_mb is not None else "   n/a"
    if m.peak_memory_mb is not None and m.resident_before_mb is not None:
        memory += f" (+{m.peak_memory_mb - m.resident_before_mb:.0f})"
    found = {True: "found", False: "LOST", None: "-"}[m.needle_found]
    return (
        f"{m.method:22s} {m.context_tokens:>8d} tok  depth {m.depth_percent:5.1f}%  {m.seconds:8.1f} s  "
        f"{m.seconds_per_1k:6.3f} s/1K  peak {memory}  needle {found:5s}"
    )


def summary_table(results: Sequence[Measurement]) -> str:
    """Markdown table: per length, mean s/1K per method and the ratios."""
    rows = [
        "| tokens | method | s per 1K tokens | peak MB (growth during the run) | needle found | ratio |",
        "|---:|---|---:|---:|---:|---|",
    ]
    for length in sorted({r.context_tokens for r in results}):
        at = [r for r in results if r.context_tokens == length]
        for method in dict.fromkeys(r.method for r in at):
            group = [r for r in at if r.method == method]
            per_1k = sum(r.seconds_per_1k for r in group) / len(group)
            peak = max((r.peak_memory_mb or 0.0) for r in group)
            growth = max((r.peak_memory_mb or 0.0) - (r.resident_before_mb or 0.0) for r in group)
            found = [r.needle_found for r in group if r.needle_found is not None]
            ratio = ""
            if method.startswith("floor["):
                ratio = "engine/floor {:.2f}x".format(sum(r.extra["engine_over_floor"] for r in group) / len(group))
            elif method.startswith("reference"):
                notes = []
                for key in sorted({k for r in group for k in r.extra if k.startswith("reference_over[")}):
                    mean = sum(r.extra[key] for r in group) / len(group)
                    notes.append(f"{mean:.1f}x the time of {key[len('reference_over[') : -1]}")
                for key in sorted({k for r in group for k in r.extra if k.startswith("agreement[")}):
                    mean = sum(r.extra[key] for r in group) / len(group)
                    notes.append(f"kept-sentence Jaccard with {key[len('agreement[') : -1]} {mean:.2f}")
                ratio = "; ".join(notes)
            overlaps = [r.extra["kept_jaccard_with_engine"] for r in group if "kept_jaccard_with_engine" in r.extra]
            if overlaps:
                ratio = f"kept-sentence Jaccard with engine {sum(overlaps) / len(overlaps):.2f}"
            found_text = f"{sum(found)}/{len(found)}" if found else "-"
            rows.append(f"| {length} | {method} | {per_1k:.3f} | {peak:.0f} (+{growth:.0f}) | {found_text} | {ratio} |")
    return "\n".join(rows)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """The benchmark's options."""
    add_version_argument(parser)
    add_model_arguments(parser)
    parser.add_argument(
        "--essays", type=Path, default=None, help="Paul Graham essays folder (default: stdlib docstrings)"
    )
    parser.add_argument("--lengths", type=int, nargs="+", default=[8000, 32000, 128000])
    parser.add_argument(
        "--reference-lengths", type=int, nargs="*", default=[8000], help="lengths at which to run infini-retri (slow)"
    )
    parser.add_argument("--depths", type=float, nargs="+", default=[50.0])
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument(
        "--no-last-layer", action="store_true", help="skip the engine run with the reference's last layer"
    )
    parser.add_argument(
        "--compare-dtypes",
        nargs="*",
        choices=DTYPES,
        default=[],
        help="also measure the engine, floor and reference with the same weights in these dtypes (e.g. float32)",
    )
    parser.add_argument(
        "--compare-int8",
        action="store_true",
        help="also measure the engine and floor with int8 dynamic quantisation of the linear layers "
        "(CPU only; core.models.quantize_int8) as engine[int8]",
    )
    parser.add_argument(
        "--compare-trimmed",
        action="store_true",
        help="also measure the engine and floor on the model trimmed to its scoring layers "
        "(core.scoring_setup.trim_to_scoring; the same scores, fewer weights) as engine[trimmed]",
    )
    parser.add_argument("--json", type=Path, default=None, help="write all measurements here")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="an engine variant measured beside the defaults as engine[NAME], e.g. c1024='{\"chunk_size\": 1024}' (repeatable)",
    )
    parser.add_argument(
        "--throughput",
        type=int,
        nargs="+",
        default=None,
        metavar="N",
        help="instead: throughput of N questions over one corpus (e.g. 1 4 16), one call per question vs retrieve_many",
    )
    parser.add_argument(
        "--soak",
        type=int,
        default=None,
        metavar="CALLS",
        help="instead: soak check, CALLS mixed calls (threads, async, cancellations, streams) with RSS sampled",
    )
    parser.add_argument(
        "--throughput-tokens", type=int, default=32000, help="corpus length for --throughput (default 32000)"
    )
    parser.add_argument(
        "--modes",
        default="sequential,batched,shared",
        help="--throughput modes, comma-separated (sequential, batched, shared)",
    )


def run_benchmark(args: argparse.Namespace) -> int:
    """Measure, print the summary table and write ``--json``."""
    if args.threads:
        torch.set_num_threads(args.threads)
    reference_lengths = list(args.reference_lengths)
    if reference_lengths:
        try:
            import infini_retri  # noqa: F401
        except ImportError:
            print(f"infini-retri is not installed ({INSTALL_HINT}); skipping it")
            reference_lengths = []
    lm = model_from_args(args)
    models = [(str(lm.dtype).removeprefix("torch."), lm)]
    models += [
        (name, model_from_args(argparse.Namespace(**{**vars(args), "dtype": name}))) for name in args.compare_dtypes
    ]
    if args.compare_int8:
        models.append(("int8", quantize_int8(lm)))
    if args.compare_trimmed:
        models.append(("trimmed", trim_to_scoring(lm)))
    haystack = load_haystack(args.essays)
    if args.throughput:
        return _run_throughput(args, lm, haystack)
    if args.soak:
        return _run_soak(args, lm)
    machine = f"{platform.machine()} {platform.processor() or ''} {torch.get_num_threads()} threads, {lm.device}, {lm.dtype}".strip()
    print(f"# {lm.name} on {machine}; torch {torch.__version__}; {time.strftime('%Y-%m-%d')}")
    results = run(
        models,
        haystack,
        args.lengths,
        reference_lengths,
        args.depths,
        RetrievalConfig(candidate_tokens=None),  # the full read, beside its forward-pass floor
        not args.no_last_layer,
        extra_variants=[_parse_variant(v) for v in args.variant],
    )
    weights = {label: round(weights_mb(model), 1) for label, model in models}
    table = summary_table(results) + "\n\nweights held (MB): " + ", ".join(f"{k} {v}" for k, v in weights.items())
    print("\n" + table)
    _write_json(
        args.json,
        lm,
        machine,
        {"results": [asdict(r) | {"seconds_per_1k": r.seconds_per_1k} for r in results], "weights_mb": weights},
        table,
    )
    return 0


def weights_mb(lm: LocalModel) -> float:
    """MB of the parameters and buffers ``lm`` holds, with the int8-packed weights and biases of
    dynamically quantised linear layers (:func:`quantize_int8`), which are neither."""
    tensors = [*lm.model.parameters(), *lm.model.buffers()]
    for module in lm.model.modules():
        packed = getattr(module, "_packed_params", None)
        if packed is not None and callable(getattr(module, "weight", None)):
            tensors += [t for t in (module.weight(), module.bias()) if t is not None]  # type: ignore[operator]
    return sum(t.numel() * t.element_size() for t in tensors) / 2**20


def _write_json(path: Path | None, lm: LocalModel, machine: str, measured: dict[str, Any], table: str) -> None:
    """The run's measurements with the model, machine, date and torch version (nothing without ``path``)."""
    if path is None:
        return
    payload = {
        "model": lm.name,
        "machine": machine,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "torch": torch.__version__,
        **measured,
        "table": table,
    }
    write_atomic(path, json.dumps(payload, indent=1))
    print(f"\nwrote {path}")


def _parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    name, _, options = text.partition("=")
    try:
        parsed = json.loads(options)
    except json.JSONDecodeError:
        parsed = None
    if not name or not isinstance(parsed, dict):
        msg = f"--variant must be NAME='{{\"option\": value}}', got {text!r}"
        raise ValueError(msg)
    RetrievalConfig(**parsed)  # validates the options now, not after the first measurement
    return name, parsed


def _run_soak(args: argparse.Namespace, lm: LocalModel) -> int:
    from infiniretri_integrations.evaluation.soak import run_soak

    engine = InfiniRetriEngine(lm, chunk_size=1024, show_progress=False)
    report = run_soak(engine, calls=args.soak)
    print(report.summary())
    if args.json:
        write_atomic(args.json, json.dumps(report.to_dict(), indent=1))
        print(f"\nwrote {args.json}")
    return 0 if report.ok else 1


def _run_throughput(args: argparse.Namespace, lm: LocalModel, haystack: str) -> int:
    from infiniretri_integrations.evaluation.throughput import run_throughput, throughput_table

    corpus = build_case(haystack, lm.tokenizer, args.throughput_tokens, 50).text
    machine = f"{platform.machine()} {torch.get_num_threads()} threads, {lm.device}, {lm.dtype}"
    print(f"# throughput: {lm.name} on {machine}; torch {torch.__version__}; {time.strftime('%Y-%m-%d')}")
    engine = InfiniRetriEngine(lm, show_progress=False)
    rows = run_throughput(engine, corpus, sorted(set(args.throughput)), [m for m in args.modes.split(",") if m])
    table = throughput_table(rows)
    print("\n" + table)
    measured = [asdict(r) | {"question_tokens_per_second": r.question_tokens_per_second} for r in rows]
    _write_json(args.json, lm, machine, {"throughput": measured}, table)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = Parser(prog="python -m infiniretri_integrations.benchmark", description=__doc__.splitlines()[0])
    configure_parser(parser)
    return run_command(parser, argv, run_benchmark)


if __name__ == "__main__":
    sys.exit(main())
