"""Exact and near duplicates among train and test images, and the groups they form.

Exact: same decoded pixels (sha256 of the RGB array; a re-encoded copy matches).
Near: perceptual hashes within ``max_distance`` bits, confirmed by the correlation of
the 32x32 grey versions (``min_similarity``, after removing mean and scale, so brightness
and contrast changes do not count). The hash alone cannot tell a re-encoded copy from
a look-alike: on Fashion-MNIST the nearest other image is within 2 bits for half the
rows, while a JPEG re-encode (quality 90) keeps a correlation of 0.995 or more, which
only ~1% of rows reach with a different image. Shifted or cropped copies are not
near duplicates here (a 1-pixel shift of a 28 px image moves pHash by ~14 bits).

The hash search is multi-index hashing: split the 64 bits into ``max_distance + 1``
chunks; two hashes within ``max_distance`` bits agree exactly on at least one chunk
(pigeonhole), so only rows sharing a chunk value are compared. The work grows with the
number of rows sharing chunk values, not with N^2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .scan import Scan

BITS = 64


def popcount64(x: np.ndarray) -> np.ndarray:
    """Number of set bits of each uint64."""
    return np.unpackbits(np.ascontiguousarray(x, dtype=np.uint64).view(np.uint8).reshape(-1, 8), axis=1).sum(
        axis=1, dtype=np.int64)


def _chunks(max_distance: int) -> list[tuple[int, int]]:
    """(shift, width) of max_distance + 1 disjoint bit chunks covering 64 bits."""
    n = max_distance + 1
    widths = [BITS // n + (1 if i < BITS % n else 0) for i in range(n)]
    starts = np.cumsum([0] + widths[:-1])
    return [(int(s), int(w)) for s, w in zip(starts, widths)]


def near_pairs(hashes: np.ndarray, max_distance: int, *, valid: np.ndarray | None = None,
               batch: int = 2_000_000) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i < j) of hashes within ``max_distance`` bits, and their distances.

    Returns (pairs (P, 2) int64 sorted, distances (P,) int64)."""
    if not 0 <= max_distance < 32:
        raise ValueError(f"max_distance must be in 0..31, got {max_distance}")
    hashes = np.asarray(hashes, dtype=np.uint64)
    rows = np.arange(len(hashes)) if valid is None else np.flatnonzero(valid)
    found: list[np.ndarray] = []
    for shift, width in _chunks(max_distance):
        key = (hashes[rows] >> np.uint64(shift)) & np.uint64((1 << width) - 1)
        order = np.argsort(key, kind="stable")
        sorted_key, sorted_rows = key[order], rows[order]
        starts = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]])
        sizes = np.diff(np.r_[starts, len(sorted_key)])
        end = np.repeat(starts + sizes, sizes)  # one past the last position of each row's bucket
        position = np.arange(len(sorted_key))
        live = position[end - position > 1]
        offset = 1
        while len(live):
            # pairs (p, p + offset) inside one bucket, in slices of at most `batch`
            for lo in range(0, len(live), batch):
                p = live[lo:lo + batch]
                a, b = sorted_rows[p], sorted_rows[p + offset]
                close = popcount64(hashes[a] ^ hashes[b]) <= max_distance
                if close.any():
                    found.append(np.stack([np.minimum(a, b)[close], np.maximum(a, b)[close]], axis=1))
            offset += 1
            live = live[end[live] - live > offset]
    if not found:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.int64)
    pairs = np.unique(np.concatenate(found), axis=0)  # a pair can match on several chunks
    return pairs, popcount64(hashes[pairs[:, 0]] ^ hashes[pairs[:, 1]])


def exact_pairs(keys: np.ndarray) -> np.ndarray:
    """Pairs linking each row with a non-empty key to the first row of the same key (a star:
    n - 1 pairs per group of n, so a thousand blank images do not give half a million pairs)."""
    frame = pd.DataFrame({"key": keys, "row": np.arange(len(keys))})
    frame = frame[frame["key"] != ""]
    first = frame.groupby("key", sort=False)["row"].transform("min").to_numpy()
    rows = frame["row"].to_numpy()
    keep = rows != first
    return np.stack([first[keep], rows[keep]], axis=1).astype(np.int64)


@dataclass(frozen=True)
class Duplicates:
    pairs: pd.DataFrame  # row_a, row_b (positions in train+test), kind (exact|near), distance, similarity
    groups: np.ndarray  # component id of each row (train rows first, then test rows)
    group_size: np.ndarray  # size of each row's component (1 = no duplicate)


def pair_similarity(grey: np.ndarray, pairs: np.ndarray, batch: int = 100_000) -> np.ndarray:
    """Correlation of the two images of each pair (1 = same up to brightness and contrast).
    Two flat images (one value each) count as 1: there is no structure to compare."""
    out = np.empty(len(pairs), dtype=np.float64)
    for lo in range(0, len(pairs), batch):
        a = grey[pairs[lo:lo + batch, 0]].reshape(-1, grey[0].size).astype(np.float32)
        b = grey[pairs[lo:lo + batch, 1]].reshape(-1, grey[0].size).astype(np.float32)
        a -= a.mean(axis=1, keepdims=True)
        b -= b.mean(axis=1, keepdims=True)
        na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
        sim = (a * b).sum(axis=1) / np.maximum(na * nb, 1e-6)
        out[lo:lo + batch] = np.where((na < 1e-3) & (nb < 1e-3), 1.0, sim)
    return out


def find_duplicates(scan: Scan, *, max_distance: int = 6, min_similarity: float = 0.99) -> Duplicates:
    """Exact pairs (same pixels) and confirmed near pairs among all rows of ``scan``."""
    exact = exact_pairs(scan.pixel_sha)
    near, distance = near_pairs(scan.phash, max_distance, valid=scan.readable)
    similarity = pair_similarity(scan.grey32, near)
    table = pd.DataFrame({"row_a": near[:, 0], "row_b": near[:, 1], "distance": distance,
                          "similarity": similarity.astype(np.float64)})
    table = table[table["similarity"] >= min_similarity]
    # exact pairs the hash search may have missed (flat images, a group's star pairs) are added
    extra = pd.DataFrame({"row_a": exact[:, 0], "row_b": exact[:, 1],
                          "distance": popcount64(scan.phash[exact[:, 0]] ^ scan.phash[exact[:, 1]]),
                          "similarity": 1.0})
    table = pd.concat([table, extra]).drop_duplicates(["row_a", "row_b"], keep="first")
    a, b = table["row_a"].to_numpy(), table["row_b"].to_numpy()
    table["kind"] = np.where(scan.pixel_sha[a] == scan.pixel_sha[b], "exact", "near")
    table = table.sort_values(["row_a", "row_b"]).reset_index(drop=True)
    n = len(scan)
    graph = coo_matrix((np.ones(len(table)), (table["row_a"], table["row_b"])), shape=(n, n))
    _, groups = connected_components(graph, directed=False)
    group_size = np.bincount(groups)[groups]
    return Duplicates(table, groups.astype(np.int64), group_size.astype(np.int64))
