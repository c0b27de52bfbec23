"""LangChain adapter (placeholder, filled below)."""
