"""Issue #13 on the LlamaIndex side: answers that end, ids shared with LangChain, duplicate parents,
serialization round trips, normalised scores, device errors. Real llama-index-core objects; the
real packaged model where generation or retrieval runs."""

from __future__ import annotations

import re
from typing import Any

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core import SummaryIndex
from llama_index.core.schema import Document, NodeWithScore, TextNode

from infiniretri_integrations import InfiniRetriEngine
from infiniretri_integrations.core.generation import REPEAT_CHARS
from infiniretri_integrations.llama_index import InfiniRetriLLM, InfiniRetriNodePostprocessor, InfiniRetriSynthesizer

pytestmark = [pytest.mark.real_model, pytest.mark.usefixtures("one_torch_thread")]

QUESTION = "Where does Bob live?"
TEXT = "Alice lives in Paris. She likes tea. Bob lives in Rome. He drinks coffee. Carol lives in Berlin."


@pytest.fixture(scope="module")
def engine(real_lm: Any) -> InfiniRetriEngine:
    return InfiniRetriEngine(real_lm, chunk_size=256, tokens_per_pass=48, max_new_tokens=48, show_progress=False)


def _repeats(text: str) -> bool:
    windows = [text[i : i + REPEAT_CHARS] for i in range(len(text) - REPEAT_CHARS + 1)]
    return len(set(windows)) < len(windows)


# ------------------------------------------------------------------ item 2: answers end
def test_settings_llm_query_engine_answer_ends_without_echo_or_repetition(engine: InfiniRetriEngine) -> None:
    llm = InfiniRetriLLM(engine, max_new_tokens=96)
    query_engine = SummaryIndex.from_documents([Document(text=TEXT)]).as_query_engine(llm=llm)
    answer = str(query_engine.query(QUESTION)).strip()
    assert answer, "empty answer"
    assert not re.match(r"(the )?answer( is)?\s*:", answer, re.IGNORECASE), answer
    assert not _repeats(answer), answer
    streamed = "".join(r.delta or "" for r in llm.stream_complete(f"{TEXT}\n\n{QUESTION}"))
    assert streamed == llm.complete(f"{TEXT}\n\n{QUESTION}").text


def test_stop_strings_and_generate_kwargs_pass_through(engine: InfiniRetriEngine) -> None:
    llm = InfiniRetriLLM(engine, max_new_tokens=24)
    prompt = f"Bob lives in Rome.\n\nQuestion: {QUESTION}"
    plain = llm.complete(prompt).text
    assert "Rome" in plain, plain
    stopped = llm.complete(prompt, stop=["Rome"]).text
    assert "Rome" not in stopped and plain.startswith(stopped)
    rome = engine.local_model.tokenizer(" Rome", add_special_tokens=False)["input_ids"]
    banned = InfiniRetriLLM(engine, max_new_tokens=24, generate_kwargs={"bad_words_ids": [rome]}).complete(prompt)
    assert " Rome" not in banned.text and banned.text != plain
    synthesizer = InfiniRetriSynthesizer(engine, stop=["Rome"])
    response = synthesizer.synthesize(QUESTION, [NodeWithScore(node=TextNode(text=TEXT, id_="t"))])
    assert "Rome" not in str(response)


# ------------------------------------------------------------------ item 3: ids, duplicate parents
def test_sentence_node_ids_follow_the_shared_rule(engine: InfiniRetriEngine) -> None:
    nodes = [NodeWithScore(node=TextNode(text=TEXT, id_="people"), score=1.0)]
    sentences = InfiniRetriNodePostprocessor(engine).postprocess_nodes(nodes, query_str=QUESTION)
    assert len(sentences) > 1
    for item in sentences:
        meta = item.node.metadata
        assert item.node.node_id == f"people:{meta['sentence_start']}-{meta['sentence_end']}"
        assert meta["source_id"] == "people"
        assert "source_id" in item.node.excluded_llm_metadata_keys
    assert len({n.node.node_id for n in sentences}) == len(sentences)


def test_parents_mode_keeps_parents_that_share_an_id(engine: InfiniRetriEngine) -> None:
    nodes = [
        NodeWithScore(node=TextNode(text="Bob lives in Rome. He drinks coffee.", id_="same"), score=0.5),
        NodeWithScore(node=TextNode(text="Alice lives in Paris. Bob visits her.", id_="same"), score=0.5),
    ]
    parents = InfiniRetriNodePostprocessor(engine, mode="parents").postprocess_nodes(nodes, query_str=QUESTION)
    assert sorted(p.node.text for p in parents) == sorted(n.node.text for n in nodes)


# ------------------------------------------------------------------ item 6: serialization
def test_postprocessor_and_llm_round_trip_through_json() -> None:
    postprocessor = InfiniRetriNodePostprocessor(
        mode="parents",
        top_n=2,
        order="score",
        normalize_scores=True,
        score_threshold=0.2,
        tokens_per_pass=20,
        chunk_size=512,
    )
    copy = InfiniRetriNodePostprocessor.from_json(postprocessor.to_json())
    assert copy.to_dict() == postprocessor.to_dict()
    assert copy.retrieval_options == {"tokens_per_pass": 20, "chunk_size": 512}
    llm = InfiniRetriLLM(max_new_tokens=20, context_window=4096, stop=["\n\n"], generate_kwargs={"num_beams": 1})
    llm_copy = InfiniRetriLLM.from_json(llm.to_json())
    assert llm_copy.to_dict() == llm.to_dict()
    assert (llm_copy.max_new_tokens, llm_copy.stop, llm_copy.generate_kwargs) == (20, ["\n\n"], {"num_beams": 1})


# ------------------------------------------------------------------ item 7: scores
def test_normalised_scores_and_tokens_per_pass(engine: InfiniRetriEngine) -> None:
    nodes = [NodeWithScore(node=TextNode(text=TEXT, id_="people"), score=1.0)]
    raw = InfiniRetriNodePostprocessor(engine).postprocess_nodes(nodes, query_str=QUESTION)
    scaled = InfiniRetriNodePostprocessor(engine, normalize_scores=True, tokens_per_pass=48).postprocess_nodes(
        nodes, query_str=QUESTION
    )
    assert [n.node.node_id for n in scaled] == [n.node.node_id for n in raw]
    scores = [n.score for n in scaled]
    assert max(scores) == 1.0 and all(0 <= s <= 1 for s in scores)
    best, worst = max(n.score for n in raw), min(n.score for n in raw)
    assert scores == pytest.approx([(n.score - worst) / (best - worst) for n in raw])  # min-max per query


# ------------------------------------------------------------------ item 9/10: device
def test_device_errors_name_the_value_and_the_fix() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    for build in (
        lambda: InfiniRetriLLM(device="cuda"),
        lambda: InfiniRetriNodePostprocessor(device="cuda"),
        lambda: InfiniRetriSynthesizer(device="cuda"),
    ):
        with pytest.raises(ValueError, match=r"device='cuda' is not available.*CPU-only build"):
            build()
    assert (
        InfiniRetriLLM(device="cpu", dtype="float32").engine
        is InfiniRetriSynthesizer(device="cpu", dtype="float32").engine
    )
