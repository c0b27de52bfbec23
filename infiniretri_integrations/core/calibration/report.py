"""The result of a calibration: per-layer (and per-head) quality and the proposed configuration.

This is also the one calibration file format: :mod:`~infiniretri_integrations.core.calibration.store`
writes a report as JSON (with a checksum) to the user cache, and the calibrations shipped with the
package are reports in the same format.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from infiniretri_integrations.core.config import HeadSelection, normalize_heads

SCHEMA_VERSION = 1
"""Version of the calibration file format (a cached file of another version is rebuilt)."""


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
    notes: dict[str, Any] = field(default_factory=dict)
    """Provenance shipped with a bundled calibration (how it was made and validated)."""

    @property
    def scoring_layer(self) -> int | tuple[int, ...]:
        layer = self.proposal["scoring_layer"]
        return tuple(layer) if isinstance(layer, list) else int(layer)

    @property
    def scoring_heads(self) -> HeadSelection:
        return normalize_heads(self.proposal.get("scoring_heads"))

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
