"""Models: timm's ``create_model`` is the single door; comptk adds a small-image CNN to it.

``small_resnet`` is registered with timm on import, so ``timm.create_model("small_resnet")``
works in a notebook too. It suits images of about 16-64 px (Fashion-MNIST, CIFAR,
digits) where ImageNet architectures downsample the picture away.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
from pathlib import Path

import numpy as np
import timm
import torch
from timm.layers import DropPath
from timm.models import register_model
from torch import nn

from ..config import TrainConfig, parse_heads
from ..errors import ComptkError, did_you_mean
from .weights import require_pretrained

log = logging.getLogger("comptk")
SMALL_CFG = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "num_classes": 10, "first_conv": "stem.0"}


def _conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class _Residual(nn.Module):
    def __init__(self, channels: int, drop_path: float = 0.0) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv_bn(channels, channels), _conv_bn(channels, channels))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()  # stochastic depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.body(x))


class SmallResNet(nn.Module):
    """stem at full resolution, then stages of (conv, pool, residual block); ResNet-9 in spirit."""

    def __init__(self, num_classes: int = 10, in_chans: int = 3, widths=(16, 32, 64), drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0, **_):
        super().__init__()
        self.num_classes = num_classes
        self.num_features = widths[-1]
        self.drop_rate = drop_rate
        self.pretrained_cfg = dict(SMALL_CFG, num_classes=num_classes)
        self.stem = _conv_bn(in_chans, widths[0])
        stages, c_in = [], widths[0]
        for width in widths[1:]:
            stages += [nn.MaxPool2d(2), _conv_bn(c_in, width), _Residual(width, drop_path_rate)]
            c_in = width
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(self.num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean(dim=(2, 3))
        x = nn.functional.dropout(x, self.drop_rate, self.training)
        return x if pre_logits else self.head(x)

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


MIN_LOADED_SHARE = 0.5  # of the tensors outside the classifier head: below it the file is another model's


def _head_keys(model: nn.Module) -> set[str]:
    """State-dict keys of the classifier head (timm's get_classifier()), which a new class count replaces."""
    getter = getattr(model, "get_classifier", None)
    head = getter() if callable(getter) else None
    if not isinstance(head, nn.Module):
        return set()
    for prefix, module in model.named_modules():
        if module is head:
            return {f"{prefix}.{key}" if prefix else key for key in head.state_dict()}
    return set()


def _strip_wrapper(state: dict, own: dict) -> dict:
    """Keys saved from a wrapped model ('model.' by comptk's Classifier, 'module.' by DataParallel)
    without the wrapper's prefix, when that is what makes them the model's keys."""
    for prefix in ("model.", "module."):
        if state and all(k.startswith(prefix) for k in state) and not any(k in own for k in state):
            return {k[len(prefix):]: v for k, v in state.items()}
    return state


def read_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a .safetensors or torch checkpoint (unwrapped from 'state_dict' / 'model' keys)."""
    path = Path(path)
    if not path.is_file():
        raise ComptkError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any failure to parse is the file's fault
        raise ComptkError(f"cannot read weights file {path}: {exc}") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ComptkError(f"weights file {path}: holds a {type(state).__name__}, not a dict of tensors")
    return {k: v for k, v in state.items() if torch.is_tensor(v)}


def check_weights_loaded(model: nn.Module, path: str | Path, loaded: set[str]) -> None:
    """Log how many of the model's tensors came from the weights file; fewer than MIN_LOADED_SHARE of
    those outside the classifier head (BatchNorm's step counters not counted) is an error naming the
    counts and some keys not loaded: a file of another model would otherwise train as if from scratch."""
    own = model.state_dict()
    head = _head_keys(model)
    body = [k for k in own if k not in head and not k.endswith("num_batches_tracked")]
    n_body = sum(k in loaded for k in body)
    name = type(model).__name__
    if not loaded or n_body < MIN_LOADED_SHARE * len(body):
        missing = [k for k in body if k not in loaded]
        raise ComptkError(
            f"weights file {path}: only {n_body} of model {name}'s {len(body)} tensors outside the classifier head "
            f"fit (at least {MIN_LOADED_SHARE:.0%} needed; e.g. not loaded: {', '.join(missing[:3])}); is it a "
            f"checkpoint of another model or size?"
        )
    said = (str(path), name, n_body, len(body))
    if said not in _WEIGHTS_SAID:  # the model is built once to check the run, then once per fold: said once
        _WEIGHTS_SAID.add(said)
        # some of the body left as initialised (a checkpoint of another size, or partly another model): a warning
        log.log(logging.WARNING if n_body < len(body) else logging.INFO,
                "weights %s: loaded %d of model %s's %d tensors outside the classifier head (head: %d of %d)", path,
                n_body, name, len(body), len(head & loaded), len(head))


_WEIGHTS_SAID: set[tuple] = set()


def _fingerprint(tensor: torch.Tensor) -> tuple:
    """Shape and exact values (floats compared as float32, as a half-precision file loads into a float32 model)."""
    t = tensor.detach().cpu()
    t = t.float() if t.is_floating_point() else t
    return tuple(t.shape), hashlib.sha1(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()).digest()


def loaded_by_value(model: nn.Module, state: dict[str, torch.Tensor]) -> set[str]:
    """The model's state keys whose tensors hold the file's values: what a loader (timm's, which may
    rename keys on the way) actually took from the file. A tensor equal to the file's tensor of the
    same key counts; under another key only a non-constant one does (a fresh model's all-zeros and
    all-ones BatchNorm tensors equal any such tensor of the file without loading anything)."""
    def constant(t: torch.Tensor) -> bool:
        return t.numel() > 1 and bool((t == t.reshape(-1)[0]).all())

    prints = {k: _fingerprint(v) for k, v in state.items()}
    renamed = {p for k, p in prints.items() if not constant(state[k])}
    return {k for k, v in model.state_dict().items()
            if (k in prints and _fingerprint(v) == prints[k]) or _fingerprint(v) in renamed}


def load_weights_file(model: nn.Module, path: str | Path) -> None:
    """Load a local checkpoint, skipping tensors whose shape differs (e.g. another head); keys saved
    with a wrapper's prefix ('model.', 'module.') are matched without it. check_weights_loaded
    reports the count and refuses a file of which little fits."""
    own = model.state_dict()
    state = _strip_wrapper(read_weights_file(path), own)
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    check_weights_loaded(model, path, set(usable))
    model.load_state_dict(usable, strict=False)


def _small(widths: tuple[int, ...], name: str, pretrained: bool, pretrained_cfg_overlay: dict | None,
           **kwargs) -> SmallResNet:
    kwargs = {k: v for k, v in kwargs.items() if k not in ("pretrained_cfg", "cache_dir")}
    model = SmallResNet(widths=widths, **kwargs)
    if pretrained:
        file = (pretrained_cfg_overlay or {}).get("file")
        if not file:
            raise ComptkError(f"{name} has no published weights: pass a weights file or pretrained = false")
        load_weights_file(model, file)
    return model


@register_model
def small_resnet(pretrained: bool = False, pretrained_cfg_overlay: dict | None = None, **kwargs) -> SmallResNet:
    """Widths 16-32-64: about 0.12 M parameters; made for small images (28-64 px) on a CPU."""
    return _small((16, 32, 64), "small_resnet", pretrained, pretrained_cfg_overlay, **kwargs)


@register_model
def small_resnet_wide(pretrained: bool = False, pretrained_cfg_overlay: dict | None = None,
                      **kwargs) -> SmallResNet:
    """Widths 32-64-128: about 0.46 M parameters and 4x the compute of small_resnet."""
    return _small((32, 64, 128), "small_resnet_wide", pretrained, pretrained_cfg_overlay, **kwargs)


class FactorizedHeads(nn.Module):
    """One classification head per factor (e.g. mask 3, gender 2, age band 3) whose classes combine into the
    product classes in mixed-radix order (class = (m * 2 + g) * 3 + a): the logit of a product class is the sum
    of its factors' logits. A softmax over the product classes is then exactly the product of the heads'
    softmaxes, and cross-entropy on it is the sum of the heads' cross-entropies: training and predicting the
    product classes trains and combines the heads. The model itself outputs sum(sizes) logits."""

    def __init__(self, model: nn.Module, sizes: tuple[int, ...]) -> None:
        super().__init__()
        self.model = model
        self.sizes = tuple(sizes)
        self.pretrained_cfg = getattr(model, "pretrained_cfg", None)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        combine = torch.zeros(sum(sizes), int(np.prod(sizes)))
        for c, digits in enumerate(itertools.product(*(range(s) for s in sizes))):
            combine[offsets + np.array(digits), c] = 1
        self.register_buffer("combine", combine, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        return logits @ self.combine.to(logits.dtype)

    def get_classifier(self) -> nn.Module:
        return self.model.get_classifier()


def create_model(cfg: TrainConfig, n_classes: int) -> nn.Module:
    """The timm model named in cfg, with n_classes outputs and the requested weights
    (``heads = "3x2x3"``: factorised heads whose product is n_classes, see FactorizedHeads)."""
    if not cfg.heads:
        return _create_timm_model(cfg, n_classes)
    sizes = parse_heads(cfg.heads)
    if int(np.prod(sizes)) != n_classes:
        raise ComptkError(f"setting heads = '{cfg.heads}' makes {int(np.prod(sizes))} classes, but the competition "
                          f"has {n_classes}")
    return FactorizedHeads(_create_timm_model(cfg, sum(sizes)), sizes)


def check_heads_classes(cfg: TrainConfig, classes: tuple[str, ...], where: str) -> None:
    """Factorised heads read class index c as mixed-radix digits, so numbered classes must be in numeric
    order: classes "0".."17" derived from a CSV sort as text ("0", "1", "10", ...) unless declared."""
    if cfg.heads and all(c.isdigit() for c in classes) and list(classes) != sorted(classes, key=int):
        raise ComptkError(f"{where}: heads = '{cfg.heads}' needs the classes in numeric order, but they are "
                          f"{', '.join(classes[:4])}, ...; declare classes = [\"0\", \"1\", \"2\", ...] in the declaration")


def _create_timm_model(cfg: TrainConfig, n_classes: int) -> nn.Module:
    if not timm.is_model(cfg.model) and not cfg.model.startswith("hf-hub:"):
        raise ComptkError(
            f"unknown model '{cfg.model}'{did_you_mean(cfg.model, timm.list_models())}; "
            f"`python -c 'import timm; print(timm.list_models(\"*resnet*\"))'` lists timm's names"
        )
    pretrained = cfg.pretrained or bool(cfg.weights)
    overlay = {"file": str(Path(cfg.weights).resolve())} if cfg.weights else None
    if cfg.weights and not Path(cfg.weights).is_file():
        raise ComptkError(f"weights file not found: {cfg.weights}")
    if pretrained and overlay is None:  # the local cache, else fail at once when the hub cannot be reached
        overlay = require_pretrained(cfg.model)
    # only when set: 0 keeps the model's own default
    regularise = {key: getattr(cfg, key) for key in ("drop_rate", "drop_path_rate") if getattr(cfg, key) > 0}
    try:
        model = timm.create_model(
            cfg.model, pretrained=pretrained, num_classes=n_classes, pretrained_cfg_overlay=overlay, **regularise
        )
    except ComptkError:
        raise
    except TypeError as exc:
        if regularise and any(key in str(exc) for key in regularise):
            raise ComptkError(
                f"model '{cfg.model}' does not take {' / '.join(regularise)}: {exc}; leave them at 0 for it"
            ) from None
        raise
    except Exception as exc:
        if not pretrained:
            raise
        if cfg.weights:  # timm's loader is strict beyond the head: load what fits, and refuse a file of another model
            model = timm.create_model(cfg.model, pretrained=False, num_classes=n_classes, **regularise)
            load_weights_file(model, cfg.weights)
            return model
        raise ComptkError(
            f"cannot load pretrained weights for '{cfg.model}' ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); with no network, put them in the "
            f"Hugging Face cache, pass --weights FILE, or use --no-pretrained"
        ) from None
    if cfg.weights and not isinstance(model, SmallResNet):  # small_resnet's loader checks it itself
        # timm drops a mismatched head and then loads leniently: check what it took from the file
        check_weights_loaded(model, cfg.weights, loaded_by_value(model, read_weights_file(cfg.weights)))
    return model


def normalization(model: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std the model's weights expect (its pretrained config, else ImageNet's)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return tuple(cfg.get("mean", (0.485, 0.456, 0.406))), tuple(cfg.get("std", (0.229, 0.224, 0.225)))


def set_backbone_frozen(model: nn.Module, frozen: bool) -> None:
    """Freeze (or unfreeze) every parameter except the classifier head's (timm's
    ``get_classifier()``); a frozen backbone also keeps its BatchNorm statistics (eval mode)."""
    inner = model.model if isinstance(model, Classifier) else model
    head = inner.get_classifier()
    head_params = {id(p) for p in head.parameters()}
    if not head_params:
        raise ComptkError(f"model {type(inner).__name__} has no classifier head to train alone; use freeze_epochs = 0")
    for param in inner.parameters():
        if id(param) not in head_params:
            param.requires_grad_(not frozen)
    if frozen:
        head_modules = set(head.modules())
        for module in inner.modules():
            if module not in head_modules:
                module.eval()


class Classifier(nn.Module):
    """Takes float images in [0, 1] (N, 3, H, W), normalises them and runs the model."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        mean, std = normalization(model)
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)
