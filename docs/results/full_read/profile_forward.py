"""Where one scoring pass's time goes: the packaged model's forward through the scoring layers
(0-18) over one pass of the default size, split by operator, and the CPU attention kernel beside
a query-blocked attention built from matrix products (the same result; is it faster?).

    python docs/results/full_read/profile_forward.py --threads 2 --json docs/results/full_read/profile_forward.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from infiniretri_integrations.core.models import default_model


def timed(fn: Callable[[], object], repeats: int = 3) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def blocked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block: int) -> torch.Tensor:
    """Causal attention by query blocks of ``block`` rows: matrix products in the input dtype,
    softmax in float32. ``q, k, v``: ``[batch, heads, length, head_dim]``."""
    length = q.shape[2]
    out = torch.empty_like(q)
    scale = q.shape[-1] ** -0.5
    for start in range(0, length, block):
        end = min(length, start + block)
        scores = torch.matmul(q[:, :, start:end], k[:, :, :end].transpose(-1, -2)).float().mul_(scale)
        scores[..., start:end].masked_fill_(
            torch.ones(end - start, end - start, dtype=torch.bool).triu(1), float("-inf")
        )
        out[:, :, start:end] = torch.matmul(torch.softmax(scores, dim=-1).to(q.dtype), v[:, :, :end])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--length",
        type=int,
        default=4600,
        help="pass length in tokens (default: a 4,096-token chunk and its working set)",
    )
    parser.add_argument("--layers", type=int, default=19, help="layers read (default: up to the scoring layer 18)")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], help="weights dtype (default: the engine's choice)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lm = default_model(dtype=args.dtype)
    inner = lm.model.model
    inner.layers = inner.layers[: args.layers]
    ids = torch.randint(100, lm.tokenizer.vocab_size - 100, (1, args.length))
    result: dict[str, object] = {
        "machine": platform.processor() or platform.machine(),
        "dtype": str(lm.model.dtype),
        "threads": args.threads,
        "length": args.length,
        "layers": args.layers,
    }
    with torch.inference_mode():
        result["forward_s"] = timed(lambda: inner(input_ids=ids))
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            inner(input_ids=ids)
        totals = {e.key: e.self_cpu_time_total for e in prof.key_averages()}
        whole = sum(totals.values())
        shares = {key: value / whole for key, value in sorted(totals.items(), key=lambda kv: -kv[1])[:6]}
        result["self_time_share"] = shares
        config = lm.model.config
        heads, head_dim = config.num_attention_heads, config.hidden_size // config.num_attention_heads
        q, k, v = (torch.randn(1, heads, args.length, head_dim, dtype=lm.model.dtype) for _ in range(3))
        reference = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        kernels = {
            "sdpa_causal": timed(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True)),
            "sdpa_full": timed(lambda: F.scaled_dot_product_attention(q, k, v)),
        }
        for block in (256, 512):
            kernels[f"blocked_{block}"] = timed(lambda block=block: blocked_attention(q, k, v, block))
            difference = (blocked_attention(q, k, v, block).float() - reference.float()).abs().max().item()
            result[f"blocked_{block}_max_abs_difference"] = difference
        result["attention_layer_s"] = kernels
        causal_flops = 2 * 2 * heads * head_dim * args.length * args.length / 2
        result["sdpa_causal_gflops_per_s"] = causal_flops / kernels["sdpa_causal"] / 1e9
        a, b = (
            torch.randn(args.length, config.hidden_size, dtype=lm.model.dtype),
            torch.randn(config.hidden_size, config.intermediate_size, dtype=lm.model.dtype),
        )
        result["matmul_gflops_per_s"] = (
            2 * args.length * config.hidden_size * config.intermediate_size / timed(lambda: a @ b) / 1e9
        )
    for key, value in result.items():
        print(f"{key}: {value}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
