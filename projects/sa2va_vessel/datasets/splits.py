"""Train/val splits that never put one group (patient, eye pair, ...) on both sides.

A group is what `group_regex` captures from a sample stem (its first capture group, or the
whole match); without a regex every stem is its own group. Groups, not samples, are shuffled
(seeded) and assigned, so e.g. CHASE_DB1's left and right eye of a child stay together.
"""
from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np


def group_of(stem: str, group_regex: Optional[str]) -> str:
    """The group of `stem`; a stem the regex does not match is an error (it could leak)."""
    if group_regex is None:
        return stem
    m = re.search(group_regex, stem)
    if m is None:
        raise ValueError(f"group regex {group_regex!r} does not match sample {stem!r}")
    return m.group(1) if m.groups() else m.group(0)


def _groups(stems: Sequence[str], group_regex: Optional[str]) -> Dict[str, List[str]]:
    groups: Dict[str, List[str]] = defaultdict(list)
    for s in stems:
        groups[group_of(s, group_regex)].append(s)
    return dict(groups)


def split_by_groups(stems: Sequence[str], val_fraction: float = 0.25, group_regex: Optional[str] = None,
                    seed: int = 0) -> Tuple[List[str], List[str]]:
    """(train, val): whole groups go to val until it holds about `val_fraction` of the samples."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if len(set(stems)) != len(stems):
        raise ValueError("duplicate stems in the sample list")
    groups = _groups(stems, group_regex)
    if len(groups) < 2:
        raise ValueError(f"need at least 2 groups to split, found {len(groups)}")
    names = sorted(groups)
    order = np.random.default_rng(seed).permutation(len(names))
    target = val_fraction * len(stems)
    val: List[str] = []
    for i in order:
        if len(val) >= target or len(val) + len(groups[names[i]]) >= len(stems):
            break
        val += groups[names[i]]
    val_set = set(val)
    return sorted(s for s in stems if s not in val_set), sorted(val)


def kfold_splits(stems: Sequence[str], k: int, group_regex: Optional[str] = None,
                 seed: int = 0) -> List[Tuple[List[str], List[str]]]:
    """k (train, val) pairs; every group is in exactly one val fold, folds balanced by size."""
    groups = _groups(stems, group_regex)
    if not 2 <= k <= len(groups):
        raise ValueError(f"k must be between 2 and the number of groups ({len(groups)}), got {k}")
    names = sorted(groups)
    rng = np.random.default_rng(seed)
    names = [names[i] for i in rng.permutation(len(names))]
    names.sort(key=lambda g: -len(groups[g]))  # stable: big groups first, random among equals
    folds: List[List[str]] = [[] for _ in range(k)]
    for g in names:
        smallest = min(range(k), key=lambda f: (len(folds[f]), f))
        folds[smallest] += groups[g]
    out = []
    for f in range(k):
        val = set(folds[f])
        out.append((sorted(s for s in stems if s not in val), sorted(val)))
    return out


def groups_crossing(splits: Mapping[str, Sequence[str]], group_regex: Optional[str]) -> Dict[str, List[str]]:
    """{group: [split names]} for every group found in more than one split."""
    where: Dict[str, set] = defaultdict(set)
    for name, stems in splits.items():
        for s in stems:
            where[group_of(s, group_regex)].add(name)
    return {g: sorted(n) for g, n in where.items() if len(n) > 1}


def write_split_files(data_root: str | Path, splits: Mapping[str, Sequence[str]]) -> None:
    """Write data_root/splits/<name>.txt, one stem per line."""
    folder = Path(data_root) / "splits"
    folder.mkdir(parents=True, exist_ok=True)
    for name, stems in splits.items():
        (folder / f"{name}.txt").write_text("".join(f"{s}\n" for s in stems))
