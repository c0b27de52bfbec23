"""Issue #14 item 7: a path that does not exist is "folder not found", never a hub lookup; no
connection is attempted while loading (sockets blocked)."""

from __future__ import annotations

import socket

import pytest

from infiniretri_integrations import InfiniRetriEngine, load_model


@pytest.fixture
def no_network(monkeypatch):
    attempts: list[object] = []

    def refuse(self, address, *args, **kwargs):
        attempts.append(address)
        msg = f"network access attempted: {address!r}"
        raise OSError(msg)

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


@pytest.mark.parametrize("path", ["models/typo-folder", "org/some-model", "./missing"])
def test_missing_folder_is_not_found_without_any_connection(path, no_network, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # even online, a path never becomes a hub lookup
    with pytest.raises(FileNotFoundError, match=rf"model folder not found: '{path}'.*allow_hub=True"):
        InfiniRetriEngine(path).retrieve("Some text.", "What?")
    assert no_network == []


def test_existing_folder_loads_offline_without_connections(tiny_llama_folder, no_network):
    lm = load_model(tiny_llama_folder, device="cpu", dtype="float32")
    assert lm.num_layers > 0 and no_network == []
