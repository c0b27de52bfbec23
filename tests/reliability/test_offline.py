"""Issue #14: every public path runs with the network blocked and attempts no connection.

Each test runs under pytest-socket's ``disable_socket`` marker (only here: the rest of the suite
keeps its sockets). The :func:`network_attempts` fixture keeps that block, lets Unix-domain
sockets through (asyncio's self-pipe; they never reach the network) and records every other
socket creation and name lookup, so an attempt that a library catches and hides still fails the
test. Async paths run in ``asyncio.run`` inside the test, after the block is in place. The
``infiniretri ask`` command runs as a subprocess whose ``socket`` module refuses to connect or
resolve, without ``HF_HUB_OFFLINE`` set.

Tiny random model (saved as a folder for the command); one case on the packaged model.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_socket
from langchain_core.documents import Document
from llama_index.core import Document as LlamaDocument
from llama_index.core.llms import ChatMessage
from llama_index.core.schema import NodeWithScore, TextNode

from infiniretri_integrations import InfiniRetriEngine
from infiniretri_integrations.langchain import (
    InfiniRetriCompressor,
    InfiniRetriQA,
    InfiniRetriRetriever,
    create_infiniretri_tool,
)
from infiniretri_integrations.llama_index import (
    InfiniRetriLLM,
    InfiniRetriNodePostprocessor,
    InfiniRetriQueryEngine,
    InfiniRetriSynthesizer,
)

pytestmark = [pytest.mark.disable_socket, pytest.mark.usefixtures("one_torch_thread")]

TEXT = "Alice lives in Paris. Bob lives in Rome. The vault code is 4812. Trains leave at noon."
QUESTION = "Where does Bob live?"


@pytest.fixture(autouse=True)
def network_attempts() -> Iterator[list[str]]:
    """Every socket creation (other than Unix-domain) and name lookup of the test, blocked."""
    assert socket.socket is not pytest_socket._true_socket, "pytest-socket's disable_socket marker is not active"
    attempts: list[str] = []
    pytest_socket.enable_socket()  # the marker's guard would refuse Unix sockets under the new one
    pytest_socket.disable_socket(allow_unix_socket=True)
    blocked_socket = socket.socket
    blocked_getaddrinfo, blocked_gethostbyname = socket.getaddrinfo, socket.gethostbyname

    class RecordedSocket(blocked_socket):  # type: ignore[misc,valid-type]
        def __new__(cls, family: Any = -1, type: Any = -1, proto: Any = -1, fileno: Any = None) -> Any:
            if family != socket.AF_UNIX:
                attempts.append(f"socket(family={family!r})")
            return super().__new__(cls, family, type, proto, fileno)

    def getaddrinfo(*args: Any, **kwargs: Any) -> Any:
        attempts.append(f"getaddrinfo{args!r:.120}")
        return blocked_getaddrinfo(*args, **kwargs)

    def gethostbyname(*args: Any, **kwargs: Any) -> Any:
        attempts.append(f"gethostbyname{args!r:.120}")
        return blocked_gethostbyname(*args, **kwargs)

    socket.socket = RecordedSocket  # type: ignore[misc]
    socket.getaddrinfo = getaddrinfo
    socket.gethostbyname = gethostbyname
    try:
        yield attempts
    finally:
        socket.getaddrinfo = pytest_socket._true_getaddrinfo
        socket.gethostbyname = pytest_socket._true_gethostbyname
        pytest_socket.enable_socket()


@pytest.fixture
def engine(tiny_llama) -> InfiniRetriEngine:
    return InfiniRetriEngine(tiny_llama, tokens_per_pass=8, chunk_size=128, max_new_tokens=6, show_progress=False)


def test_the_guard_sees_an_attempt(network_attempts):
    """The guard itself: a connection attempt is blocked and recorded (so the tests below can fail)."""
    with pytest.raises(pytest_socket.SocketBlockedError):
        socket.create_connection(("example.com", 80), timeout=1)
    with pytest.raises(pytest_socket.SocketBlockedError):
        socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    assert [a.split("(")[0] for a in network_attempts] == ["getaddrinfo", "socket"]
    assert "example.com" in network_attempts[0]
    asyncio.run(asyncio.sleep(0))  # the event loop's Unix self-pipe is allowed


def test_engine_paths(engine, network_attempts):
    result = engine.retrieve(TEXT, QUESTION)
    assert result.sentences
    assert isinstance(engine.answer(TEXT, QUESTION).text, str)
    assert isinstance("".join(engine.stream_answer(TEXT, QUESTION)), str)
    assert network_attempts == []


def test_langchain_paths(engine, network_attempts):
    docs = [Document(TEXT, id="people")]
    retriever = InfiniRetriRetriever.from_documents(docs, engine=engine, k=2)
    compressor = InfiniRetriCompressor(engine=engine)
    qa = InfiniRetriQA(engine=engine, documents=docs, with_sources=True)
    assert retriever.invoke(QUESTION)
    assert list(retriever.stream(QUESTION))
    assert compressor.compress_documents(docs, QUESTION)
    assert isinstance(qa.invoke(QUESTION)["answer"], str)
    assert list(qa.stream(QUESTION))
    assert isinstance(create_infiniretri_tool(retriever).invoke({"query": QUESTION}), str)

    async def run_async() -> None:
        assert await retriever.ainvoke(QUESTION)
        assert await compressor.acompress_documents(docs, QUESTION)
        assert isinstance((await qa.ainvoke(QUESTION))["answer"], str)
        assert [chunk async for chunk in qa.astream(QUESTION)]
        events = [e async for e in retriever.astream_events(QUESTION, version="v2")]
        assert any(e["event"] == "on_custom_event" for e in events)

    asyncio.run(run_async())
    assert network_attempts == []


def test_llama_index_paths(engine, network_attempts):
    nodes = [NodeWithScore(node=TextNode(text=TEXT, id_="people"), score=1.0)]
    postprocessor = InfiniRetriNodePostprocessor(engine)
    synthesizer = InfiniRetriSynthesizer(engine)
    streaming = InfiniRetriSynthesizer(engine, streaming=True)
    query_engine = InfiniRetriQueryEngine.from_documents([LlamaDocument(text=TEXT, id_="people")], engine=engine)
    llm = InfiniRetriLLM(engine)
    assert postprocessor.postprocess_nodes(nodes, query_str=QUESTION)
    assert isinstance(str(synthesizer.synthesize(QUESTION, nodes)), str)
    assert isinstance("".join(streaming.synthesize(QUESTION, nodes).response_gen), str)
    assert query_engine.query(QUESTION).source_nodes
    assert isinstance(llm.complete("Name a city.").text, str)
    assert isinstance("".join(r.delta or "" for r in llm.stream_complete("Name a city.")), str)
    assert isinstance(llm.chat([ChatMessage(role="user", content="Name a city.")]).message.content, str)

    async def run_async() -> None:
        assert await postprocessor.apostprocess_nodes(nodes, query_str=QUESTION)
        assert isinstance(str(await synthesizer.asynthesize(QUESTION, nodes)), str)
        response = await streaming.asynthesize(QUESTION, nodes)
        assert isinstance("".join([t async for t in response.async_response_gen()]), str)
        assert (await query_engine.aquery(QUESTION)).source_nodes
        assert isinstance((await llm.acomplete("Name a city.")).text, str)

    asyncio.run(run_async())
    assert network_attempts == []


BLOCKER = """
import socket, sys

