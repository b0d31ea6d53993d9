"""Out-of-domain candidates from a finished run's models.

Each train row is embedded by the model of the fold where it was a validation row
(that model never trained on it) and scored by its mean cosine distance to its
``k`` nearest training rows of that fold, embedded by the same model. Test rows are
scored the same way by every fold's model and averaged. A row far from everything the
model learned from (a photo among drawings, a blank scan) scores high.

Embeddings are the model's pooled features before the classifier
(timm ``forward_head(forward_features(x), pre_logits=True)``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file

from .. import runs
from ..config import from_dict
from ..engine import resolve_device, to_input
from ..errors import ComptkError
from ..models import Classifier, create_model


def load_fold_model(paths: runs.RunPaths, fold: int, config: dict, n_classes: int) -> Classifier:
    """A fold's checkpoint in its model (built without pretrained weights: the checkpoint has them all)."""
    cfg = dataclasses.replace(from_dict(config, where=str(paths.config)), pretrained=False, weights="")
    model = Classifier(create_model(cfg, n_classes))
    checkpoint = paths.checkpoint(fold)
    if not checkpoint.is_file():
        raise ComptkError(f"run '{paths.name}': no checkpoint {checkpoint}; outliers need the fold models")
    model.load_state_dict(load_file(str(checkpoint)))
    return model.eval()


@torch.no_grad()
def embed(model: Classifier, images: np.ndarray, device: torch.device, batch_size: int = 256) -> np.ndarray:
    """L2-normalised pre-logit features (N, D) float32 of uint8 images (N, H, W, 3)."""
    model = model.to(device).eval()
    inner = model.model
    out = []
    for lo in range(0, len(images), batch_size):
        x = to_input(torch.from_numpy(np.ascontiguousarray(images[lo:lo + batch_size])), device)
        x = (x - model.mean) / model.std
        feats = inner.forward_head(inner.forward_features(x), pre_logits=True)
        out.append(torch.nn.functional.normalize(feats.flatten(1).float(), dim=1).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def knn_distance(queries: np.ndarray, reference: np.ndarray, k: int, batch: int = 2048) -> np.ndarray:
    """Mean cosine distance of each (normalised) query to its k nearest reference rows."""
    k = min(k, len(reference))
    out = np.empty(len(queries), dtype=np.float64)
    for lo in range(0, len(queries), batch):
        sims = queries[lo:lo + batch] @ reference.T
        top = np.partition(-sims, k - 1, axis=1)[:, :k]
        out[lo:lo + batch] = 1.0 + top.mean(axis=1)  # 1 - mean similarity
    return out


@dataclass(frozen=True)
class OutlierScores:
    train: np.ndarray  # (N_train,) NaN where the row's fold was not trained
    test: np.ndarray  # (N_test,)
    fence: float  # rows above this are candidates: Q3 + 3 IQR of the train scores (Tukey's far-out fence)


def outlier_scores(paths: runs.RunPaths, sidecar: dict, fold: np.ndarray, train_images: np.ndarray,
                   test_images: np.ndarray, *, k: int = 10, device: str = "auto") -> OutlierScores:
    dev = resolve_device("cpu" if device == "auto" and not torch.cuda.is_available() else device)
    n_classes = len(sidecar["classes"])
    train_scores = np.full(len(train_images), np.nan)
    test_scores = np.zeros(len(test_images))
    trained = runs.folds_trained(sidecar)
    for f in trained:
        model = load_fold_model(paths, f, sidecar["config"], n_classes)
        fit_rows, valid_rows = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        reference = embed(model, train_images[fit_rows], dev)
        train_scores[valid_rows] = knn_distance(embed(model, train_images[valid_rows], dev), reference, k)
        test_scores += knn_distance(embed(model, test_images, dev), reference, k)
    test_scores /= max(len(trained), 1)
    finite = train_scores[np.isfinite(train_scores)]
    q1, q3 = np.percentile(finite, [25, 75]) if len(finite) else (0.0, 0.0)
    return OutlierScores(train_scores, test_scores, float(q3 + 3 * (q3 - q1)))


def outlier_table(scores: OutlierScores, train_ids: np.ndarray, test_ids: np.ndarray, train_labels: np.ndarray,
                  classes: tuple[str, ...], fold: np.ndarray, top: int) -> pd.DataFrame:
    """Candidates: every row above the fence, and at least the ``top`` highest-scoring train rows."""
    names = np.array(classes)
    frame = pd.concat([
        pd.DataFrame({"id": train_ids, "split": "train", "row": np.arange(len(train_ids)),
                      "given_label": names[train_labels], "fold": fold, "score": scores.train}),
        pd.DataFrame({"id": test_ids, "split": "test", "row": np.arange(len(test_ids)), "given_label": "",
                      "fold": -1, "score": scores.test}),
    ], ignore_index=True).dropna(subset=["score"])
    frame["above_fence"] = frame["score"] > scores.fence
    frame = frame.sort_values("score", ascending=False, kind="stable")
    top_train = frame[frame["split"] == "train"].head(top).index
    keep = frame["above_fence"] | frame.index.isin(top_train)
    return frame[keep].reset_index(drop=True)
