"""Issue #13 on the LangChain side: ids that survive a vector store, offsets that survive a text
splitter, options that fail loudly, scores on a known scale, device/dtype, token counters, lazy
imports. Real langchain-core objects; the real packaged model where retrieval runs."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from typing import Any

import pytest

pytest.importorskip("langchain_core")

from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_text_splitters import RecursiveCharacterTextSplitter
from pydantic import ValidationError

from infiniretri_integrations import InfiniRetriEngine, RetrievalConfig
from infiniretri_integrations.core.config import option_names
from infiniretri_integrations.core.engine_policy import default_engine
from infiniretri_integrations.langchain import InfiniRetriCompressor, InfiniRetriQA, InfiniRetriRetriever

pytestmark = [pytest.mark.real_model, pytest.mark.usefixtures("one_torch_thread")]

QUESTION = "Where does Bob live?"
TEXTS = [
    "Alice lives in Paris. She likes tea. Her cat is called Tom.",
    "Bob lives in Rome. He drinks coffee. He works as a baker near the Colosseum.",
    "Carol lives in Berlin. She plays the violin. Her brother studies physics in Munich.",
    "Dave lives in Madrid. He runs a small bookshop. He walks in the Retiro park.",
]
DOCS = [Document(page_content=t, id=f"doc-{i}", metadata={"n": i}) for i, t in enumerate(TEXTS)]


@pytest.fixture(scope="module")
def engine(real_lm: Any) -> InfiniRetriEngine:
    return InfiniRetriEngine(real_lm, chunk_size=256, tokens_per_pass=48, max_new_tokens=16, show_progress=False)


# ------------------------------------------------------------------ item 3: ids
def test_sentence_documents_have_unique_deterministic_ids_that_a_vector_store_keeps(engine: InfiniRetriEngine) -> None:
    retriever = InfiniRetriRetriever.from_documents(DOCS, engine=engine, k=None)
    docs = retriever.invoke(QUESTION)
    assert len(docs) > len(DOCS), "needs several sentences per source to show the id clash"
    ids = [d.id for d in docs]
    assert len(set(ids)) == len(ids)
    assert [d.id for d in retriever.invoke(QUESTION)] == ids  # deterministic
    for doc in docs:
        source_id = doc.metadata["source_id"]
        assert source_id == DOCS[doc.metadata["source_index"]].id
        assert doc.id == f"{source_id}:{doc.metadata['chunk_start_index']}-{doc.metadata['chunk_end_index']}"
    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=16))
    store.add_documents(docs)
    assert len(store.store) == len(docs)  # before: one entry per source id survived


# ------------------------------------------------------------------ item 4: unknown options
def test_unknown_keyword_arguments_raise_naming_the_key_and_the_valid_ones() -> None:
    with pytest.raises(ValidationError, match=r"unknown option\(s\) \['topk'\].*'top_k'"):
        InfiniRetriRetriever.from_texts(TEXTS, topk=5)
    with pytest.raises(ValidationError, match=r"\['top_n'\].*'k'"):
        InfiniRetriCompressor(top_n=3)
    with pytest.raises(ValidationError, match=r"\['max_tokens'\].*'max_new_tokens'"):
        InfiniRetriQA(max_tokens=5)


def test_every_retrieval_config_field_is_an_option_of_every_adapter() -> None:
    from infiniretri_integrations.llama_index import InfiniRetriNodePostprocessor, InfiniRetriSynthesizer

    defaults = RetrievalConfig()
    for field in dataclasses.fields(RetrievalConfig):
        if field.name not in option_names():
            continue  # internal fields
        value = getattr(defaults, field.name)  # None included: a setting of its own, as on the engine
        for build in (
            lambda **kw: InfiniRetriRetriever(**kw),
            lambda **kw: InfiniRetriCompressor(**kw),
            lambda **kw: InfiniRetriQA(**kw),
        ):
            assert build(**{field.name: value}).retrieval_options()[field.name] == value, field.name
        assert InfiniRetriNodePostprocessor(**{field.name: value}).retrieval_options[field.name] == value
        InfiniRetriSynthesizer(**{field.name: value})


def test_none_is_a_setting_and_an_option_left_out_is_the_engines() -> None:
    from langchain_core.runnables import ConfigurableField

    from infiniretri_integrations.llama_index import InfiniRetriNodePostprocessor

    for build in (InfiniRetriRetriever, InfiniRetriCompressor, InfiniRetriQA):
        assert build().retrieval_options() == {}, build
        off = build(fusion=None, candidate_tokens=None).retrieval_options()
        assert off == {"fusion": None, "candidate_tokens": None}, build  # as the LlamaIndex adapters read it
        over_config = build(retrieval_config=RetrievalConfig(chunk_size=512), similarity=None).retrieval_options()
        assert over_config["similarity"] is None and over_config["chunk_size"] == 512
        dumped = build(token_budget=100, fusion=None).model_dump_json()
        assert build.model_validate_json(dumped).retrieval_options() == {"token_budget": 100, "fusion": None}
    assert InfiniRetriNodePostprocessor(fusion=None, candidate_tokens=None).retrieval_options == off
    with pytest.raises(ValidationError, match="phrase_window must be a positive integer, got None"):
        InfiniRetriRetriever(phrase_window=None)
    # LangChain rebuilds a configured runnable from every field: what was left out stays the engine's
    retriever = InfiniRetriRetriever.from_texts(TEXTS, k=3, fusion=None)
    configurable = retriever.configurable_fields(k=ConfigurableField(id="k"))
    rebuilt, _ = configurable._prepare({"configurable": {"k": 1}})
    assert rebuilt.k == 1 and rebuilt.retrieval_options() == {"fusion": None}


# ------------------------------------------------------------------ item 5: start_index
def test_incoming_start_index_gives_offsets_into_the_original_document(engine: InfiniRetriEngine) -> None:
    original = " ".join(TEXTS) + " " + " ".join(TEXTS[::-1])
    splitter = RecursiveCharacterTextSplitter(chunk_size=90, chunk_overlap=0, add_start_index=True)
    chunks = splitter.create_documents([original])
    assert len(chunks) > 2 and chunks[1].metadata["start_index"] > 0
    compressor = InfiniRetriCompressor(engine=engine, group_by="sentence")
    docs = compressor.compress_documents(chunks, QUESTION)
    assert any(d.metadata["source_index"] > 0 for d in docs)
    for doc in docs:
        chunk = chunks[doc.metadata["source_index"]]
        start, end = doc.metadata["chunk_start_index"], doc.metadata["chunk_end_index"]
        assert chunk.page_content[start:end] == doc.page_content
        assert original[doc.metadata["start_index"] : doc.metadata["end_index"]] == doc.page_content
    grouped = InfiniRetriCompressor(engine=engine).compress_documents(chunks, QUESTION)
    for doc in grouped:
        for start, end in doc.metadata["spans"]:
            assert original[start:end] in doc.page_content


# ------------------------------------------------------------------ item 7: scores, threshold, k
def test_normalised_scores_threshold_and_k(engine: InfiniRetriEngine) -> None:
    raw = InfiniRetriRetriever.from_documents(DOCS, engine=engine, k=None).invoke(QUESTION)
    normalised = InfiniRetriRetriever.from_documents(DOCS, engine=engine, k=None, normalize_scores=True).invoke(
        QUESTION
    )
    scores = [d.metadata["relevance_score"] for d in normalised]
    assert max(scores) == 1.0 and all(0.0 <= s <= 1.0 for s in scores)
    assert [d.metadata["attention_score"] for d in normalised] == [d.metadata["relevance_score"] for d in raw]
    assert scores != [d.metadata["relevance_score"] for d in raw]  # raw scores are on their own scale
    strong = InfiniRetriRetriever.from_documents(
        DOCS, engine=engine, k=None, normalize_scores=True, score_threshold=0.5
    ).invoke(QUESTION)
    assert 0 < len(strong) < len(normalised)
    assert all(d.metadata["relevance_score"] >= 0.5 for d in strong)
    assert len(InfiniRetriRetriever.from_documents(DOCS, engine=engine).invoke(QUESTION)) == 4  # k=4 default
    with pytest.warns(DeprecationWarning, match="'top_k' is deprecated"):
        same = InfiniRetriRetriever.from_documents(DOCS, engine=engine, k=None, top_k=48).invoke(QUESTION)
    assert same == raw  # top_k: the deprecated name of tokens_per_pass, still honoured for one release
    with pytest.raises(ValidationError, match="same option"):
        InfiniRetriRetriever(tokens_per_pass=10, top_k=20)
    with pytest.raises(ValidationError, match=r"\[0, 1\]"):
        InfiniRetriRetriever(normalize_scores=True, score_threshold=3.0)


# ------------------------------------------------------------------ item 9: actionable errors
def test_llama_index_document_gives_one_actionable_error() -> None:
    llama_core = pytest.importorskip("llama_index.core")
    with pytest.raises(TypeError) as caught:
        InfiniRetriRetriever.from_documents([llama_core.Document(text="Bob lives in Rome.")])
    message = str(caught.value)
    assert "docs[0]" in message and "to_langchain_format" in message
    assert "validation error" not in message


def test_cuda_on_a_cpu_build_names_the_value_and_the_fix() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValidationError, match=r"device='cuda' is not available.*CPU-only build.*device='cpu'"):
        InfiniRetriRetriever(device="cuda")
    with pytest.raises(ValidationError, match="dtype must be a torch dtype"):
        InfiniRetriCompressor(dtype="float42")


# ------------------------------------------------------------------ item 10: device/dtype, counters
def test_device_and_dtype_select_a_shared_default_engine_without_loading() -> None:
    retriever = InfiniRetriRetriever(device="cpu", dtype="float32")
    compressor = InfiniRetriCompressor(device="cpu", dtype="float32")
    assert retriever.get_engine() is compressor.get_engine() is default_engine("cpu", "float32")
    assert retriever.get_engine() is not default_engine()
    with pytest.raises(ValidationError, match="apply only when the model is loaded here"):
        InfiniRetriRetriever(engine=InfiniRetriEngine(), device="cpu")


def test_token_counter_accepts_callables_and_llms_only() -> None:
    with pytest.raises(ValidationError, match="needs token_budget"):
        InfiniRetriCompressor(token_counter=len)
    with pytest.raises(TypeError, match="get_num_tokens"):
        InfiniRetriCompressor(token_budget=10, token_counter="gpt-4o")


# ------------------------------------------------------------------ item 8: imports
@pytest.mark.parametrize("module", ["infiniretri_integrations.langchain", "infiniretri_integrations.llama_index"])
def test_importing_an_adapter_does_not_import_torch(module: str) -> None:
    code = f"import sys, {module}\nassert 'torch' not in sys.modules, 'torch imported'\nprint('ok')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


@pytest.mark.parametrize(
    ("module", "framework", "extra"),
    [
        ("infiniretri_integrations.langchain", "langchain_core", "langchain"),
        ("infiniretri_integrations.llama_index", "llama_index.core", "llama-index"),
    ],
)
def test_missing_framework_names_the_extra(module: str, framework: str, extra: str) -> None:
    code = f"import sys\nsys.modules[{framework!r}] = None\nimport {module}"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode != 0
    assert f'pip install "infiniretri-integrations[{extra}]"' in done.stderr, done.stderr
