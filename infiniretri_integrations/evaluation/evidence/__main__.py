"""``python -m infiniretri_integrations.evaluation.evidence``: the evidence benchmark's command line."""

from __future__ import annotations

import sys

from infiniretri_integrations.evaluation.evidence.cli import main

if __name__ == "__main__":
    sys.exit(main())
