"""Expose an InfiniRetri retriever to agents as a tool."""

from __future__ import annotations

from langchain_core.retrievers import BaseRetriever
from langchain_core.tools import BaseTool, create_retriever_tool

DEFAULT_TOOL_NAME = "infiniretri_search"
DEFAULT_TOOL_DESCRIPTION = (
    "Searches the loaded documents and returns the sentences most relevant to the query, "
    "selected by a language model's attention. Input: a natural-language question."
)


def create_infiniretri_tool(
    retriever: BaseRetriever,
    name: str = DEFAULT_TOOL_NAME,
    description: str = DEFAULT_TOOL_DESCRIPTION,
    *,
    document_separator: str = "\n\n",
) -> BaseTool:
    """An agent tool (built with ``langchain_core.tools.create_retriever_tool``) that runs
    ``retriever`` on the agent's query and returns the retrieved text.

    Any retriever works; typically an :class:`InfiniRetriRetriever` over the documents the agent
    should consult. The tool takes ``{"query": str}`` and returns the page contents joined by
    ``document_separator``.

    Example:
        >>> from infiniretri_integrations.langchain import InfiniRetriRetriever, create_infiniretri_tool
        >>> retriever = InfiniRetriRetriever.from_texts(["Bob lives in Rome. He bakes bread."], k=2)
        >>> tool = create_infiniretri_tool(retriever, name="city_facts", description="Facts about people.")
        >>> tool.name, sorted(tool.args)
        ('city_facts', ['query'])
        >>> tool.invoke({"query": "Where does Bob live?"})  # doctest: +SKIP
        'Bob lives in Rome.'
    """
    if not isinstance(retriever, BaseRetriever):
        msg = f"retriever must be a langchain_core BaseRetriever, got {type(retriever).__name__}: {retriever!r}"
        raise TypeError(msg)
    if not isinstance(name, str) or not name.strip():
        msg = f"name must be a non-empty string, got {name!r}"
        raise ValueError(msg)
    if not isinstance(description, str) or not description.strip():
        msg = f"description must be a non-empty string, got {description!r}"
        raise ValueError(msg)
    return create_retriever_tool(retriever, name, description, document_separator=document_separator)
