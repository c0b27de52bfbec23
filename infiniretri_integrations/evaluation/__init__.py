"""Evaluation toolkit: needle-in-a-haystack cases, QA metrics and loaders, baselines."""
