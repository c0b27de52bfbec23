"""Soak check: many mixed calls on one engine from several threads, with RSS sampled.

The calls mix what a long-running service does (issue #14): sync ``engine.retrieve``, async
``ainvoke`` through the LangChain retriever, async calls given up early
(``asyncio.wait_for`` with a tiny timeout: the chunk loop must stop) and answer streams closed
after their first pieces (the generation must stop). Every call runs on a pool of ``threads``
threads; async calls each run in their own event loop (``asyncio.run``), as a script would.
Retrievals of the same question over the same document must keep the same sentences however they
ran (a difference counts as a ``ResultMismatch`` error). Before the measured calls one call of
each kind per document warms the engine up on the same threads (first-use allocations are not a
leak); the resident set size
(``VmRSS`` from ``/proc/self/status``, else ``resource.getrusage``) is read before and after and
sampled every 50 ms in between. At the end the model lock must be free and no generation thread
left.

Usage::

    python -m infiniretri_integrations.evaluation.soak [--model PATH] [--calls 200] [--threads 4] [--json OUT]

Example:
    >>> report = SoakReport(calls=2, errors={}, cancellations=1, rss_start_mb=100.0, rss_end_mb=101.5,
    ...                     rss_peak_mb=120.0, growth_mb=1.5, seconds=3.0)
    >>> report.ok
    True
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from infiniretri_integrations.core.engine import InfiniRetriEngine

KINDS: tuple[str, ...] = ("retrieve", "ainvoke", "cancel", "stream")
"""The call kinds: sync retrieve, async LangChain ``ainvoke``, async call cancelled by a tiny
``wait_for`` timeout, answer stream closed after its first pieces."""
WEIGHTS: tuple[float, ...] = (0.35, 0.25, 0.2, 0.2)
TIMEOUTS = (0.001, 0.05)
"""Range of the ``wait_for`` timeouts of ``cancel`` calls (seconds)."""
SAMPLE_SECONDS = 0.05
GENERATION_THREAD = "infiniretri-generate"

_WORDS = [
    "river",
    "market",
    "signal",
    "harbor",
    "lantern",
    "orchard",
    "ledger",
    "canvas",
    "meadow",
    "engine",
    "copper",
    "velvet",
    "compass",
    "quarry",
    "thistle",
    "beacon",
    "saddle",
    "ember",
    "granite",
    "harvest",
    "willow",
    "anchor",
    "parcel",
    "cellar",
    "falcon",
    "mirror",
    "timber",
    "pepper",
    "glacier",
    "bramble",
]
_NAMES = ("Ada", "Bruno", "Clara", "Dmitri", "Elena", "Farid", "Greta", "Hiro")


# ------------------------------------------------------------------ inputs
def soak_documents(seed: int = 0, sizes: Sequence[int] = (30, 80, 160)) -> list[tuple[str, list[str]]]:
    """Synthetic documents of ``sizes`` filler sentences, each with four facts, and their
    questions (deterministic for ``seed``; the default sizes are about 450, 1,050 and 2,150
    tokens of SmolLM2's tokenizer).

    Example:
        >>> docs = soak_documents(0, sizes=(10,))
        >>> len(docs), len(docs[0][1])
        (1, 4)
    """
    rng = random.Random(seed)
    documents = []
    for size in sizes:
        sentences = [
            " ".join(rng.choice(_WORDS) for _ in range(rng.randint(6, 14))).capitalize() + "." for _ in range(size)
        ]
        questions = []
        for name in rng.sample(_NAMES, 4):
            code = rng.randint(1000, 9999)
            sentences.insert(rng.randrange(len(sentences) + 1), f"The locker code of {name} is {code}.")
            questions.append(f"What is the locker code of {name}?")
        documents.append((" ".join(sentences), questions))
    return documents


# ------------------------------------------------------------------ memory
def rss_mb() -> tuple[float, str]:
    """The process's resident set size in MB and where it was read (``/proc/self/status``, or
    ``getrusage``: the peak so far, where ``/proc`` is missing)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024, "/proc/self/status"
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB on Linux, bytes on macOS
    return (peak / 1024 / 1024 if sys.platform == "darwin" else peak / 1024), "getrusage"


