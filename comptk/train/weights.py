"""Pretrained weights without a minute of retries: the local caches first, then one quick look at the hub.

timm downloads pretrained weights from the Hugging Face hub (or, for older models, a URL). With no network,
huggingface_hub retries five times with back-off (~57 s measured before this module) before failing. Here:

1. the weights are looked up in the local caches: the Hugging Face hub cache (``HF_HUB_CACHE``, else
   ``HF_HOME/hub``, else ``~/.cache/huggingface/hub``; via ``huggingface_hub.try_to_load_from_cache`` with the
   model's ``pretrained_cfg["hf_hub_id"]``) and torch's hub folder for URL weights; when found, timm loads
   that file (``pretrained_cfg_overlay=dict(file=...)``) and the network is never used;
2. else, with ``HF_HUB_OFFLINE=1`` set, or when the weights' host (HF_ENDPOINT, or the weights' URL) does not
   answer an HTTPS request within ``PROBE_TIMEOUT_S``, a one-line ComptkError names the ways out (``--weights``, the cache,
   ``HF_HUB_OFFLINE``, ``--no-pretrained``);
3. else timm downloads them as usual.
"""

from __future__ import annotations

import functools
import os
import threading
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from ..errors import ComptkError

PROBE_TIMEOUT_S = 2.0
_OFFLINE_VALUES = ("1", "on", "yes", "true")


def hub_cache_dir() -> Path:
    """Where huggingface_hub keeps downloads: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def hub_offline() -> bool:
    """HF_HUB_OFFLINE=1: never try the network for weights."""
    from huggingface_hub import constants

    return constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _OFFLINE_VALUES


def _pretrained_cfg(model: str) -> dict:
    import timm

    if model.startswith("hf-hub:"):
        return {"hf_hub_id": model[len("hf-hub:"):]}
    cfg = timm.models.get_pretrained_cfg(model)  # the default tag for "resnet18", the given one for "resnet18.tv_in1k"
    return cfg.to_dict() if cfg is not None else {}


def cached_weights(model: str) -> Path | None:
    """The model's pretrained weights file when it is in a local cache (no network used), else None."""
    from huggingface_hub import try_to_load_from_cache

    cfg = _pretrained_cfg(model)
    repo = cfg.get("hf_hub_id")
    if repo:
        repo, _, revision = repo.partition("@")
        names = [cfg["hf_hub_filename"]] if cfg.get("hf_hub_filename") else ["model.safetensors", "pytorch_model.bin"]
        for name in names:
            found = try_to_load_from_cache(repo, name, cache_dir=hub_cache_dir(), revision=revision or None)
            if isinstance(found, str) and Path(found).is_file():
                return Path(found)
    url = cfg.get("url")
    if url:
        import torch

        path = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name
        if path.is_file():
            return path
    return None


def _probe_url(model: str) -> str:
    """Where the weights would come from: the hub endpoint (HF_ENDPOINT), or the host of the weights' URL."""
    cfg = _pretrained_cfg(model)
    if cfg.get("hf_hub_id") or not cfg.get("url"):
        from huggingface_hub import constants

        return constants.ENDPOINT.rstrip("/") + "/"
    parsed = urlparse(cfg["url"])
    return f"{parsed.scheme}://{parsed.netloc}/"


@functools.lru_cache(maxsize=8)
def reachable(url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """An HTTP answer (any status) from ``url`` within ``timeout`` seconds, through the proxy of the environment
    if one is set. A bare TCP connection is not enough: a sandbox's intercepting firewall accepts those; TLS
    with certificate checks is not faked. The name lookup is bounded too (the request runs in a thread, since
    getaddrinfo takes no timeout). Remembered for the process: a run asks once."""
    answer: list[bool] = []

    def ask() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
            answer.append(True)
        except urllib.error.HTTPError:
            answer.append(True)  # the server answered
        except (OSError, ValueError):  # URLError (DNS, refused, TLS), timeouts
            answer.append(False)

    worker = threading.Thread(target=ask, daemon=True)
    worker.start()
    worker.join(timeout + 0.5)
    return bool(answer and answer[0])


def has_published_weights(model: str) -> bool:
    cfg = _pretrained_cfg(model)
    return bool(cfg.get("hf_hub_id") or cfg.get("url") or cfg.get("file"))


def weights_obtainable(model: str) -> bool:
    """Pretrained weights of ``model`` can be loaded now: cached, or the hub answers (and is not switched off)."""
    if not has_published_weights(model):
        return False
    if cached_weights(model) is not None:
        return True
    return not hub_offline() and reachable(_probe_url(model))


TRAIN_FLAGS = ("--weights FILE", "--no-pretrained")  # how `comptk train` spells the ways out


def require_pretrained(model: str, flags: tuple[str, str] = TRAIN_FLAGS) -> dict | None:
    """What ``timm.create_model(model, pretrained=True, pretrained_cfg_overlay=...)`` needs: ``{"file": PATH}``
    when the weights are cached (loaded from there, no network), None when they must be downloaded and the
    host answers; else (no published weights, or neither cached nor downloadable) a ComptkError at once, whose
    ways out name ``flags`` (a weights file, no pretrained weights) as the calling command spells them."""
    if not has_published_weights(model):
        raise ComptkError(f"'{model}' has no published pretrained weights: give {flags[0]}, or {flags[1]}")
    cached = cached_weights(model)
    if cached is not None:
        return {"file": str(cached)}
    url = _probe_url(model)
    if hub_offline():
        why = "HF_HUB_OFFLINE is set"
    elif not reachable(url):
        why = f"no answer from {url} within {PROBE_TIMEOUT_S:g} s"
    else:
        return None
    raise ComptkError(
        f"cannot load pretrained weights for '{model}': not in the local cache and not downloadable ({why}); "
        f"pass {flags[0]} (a .safetensors/.pth checkpoint of the model), or copy the Hugging Face cache of a "
        f"connected machine to {hub_cache_dir()} (the folder comes from HF_HUB_CACHE, else HF_HOME/hub; fill it there "
        f"with `python -c \"import timm; timm.create_model('{model}', pretrained=True)\"`), or train with "
        f"{flags[1]}; HF_HUB_OFFLINE=1 skips the network check"
    )
