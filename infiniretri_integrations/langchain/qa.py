"""``InfiniRetriQA``: retrieve with attention, then answer with the same local model, streaming."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForChainRun,
    CallbackManagerForChainRun,
    adispatch_custom_event,
    dispatch_custom_event,
)
from langchain_core.documents import Document
from langchain_core.runnables import RunnableConfig, RunnableSerializable
from langchain_core.runnables.utils import AddableDict
from pydantic import ConfigDict, field_validator

from infiniretri_integrations.core.concurrency import closing_generator, iterate_in_thread, run_cancellable
from infiniretri_integrations.core.config import PROMPT_FIELDS
from infiniretri_integrations.core.types import RetrievalResult
from infiniretri_integrations.langchain._documents import build_documents, to_engine_documents
from infiniretri_integrations.langchain._options import InfiniRetriOptions
from infiniretri_integrations.langchain._reporting import (
    SENTENCES_EVENT,
    aretrieve_and_report,
    retrieve_and_report,
    sentences_payload,
)

QAInput = str | dict[str, Any]
QAOutput = str | dict[str, Any]


def _as_documents(value: Any, name: str) -> list[Document]:
    if isinstance(value, (str, Document)):
        value = [value]
    if not isinstance(value, Sequence):
        msg = f"{name} must be a list of Documents or strings, got {type(value).__name__}: {value!r}"
        raise TypeError(msg)
    docs: list[Document] = []
    for index, item in enumerate(value):
        if isinstance(item, Document):
            docs.append(item)
        elif isinstance(item, str):
            docs.append(Document(page_content=item))
        else:
            msg = f"{name}[{index}] must be a Document or a str, got {type(item).__name__}: {item!r}"
            raise TypeError(msg)
    return docs


class InfiniRetriQA(InfiniRetriOptions, RunnableSerializable[QAInput, QAOutput]):
    """Question answering over long documents with one small local LM: its attention selects the
    sentences (InfiniRetri), then it answers from them, token by token.

    Input: a question ``str`` (documents bound with ``documents=``) or a dict
    ``{"question": ..., "documents": [...]}`` (Documents or strings; overrides bound documents).
    Output: the answer ``str``; with ``with_sources=True`` a dict ``{"answer", "sentences",
    "stats"}`` where ``sentences`` are Documents shaped as :class:`InfiniRetriRetriever`'s output
    and ``stats`` the engine's :class:`RetrievalStats`.

    ``stream``/``astream`` yield the answer as the model generates it (with ``with_sources`` the
    first chunk carries ``sentences`` and ``stats``, later chunks ``answer`` pieces). During a run
    the custom events ``"infiniretri_progress"`` (after each chunk read) and
    ``"infiniretri_sentences"`` (the kept sentences) are dispatched; see them with
    ``astream_events(version="v2")``. Async methods run the model in worker threads; one model
    serves concurrent calls one forward pass at a time.

    Args:
        engine: the engine (or a ``LocalModel``); ``None``: the shared default engine.
        documents: documents bound at construction.
        with_sources: return the answer with the kept sentences and statistics.
        max_new_tokens: answer length in tokens (``None``: the engine's ``GenerationConfig``).
        stop: extra stop strings; generate_kwargs: passed to ``model.generate``.
        device, dtype: where and how the model loads when no ready engine is given.
        retrieval_config and every RetrievalConfig field (``tokens_per_pass``, ``chunk_size``,
            ``token_budget``, ...): retrieval options, as for :class:`InfiniRetriRetriever`;
            the prompt fields (``prompt_template``, ``system_prompt``, ``use_chat_template``)
            shape the answer prompt too.

    Example:
        >>> from infiniretri_integrations.langchain import InfiniRetriQA
        >>> qa = InfiniRetriQA(documents=["Alice lives in Paris. Bob lives in Rome."], tokens_per_pass=8, chunk_size=256)
        >>> qa.invoke("Where does Bob live?")  # doctest: +SKIP
        'Bob lives in Rome.'
        >>> for piece in qa.stream("Where does Alice live?"):  # doctest: +SKIP
        ...     print(piece, end="", flush=True)
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    documents: list[Document] | None = None
    with_sources: bool = False
    max_new_tokens: int | None = None
    """Answer length in tokens (``None``: the engine's)."""
    stop: list[str] | None = None
    """Extra stop strings: the answer ends before the first one."""
    generate_kwargs: dict[str, Any] | None = None
    """Passed to ``model.generate`` (e.g. ``{"do_sample": True, "temperature": 0.7}``)."""
    share_context: bool = False
    """In ``batch``/``abatch``: questions over the same documents also share each pass's context
    encoding (``retrieve_many(share_context=True)``: faster, a different selection)."""

    @field_validator("documents", mode="before")
    @classmethod
    def _coerce_documents(cls, value: Any) -> list[Document] | None:
        return None if value is None else _as_documents(value, "documents")

    def options(self) -> dict[str, Any]:
        """Per-call retrieval overrides."""
        return self.retrieval_options()

    def answer_options(self) -> dict[str, Any]:
        """Per-call answer options: the generation settings set here and the prompt fields."""
        prompt = {name: value for name, value in self.retrieval_options().items() if name in PROMPT_FIELDS}
        generation = {"max_new_tokens": self.max_new_tokens, "stop": self.stop, "generate_kwargs": self.generate_kwargs}
        return {**prompt, **{name: value for name, value in generation.items() if value is not None}}

    # ------------------------------------------------------------------ helpers
    def _parse(self, value: QAInput) -> tuple[str, list[Document]]:
        if isinstance(value, str):
            question, documents = value, self.documents
        elif isinstance(value, Mapping):
            if "question" not in value:
                msg = f"input dict must have a 'question' key (and optionally 'documents'), got keys {sorted(value)!r}"
                raise ValueError(msg)
            question = value["question"]
            raw = value.get("documents")
            documents = _as_documents(raw, "input['documents']") if raw is not None else self.documents
        else:
            msg = f"input must be a question str or a dict with 'question' and 'documents', got {type(value).__name__}: {value!r}"
            raise TypeError(msg)
        if documents is None:
            msg = f"no documents for question {question!r}: bind documents=... or pass {{'question', 'documents'}}"
            raise ValueError(msg)
        return question, documents

    def _sources(self, result: RetrievalResult, documents: list[Document]) -> dict[str, Any]:
        return {"sentences": build_documents(result.sentences, documents, "sentence"), "stats": result.stats}

    def _output(self, answer: str, result: RetrievalResult, documents: list[Document]) -> QAOutput:
        if not self.with_sources:
            return answer
        return {"answer": answer, **self._sources(result, documents)}

    # ------------------------------------------------------------------ sync
    def invoke(self, input: QAInput, config: RunnableConfig | None = None, **kwargs: Any) -> QAOutput:
        """Retrieve, then answer (see the class docstring)."""
        return self._call_with_config(self._invoke, input, config, run_type="chain")

    def _invoke(self, input: QAInput, run_manager: CallbackManagerForChainRun, config: RunnableConfig) -> QAOutput:
        question, documents = self._parse(input)
        result = retrieve_and_report(self.get_engine(), documents, question, self.options(), config)  # type: ignore[arg-type]
        answer = self.get_engine().answer_from(result, question, **self.answer_options())
        return self._output(answer.text, result, documents)

    def stream(self, input: QAInput, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[QAOutput]:
        """Yield the answer's text pieces as they are generated (dict chunks with ``with_sources``)."""
        yield from self._transform_stream_with_config(iter([input]), self._transform, config, run_type="chain")

    def _transform(
        self, inputs: Iterator[QAInput], run_manager: CallbackManagerForChainRun, config: RunnableConfig
    ) -> Iterator[QAOutput]:
        for value in inputs:
            question, documents = self._parse(value)
            result = retrieve_and_report(self.get_engine(), documents, question, self.options(), config)  # type: ignore[arg-type]
            if self.with_sources:
                yield AddableDict(self._sources(result, documents))
            pieces = self.get_engine().stream_from(result, question, **self.answer_options())
            for piece in closing_generator(pieces):  # the reader leaving stops the generation
                yield AddableDict(answer=piece) if self.with_sources else piece

    # ------------------------------------------------------------------ async
    async def ainvoke(self, input: QAInput, config: RunnableConfig | None = None, **kwargs: Any) -> QAOutput:
        """Async :meth:`invoke`; the model runs in worker threads, the event loop stays free."""
        return await self._acall_with_config(self._ainvoke, input, config, run_type="chain")

    async def _ainvoke(
        self, input: QAInput, run_manager: AsyncCallbackManagerForChainRun, config: RunnableConfig
    ) -> QAOutput:
        question, documents = self._parse(input)
        result = await aretrieve_and_report(self.get_engine(), documents, question, self.options(), config)  # type: ignore[arg-type]
        answer = await run_cancellable(self.get_engine().answer_from, result, question, **self.answer_options())
        return self._output(answer.text, result, documents)

    async def astream(
        self, input: QAInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[QAOutput]:
        """Async :meth:`stream`: text pieces as they are generated, without blocking the loop."""

        async def single() -> AsyncIterator[QAInput]:
            yield input

        async for chunk in self._atransform_stream_with_config(single(), self._atransform, config, run_type="chain"):
            yield chunk

    async def _atransform(
        self, inputs: AsyncIterator[QAInput], run_manager: AsyncCallbackManagerForChainRun, config: RunnableConfig
    ) -> AsyncIterator[QAOutput]:
        async for value in inputs:
            question, documents = self._parse(value)
            result = await aretrieve_and_report(self.get_engine(), documents, question, self.options(), config)  # type: ignore[arg-type]
            if self.with_sources:
                yield AddableDict(self._sources(result, documents))
            pieces = await asyncio.to_thread(self.get_engine().stream_from, result, question, **self.answer_options())
            stream = iterate_in_thread(pieces)
            try:
                async for piece in stream:
                    yield AddableDict(answer=piece) if self.with_sources else piece
            finally:  # the reader left or was cancelled: the generation stops before this returns
                await stream.aclose()

    # ------------------------------------------------------------------ many questions
    def batch(
        self,
        inputs: list[QAInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[QAOutput]:
        """Answer every input; inputs over the same documents are retrieved in ONE read of them
        (:meth:`~infiniretri_integrations.InfiniRetriEngine.retrieve_many`: the kept sentences
        equal one ``invoke`` per input), then answered one by one. Each input has its own chain
        run; with ``return_exceptions=True`` a bad input fails alone.

        Example:
            >>> qa.batch(["Where does Bob live?", "Where does Alice live?"])  # doctest: +SKIP
            ['Bob lives in Rome.', 'Alice lives in Paris.']
        """
        if not inputs:
            return []
        return self._batch_with_config(
            self._batch, inputs, config, return_exceptions=return_exceptions, run_type="chain"
        )

    async def abatch(
        self,
        inputs: list[QAInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[QAOutput]:
        """Async :meth:`batch`; cancelling the awaiting task stops the chunk loop and generation."""
        if not inputs:
            return []
        return await self._abatch_with_config(
            self._abatch, inputs, config, return_exceptions=return_exceptions, run_type="chain"
        )

    def _batch(
        self, inputs: list[QAInput], run_manager: list[CallbackManagerForChainRun], config: list[RunnableConfig]
    ) -> list[QAOutput | Exception]:
        outputs, retrieved = self._retrieve_many(inputs)
        for index, (question, documents, result) in retrieved.items():
            dispatch_custom_event(SENTENCES_EVENT, sentences_payload(result), config=config[index])
            answer = self.get_engine().answer_from(result, question, **self.answer_options())
            outputs[index] = self._output(answer.text, result, documents)
        return outputs

    async def _abatch(
        self,
        inputs: list[QAInput],
        run_manager: list[AsyncCallbackManagerForChainRun],
        config: list[RunnableConfig],
    ) -> list[QAOutput | Exception]:
        outputs, retrieved = await run_cancellable(self._retrieve_many, inputs)
        for index, (question, documents, result) in retrieved.items():
            await adispatch_custom_event(SENTENCES_EVENT, sentences_payload(result), config=config[index])
            answer = await run_cancellable(self.get_engine().answer_from, result, question, **self.answer_options())
            outputs[index] = self._output(answer.text, result, documents)
        return outputs

    def _retrieve_many(
        self, inputs: list[QAInput], cancel: threading.Event | None = None
    ) -> tuple[list[Any], dict[int, tuple[str, list[Document], RetrievalResult]]]:
        """Parse every input (a bad one becomes its exception) and retrieve, one
        ``retrieve_many`` call per distinct set of documents."""
        from infiniretri_integrations.core.inputs import validate_question

        outputs: list[Any] = [None] * len(inputs)
        groups: dict[tuple[tuple[str, str | None], ...], list[tuple[int, str, list[Document]]]] = {}
        for index, value in enumerate(inputs):
            try:
                question, documents = self._parse(value)
                validate_question(question)
            except (TypeError, ValueError) as error:
                outputs[index] = error
                continue
            key = tuple((d.page_content, d.id) for d in documents)
            groups.setdefault(key, []).append((index, question, documents))
        retrieved: dict[int, tuple[str, list[Document], RetrievalResult]] = {}
        for members in groups.values():
            try:
                results = self.get_engine().retrieve_many(
                    to_engine_documents(members[0][2]),
                    [question for _, question, _ in members],
                    share_context=self.share_context,
                    cancel=cancel,
                    **self.options(),
                )
            except (TypeError, ValueError) as error:
                for index, _, _ in members:
                    outputs[index] = error
                continue
            for (index, question, documents), result in zip(members, results, strict=True):
                retrieved[index] = (question, documents, result)
        return outputs, retrieved