class _Sampler:
    """Samples the RSS every ``SAMPLE_SECONDS`` in a thread; ``peak`` is the highest seen."""

    def __init__(self) -> None:
        self.peak = rss_mb()[0]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-rss", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self.peak = max(self.peak, rss_mb()[0])

    def __enter__(self) -> _Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb()[0])


# ------------------------------------------------------------------ report
@dataclass
class SoakReport:
    """What a soak run saw: calls made, errors by exception type, calls cancelled by their
    timeout, RSS (MB) at the start (after the warm-up calls), end and peak, growth (end - start),
    seconds of the measured calls."""

    calls: int
    errors: dict[str, int]
    cancellations: int
    rss_start_mb: float
    rss_end_mb: float
    rss_peak_mb: float
    growth_mb: float
    seconds: float
    kinds: dict[str, int] = field(default_factory=dict)
    threads: int = 0
    seed: int = 0
    model: str = ""
    lock_free: bool = True
    generation_threads_left: int = 0
    rss_source: str = "/proc/self/status"
    rss_trace_mb: list[float] = field(default_factory=list)
    """RSS after every tenth of the calls (does it level off?)."""
    warm_up_calls: int = 0
    error_examples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No error, the model lock free and no generation thread left."""
        return not self.errors and self.lock_free and self.generation_threads_left == 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        errors = ", ".join(f"{name} x{count}" for name, count in sorted(self.errors.items())) or "none"
        kinds = ", ".join(f"{kind} {count}" for kind, count in self.kinds.items())
        return "\n".join(
            [
                f"soak: {self.calls} calls ({kinds}) on {self.threads} threads, model {self.model}, "
                f"{self.seconds:.1f} s",
                f"errors: {errors}; cancelled by their timeout: {self.cancellations}",
                f"RSS ({self.rss_source}): start {self.rss_start_mb:.1f} MB, end {self.rss_end_mb:.1f} MB, "
                f"peak {self.rss_peak_mb:.1f} MB, growth {self.growth_mb:+.1f} MB "
                f"(after {self.warm_up_calls} warm-up calls; every tenth: {self.rss_trace_mb})",
                f"model lock free at the end: {self.lock_free}; "
                f"generation threads left: {self.generation_threads_left}",
            ]
        )


# ------------------------------------------------------------------ the run
class _Soak:
    def __init__(self, engine: InfiniRetriEngine, documents: list[tuple[str, list[str]]], max_new_tokens: int):
        self.engine = engine
        self.documents = documents
        self.max_new_tokens = max_new_tokens
        self.retrievers = _retrievers(engine, [text for text, _ in documents])
        self.reference: dict[tuple[int, int], list[tuple[int, int]]] = {}
        self.guard = threading.Lock()
        self.errors: Counter[str] = Counter()
        self.examples: list[str] = []
        self.cancellations = 0

    def call(self, kind: str, doc: int, question: int, timeout: float) -> None:
        try:
            getattr(self, f"_{kind}")(doc, question, timeout)
        except Exception as error:  # counted, the soak goes on
            with self.guard:
                self.errors[type(error).__name__] += 1
                if len(self.examples) < 5:
                    self.examples.append(f"{kind}: {type(error).__name__}: {error}")

    def _check(self, doc: int, question: int, spans: list[tuple[int, int]]) -> None:
        with self.guard:
            first = self.reference.setdefault((doc, question), spans)
        if spans != first:
            msg = f"document {doc} question {question}: kept {spans[:3]}... then {first[:3]}..."
            raise ResultMismatch(msg)

    def _retrieve(self, doc: int, question: int, timeout: float) -> None:
        from infiniretri_integrations.core.outputs import sentence_span

        text, questions = self.documents[doc]
        result = self.engine.retrieve(text, questions[question])
        self._check(doc, question, [sentence_span(s)[1:] for s in result.sentences if s.text.strip()])

    async def _aretrieve(self, doc: int, question: int) -> list[tuple[int, int]]:
        retriever = self.retrievers[doc]
        text, questions = self.documents[doc]
        if retriever is None:  # no LangChain: the engine through the same cancellable bridge
            from infiniretri_integrations.core.concurrency import run_cancellable
            from infiniretri_integrations.core.outputs import sentence_span

            result = await run_cancellable(self.engine.retrieve, text, questions[question])
            return [sentence_span(s)[1:] for s in result.sentences if s.text.strip()]
        docs = await retriever.ainvoke(questions[question])
        return [(d.metadata["chunk_start_index"], d.metadata["chunk_end_index"]) for d in docs]

    def _ainvoke(self, doc: int, question: int, timeout: float) -> None:
        self._check(doc, question, asyncio.run(self._aretrieve(doc, question)))

    def _cancel(self, doc: int, question: int, timeout: float) -> None:
        async def given_up() -> bool:
            try:
                await asyncio.wait_for(self._aretrieve(doc, question), timeout)
            except TimeoutError:
                return True
            return False

        if asyncio.run(given_up()):
            with self.guard:
                self.cancellations += 1

    def _stream(self, doc: int, question: int, timeout: float) -> None:
        text, questions = self.documents[doc]
        with self.engine.stream_answer(text, questions[question], max_new_tokens=self.max_new_tokens) as stream:
            for index, _ in enumerate(stream):
                if index == 1:
                    break


class ResultMismatch(AssertionError):
    """The same question over the same document kept different sentences in two calls."""


def _retrievers(engine: InfiniRetriEngine, texts: list[str]) -> list[Any]:
    try:
        from langchain_core.documents import Document

        from infiniretri_integrations.langchain import InfiniRetriRetriever
    except ImportError:  # the langchain extra is not installed
        return [None for _ in texts]
    return [InfiniRetriRetriever(docs=[Document(text)], engine=engine, k=None) for text in texts]


def _generation_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == GENERATION_THREAD and t.is_alive())


def _lock_free(engine: InfiniRetriEngine) -> bool:
    lock = engine.local_model.lock
    if not lock.acquire(timeout=5):
        return False
    lock.release()
    return True


def run_soak(
    engine: InfiniRetriEngine,
    calls: int = 200,
    threads: int = 4,
    seed: int = 0,
    *,
    documents: list[tuple[str, list[str]]] | None = None,
    max_new_tokens: int = 16,
    progress: Callable[[int, int], None] | None = None,
) -> SoakReport:
    """``calls`` mixed calls (:data:`KINDS`, drawn with :data:`WEIGHTS` from ``seed``) on
    ``engine`` from ``threads`` threads; see the module docstring.

    Args:
        engine: the engine under test (its model is loaded by the warm-up).
        calls, threads, seed: how many calls, on how many threads, drawn from which seed.
        documents: ``(text, questions)`` pairs; default :func:`soak_documents` of ``seed``.
        max_new_tokens: answer length of the streamed answers.
        progress: called with ``(done, calls)`` after each call.
    """
    if not isinstance(calls, int) or isinstance(calls, bool) or calls < 1:
        msg = f"calls must be a positive integer, got {calls!r}"
        raise ValueError(msg)
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        msg = f"threads must be a positive integer, got {threads!r}"
        raise ValueError(msg)
    soak = _Soak(engine, documents or soak_documents(seed), max_new_tokens)
    rng = random.Random(seed)
    plan = [
        (
            rng.choices(KINDS, WEIGHTS)[0],
            doc := rng.randrange(len(soak.documents)),
            rng.randrange(len(soak.documents[doc][1])),
            rng.uniform(*TIMEOUTS),
        )
        for _ in range(calls)
    ]
    warm_up = [(kind, doc, 0, TIMEOUTS[1]) for doc in range(len(soak.documents)) for kind in KINDS]
    done = 0
    done_guard = threading.Lock()
    trace: list[float] = []
    every = max(1, calls // 10)

    def one(step: tuple[str, int, int, float]) -> None:
        nonlocal done
        soak.call(*step)
        with done_guard:
            done += 1
            if done % every == 0:
                trace.append(round(rss_mb()[0], 1))
            if progress is not None:
                progress(done, calls)

    with ThreadPoolExecutor(threads, thread_name_prefix="soak") as pool:
        # warm-up on the same threads, not counted: first-use allocations (each document's sizes,
        # each thread's allocator arena) are no leak
        list(pool.map(lambda step: soak.call(*step), warm_up))
        soak.errors.clear()
        soak.examples.clear()
        soak.cancellations = 0
        gc.collect()
        start, source = rss_mb()
        started = time.perf_counter()
        with _Sampler() as sampler:
            list(pool.map(one, plan))
        seconds = time.perf_counter() - started
    deadline = time.monotonic() + 5
    while _generation_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    gc.collect()
    end, _ = rss_mb()
    return SoakReport(
        calls=calls,
        errors=dict(soak.errors),
        cancellations=soak.cancellations,
        rss_start_mb=round(start, 1),
        rss_end_mb=round(end, 1),
        rss_peak_mb=round(max(sampler.peak, end), 1),
        growth_mb=round(end - start, 1),
        seconds=round(seconds, 1),
        kinds=dict(Counter(kind for kind, *_ in plan)),
        threads=threads,
        seed=seed,
        model=engine.local_model.name,
        lock_free=_lock_free(engine),
        generation_threads_left=_generation_threads(),
        rss_source=source,
        rss_trace_mb=trace,
        warm_up_calls=len(warm_up),
        error_examples=list(soak.examples),
    )


# ------------------------------------------------------------------ command line
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m infiniretri_integrations.evaluation.soak``: run, print the report, exit 1 on errors."""
    parser = argparse.ArgumentParser(
        prog="python -m infiniretri_integrations.evaluation.soak",
        description="Soak check: mixed sync/async/cancelled/streamed calls on one engine, RSS sampled.",
    )
    parser.add_argument("--model", metavar="PATH", help="model folder or .gguf (default: the packaged model)")
    parser.add_argument("--calls", type=int, default=200, help="measured calls (default 200)")
    parser.add_argument("--threads", type=int, default=4, help="threads making the calls (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="draws the calls and the documents (default 0)")
    parser.add_argument("--chunk-size", type=int, default=1024, help="engine chunk size (default 1024)")
    parser.add_argument(
        "--torch-threads", type=int, default=1, help="torch intra-op threads (default 1: steady on a shared CPU)"
    )
    parser.add_argument("--json", metavar="OUT", help="also write the report as JSON here")
    args = parser.parse_args(argv)
    import torch

    from infiniretri_integrations.core.engine import InfiniRetriEngine
    from infiniretri_integrations.core.models import default_model, load_model
    from infiniretri_integrations.core.storage import write_atomic

    torch.set_num_threads(args.torch_threads)
    lm = default_model() if args.model is None else load_model(args.model)
    engine = InfiniRetriEngine(lm, chunk_size=args.chunk_size, show_progress=False)

    def progress(done: int, total: int) -> None:
        if done % 20 == 0 or done == total:
            print(f"  {done}/{total} calls", file=sys.stderr, flush=True)

    report = run_soak(engine, args.calls, args.threads, args.seed, progress=progress)
    print(report.summary())
    if args.json:
        payload = {
            **report.to_dict(),
            "command": " ".join(["python -m infiniretri_integrations.evaluation.soak", *(argv or sys.argv[1:])]),
            "chunk_size": args.chunk_size,
            "torch_threads": args.torch_threads,
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
        }
        write_atomic(Path(args.json), json.dumps(payload, indent=2) + "\n")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
