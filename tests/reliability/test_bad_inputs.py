"""Issue #14 item 9 (core part): bad inputs get an error that names the value and what was expected."""

from __future__ import annotations

import pytest

from infiniretri_integrations import InfiniRetriEngine, SourceDocument


@pytest.mark.parametrize(
    ("documents", "match"),
    [
        (None, r"documents must be a text, a SourceDocument, a mapping or an iterable of them, got None"),
        (42, r"documents must be .* got 42"),
        (
            [{"text": "Some text.", "metadata": "x"}],
            r"document 0 'metadata' must be a mapping \(e.g. a dict\), got str: 'x'",
        ),
    ],
)
def test_bad_documents_are_named(tiny_llama, documents, match):
    with pytest.raises(TypeError, match=match):
        InfiniRetriEngine(tiny_llama).retrieve(documents, "What?")


@pytest.mark.parametrize("model", [123, 1.5, b"path", ["a"]])
def test_a_model_that_is_no_model_is_named(model):
    with pytest.raises(TypeError, match=r"model must be a LocalModel, a transformers causal LM .* got "):
        InfiniRetriEngine(model)


def test_source_document_validates_its_fields():
    with pytest.raises(TypeError, match=r"SourceDocument.metadata must be a mapping \(e.g. a dict\), got str: 'x'"):
        SourceDocument("text", metadata="x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"SourceDocument.text must be a str, got NoneType"):
        SourceDocument(None)  # type: ignore[arg-type]
