"""Pretrained weights with no network: the local cache is used without the hub, and a miss fails at once
with the ways out, instead of a minute of hub retries."""

from __future__ import annotations

import socket
import time

import pytest
import timm
import torch
from huggingface_hub import constants
from safetensors.torch import save_file

from comptk.config import resolve
from comptk.errors import ComptkError
from comptk.train import weights
from comptk.train.models import create_model


@pytest.fixture
def no_network(monkeypatch):
    calls = []

    def unreachable(url, timeout=weights.PROBE_TIMEOUT_S):
        calls.append(url)
        return False

    monkeypatch.setattr(weights, "reachable", unreachable)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", "/nonexistent/hub-cache")
    return calls


def test_no_cache_and_no_hub_fails_at_once_naming_the_ways_out(no_network):
    started = time.perf_counter()
    with pytest.raises(ComptkError) as caught:
        create_model(resolve(None, {"model": "test_resnet", "pretrained": True}), 3)
    assert time.perf_counter() - started < 2
    message = str(caught.value)
    assert "\n" not in message and "'test_resnet'" in message
    for part in ("--weights FILE", "/nonexistent/hub-cache", "HF_HUB_CACHE", "HF_HOME", "HF_HUB_OFFLINE=1",
                 "--no-pretrained", "no answer from https://huggingface.co/"):
        assert part in message
    assert no_network == ["https://huggingface.co/"]


def test_hf_hub_offline_skips_the_network_check(no_network, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ComptkError, match=r"\(HF_HUB_OFFLINE is set\)"):
        create_model(resolve(None, {"model": "test_resnet", "pretrained": True}), 3)
    assert no_network == []


def test_weights_in_the_hub_cache_are_loaded_without_the_network(tmp_path, no_network, monkeypatch):
    """A hub cache as huggingface_hub lays it out: models--ORG--NAME/{refs/main, snapshots/REV/FILE}."""
    source = timm.create_model("test_resnet", num_classes=1000)
    repo = timm.models.get_pretrained_cfg("test_resnet").hf_hub_id  # timm/test_resnet.r160_in1k
    folder = tmp_path / "hub" / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("abc123")
    (folder / "snapshots" / "abc123").mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()},
              str(folder / "snapshots" / "abc123" / "model.safetensors"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert weights.cached_weights("test_resnet") == folder / "snapshots" / "abc123" / "model.safetensors"
    model = create_model(resolve(None, {"model": "test_resnet", "pretrained": True}), 3)
    stem = next(k for k in source.state_dict() if k.endswith("weight"))
    assert torch.equal(model.state_dict()[stem], source.state_dict()[stem])  # the cached weights, head replaced
    assert no_network == []  # found in the cache: the hub was never asked
    assert weights.weights_obtainable("test_resnet") and not weights.weights_obtainable("small_resnet")


def test_the_probe_answers_within_its_timeout():
    """A server that accepts the connection but never answers (as a black-holed host would not either)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        started = time.perf_counter()
        assert weights.reachable(f"http://127.0.0.1:{server.getsockname()[1]}/", 0.3) is False
        assert time.perf_counter() - started < 1.5
    assert weights.reachable("http://nonexistent.invalid/", 0.3) is False
