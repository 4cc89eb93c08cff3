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
        raise ValueError(f'group regex {group_regex!r} does not match sample {stem!r}')
    return m.group(1) if m.groups() else m.group(0)


def _groups(stems: Sequence[str], group_regex: Optional[str]) -> Dict[str, List[str]]:
    groups: Dict[str, List[str]] = defaultdict(list)
    for s in stems:
        groups[group_of(s, group_regex)].append(s)
    return dict(groups)


def split_by_groups(
    stems: Sequence[str], val_fraction: float = 0.25, group_regex: Optional[str] = None, seed: int = 0
) -> Tuple[List[str], List[str]]:
    """(train, val): whole groups go to val until it holds about `val_fraction` of the samples."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f'val_fraction must be in (0, 1), got {val_fraction}')
    if len(set(stems)) != len(stems):
        raise ValueError('duplicate stems in the sample list')
    groups = _groups(stems, group_regex)
    if len(groups) < 2:
        raise ValueError(f'need at least 2 groups to split, found {len(groups)}')
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


def kfold_splits(
    stems: Sequence[str], k: int, group_regex: Optional[str] = None, seed: int = 0
) -> List[Tuple[List[str], List[str]]]:
    """k (train, val) pairs; every group is in exactly one val fold, folds balanced by size."""
    groups = _groups(stems, group_regex)
    if not 2 <= k <= len(groups):
        raise ValueError(f'k must be between 2 and the number of groups ({len(groups)}), got {k}')
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


# Split roles that must never share a sample (or a group); per prefix, so fold<i>_val is checked
# against fold<i>_test. Longest role first: 'trainval' also ends in 'val'.
LEAK_PAIRS: Tuple[Tuple[str, str], ...] = (('train', 'val'), ('train', 'test'), ('val', 'test'), ('trainval', 'test'))
_ROLES = ('trainval', 'train', 'val', 'test')


def split_role(name: str) -> Optional[Tuple[str, str]]:
    """(prefix, role) of a split name: 'val' -> ('', 'val'), 'fold3_test' -> ('fold3_', 'test');
    None for names without a role ('all', 'extra')."""
    for role in _ROLES:
        if name == role or name.endswith('_' + role):
            return name[: -len(role)], role
    return None


def disjoint_pairs(names: Sequence[str]) -> List[Tuple[str, str]]:
    """The pairs among ``names`` that must be disjoint (LEAK_PAIRS within one prefix)."""
    by_prefix: Dict[str, Dict[str, str]] = defaultdict(dict)
    for n in names:
        parsed = split_role(n)
        if parsed is not None:
            by_prefix[parsed[0]][parsed[1]] = n
    return [(roles[a], roles[b]) for roles in by_prefix.values() for a, b in LEAK_PAIRS if a in roles and b in roles]


def check_split_leaks(data_root: str | Path, split: str) -> None:
    """Raise ValueError when ``split`` or a split of its fold overlaps one it must not (e.g. val
    and test share an image): model selection on val would then read test images.

    Only the split files themselves are read (cheap enough for every dataset start).
    """
    folder = Path(data_root) / 'splits'
    parsed = split_role(split)
    if parsed is None:
        return
    prefix = parsed[0]
    splits = {}
    for role in _ROLES:
        f = folder / f'{prefix}{role}.txt'
        if f.is_file():
            splits[f'{prefix}{role}'] = {
                ln.strip() for ln in f.read_text().splitlines() if ln.strip() and not ln.strip().startswith('#')
            }
    for a, b in disjoint_pairs(list(splits)):
        shared = sorted(splits[a] & splits[b])
        if shared:
            shown = ', '.join(shared[:5]) + (' ...' if len(shared) > 5 else '')
            why = 'model selection would read test images' if b.endswith('test') else 'they must be disjoint'
            raise ValueError(
                f'{folder}: {a}.txt and {b}.txt share {len(shared)} sample(s) ({shown}); {why} '
                '(tools/prepare_dataset.py and tools/make_splits.py write disjoint splits)'
            )


def write_split_files(data_root: str | Path, splits: Mapping[str, Sequence[str]]) -> None:
    """Write data_root/splits/<name>.txt, one stem per line."""
    folder = Path(data_root) / 'splits'
    folder.mkdir(parents=True, exist_ok=True)
    for name, stems in splits.items():
        (folder / f'{name}.txt').write_text(''.join(f'{s}\n' for s in stems))
