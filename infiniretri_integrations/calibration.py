"""Command line of the scoring-layer calibration (the calibration itself is
:mod:`infiniretri_integrations.core.calibration`).

Prints the per-layer table and writes ``calibration-<model>.json`` (a calibration file in the
store's format: copy it to ``core/calibration/bundled/<fingerprint>.json`` to ship it),
``.md`` and a ``.png`` plot::

    python -m infiniretri_integrations.calibration --model default --out calibration-out
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from infiniretri_integrations.cli_common import (
    Parser,
    add_model_arguments,
    add_version_argument,
    model_from_args,
    run_command,
)
from infiniretri_integrations.core.calibration import (
    DEFAULT_DEPTHS,
    DEFAULT_DISTRACTORS,
    DEFAULT_LENGTHS,
    DEFAULT_NEEDLES,
    calibrate,
    clear_calibration_cache,
    store_calibration,
)
from infiniretri_integrations.core.calibration.store import encode
from infiniretri_integrations.core.storage import write_atomic

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="python -m infiniretri_integrations.calibration", description="Calibrate the scoring layer of a model."
    )
    add_model_arguments(parser)
    add_version_argument(parser)
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line (exit code: 0 done, 1 failure, 2 usage error, 130 interrupted)."""
    return run_command(_parser(), argv, _run)


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    lm = model_from_args(args)
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
    stem = "calibration-" + "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in lm.name.lower())
    write_atomic(out / f"{stem}.json", encode(report))
    write_atomic(out / f"{stem}.md", report.to_markdown() + "\n")
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
