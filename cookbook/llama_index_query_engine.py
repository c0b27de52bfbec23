"""Answer a question over long LlamaIndex documents with InfiniRetri, fully offline.

Loads a text file as LlamaIndex ``Document`` objects (default: the standard library's docstrings
with the needle-in-a-haystack sentence inserted), builds ``InfiniRetriQueryEngine`` (a
``SummaryIndex`` retriever, no embeddings, plus the InfiniRetri synthesizer on the packaged local
model), streams the answer, then lists the sentences it was written from with their source node
ids and character spans.

Usage:
    python cookbook/llama_index_query_engine.py [TEXT_FILE] [--question Q] [--context-tokens 2000]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from llama_index.core import Document, SimpleDirectoryReader

from infiniretri_integrations import InfiniRetriEngine, default_model
from infiniretri_integrations.evaluation.niah import STANDARD_QUESTION, build_case, stdlib_docstrings
from infiniretri_integrations.llama_index import InfiniRetriQueryEngine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("text_file", nargs="?", help="a UTF-8 text file (default: stdlib docstrings + needle)")
    parser.add_argument("--question", default=None)
    parser.add_argument("--context-tokens", type=int, default=2000, help="haystack size (default haystack only)")
    parser.add_argument("--node-chunk-size", type=int, default=512, help="split documents into nodes of ~N tokens")
    args = parser.parse_args()

    lm = default_model()
    engine = InfiniRetriEngine(lm, chunk_size=512, tokens_per_pass=48, max_new_tokens=48)
    if args.text_file:
        documents = SimpleDirectoryReader(input_files=[args.text_file]).load_data()
        question = args.question or STANDARD_QUESTION
    else:
        case = build_case(stdlib_docstrings(), lm.tokenizer, args.context_tokens, 35)
        documents = [Document(text=case.text, id_="stdlib-haystack", metadata={"source": "stdlib docstrings"})]
        question = args.question or case.question

    query_engine = InfiniRetriQueryEngine.from_documents(
        documents, engine=engine, streaming=True, node_chunk_size=args.node_chunk_size
    )
    print(f"Question: {question}\nAnswer: ", end="", flush=True)
    started = time.perf_counter()
    response = query_engine.query(question)
    response.print_response_stream()
    print(f"\n({time.perf_counter() - started:.1f}s)\n\nSentences the answer was written from:")
    for item in response.source_nodes:
        node = item.node
        meta = node.metadata
        print(
            f"  [{item.score:6.2f}] node {node.ref_doc_id} chars {meta['sentence_start']}-{meta['sentence_end']}"
            f" (sentence {meta['sentence_index']}): {' '.join(node.text.split())[:110]}"
        )


if __name__ == "__main__":
    main()