def blocked(*args, **kwargs):
    sys.stderr.write(f"NETWORK ATTEMPT {args!r:.200}\\n")
    raise OSError("network blocked by the test")

socket.socket.connect = blocked
socket.socket.connect_ex = blocked
socket.create_connection = blocked
socket.getaddrinfo = blocked
socket.gethostbyname = blocked
from infiniretri_integrations.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_cli_ask_runs_without_network(tiny_llama_folder, tmp_path: Path, network_attempts):
    notes = tmp_path / "notes.txt"
    notes.write_text(TEXT, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env["OMP_NUM_THREADS"] = "1"
    argv = ["ask", str(notes), "-q", QUESTION, "--model", str(tiny_llama_folder), "--max-new-tokens", "6", "--json"]
    run = subprocess.run(
        [sys.executable, "-c", BLOCKER, *argv], capture_output=True, text=True, env=env, timeout=600, check=False
    )
    assert "NETWORK ATTEMPT" not in run.stderr, run.stderr
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["sentences"]
    assert network_attempts == []


def test_cli_blocker_catches_an_attempt(tmp_path: Path):
    """The subprocess guard itself: code that connects is reported (so the test above can fail)."""
    code = BLOCKER.replace(
        "from infiniretri_integrations.cli import main", "socket.create_connection(('example.com', 80))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert "NETWORK ATTEMPT" in run.stderr
    assert run.returncode != 0


@pytest.mark.real_model
def test_packaged_model_paths(real_lm, network_attempts):
    """The packaged default model (the shared default engine) answers with the network blocked."""
    retriever = InfiniRetriRetriever.from_texts([TEXT], k=1, tokens_per_pass=16, chunk_size=256)  # engine=None: default
    assert "Rome" in retriever.invoke(QUESTION)[0].page_content
    qa = InfiniRetriQA(engine=InfiniRetriEngine(real_lm, max_new_tokens=12), documents=[TEXT])
    answer = asyncio.run(qa.ainvoke(QUESTION))
    assert isinstance(answer, str) and answer.strip()
    assert network_attempts == []
