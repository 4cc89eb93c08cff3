"""Published train/test protocols of the public vessel sets, and the validation split taken from
their training part.

A protocol fixes which images are test images; nothing chosen during training (best
checkpoint, threshold) may read them. The validation split is therefore always carved out of
the protocol's training part: seeded, group-aware, ``val_fraction`` of the training images.

Split files written (``splits/<name>.txt``):

* ``trainval``: the protocol's whole training part; ``train`` = ``trainval`` minus ``val``;
  ``val``: model selection; ``test``: the held-out images, read only by ``tools/test.py``.
* k-fold protocols (STARE leave-one-out, XCAD) also write ``fold<i>_{trainval,train,val,test}``;
  the top-level ``train``/``val``/``test`` are then fold 0.
* ``all``: every sample.

Protocols (``PROTOCOLS``; the first of each data set is its default):

* ``drive``: the official 20 training (21-40) / 20 test (01-20) images.
* ``chase_20_8``: CHASE_DB1 sorted by name, the first 20 images (children 01-10) train, the
  last 8 (children 11-14) test. ``chase_8_20``: the first 8 (children 01-04) train, the last 20
  test. Both keep a child's two eyes on one side.
* ``stare_10_10``: STARE sorted by number, the first 10 train, the last 10 test.
  ``stare_loo``: leave-one-out, 20 folds of one test image each.
* ``hrf_15_30``: images 01-05 of each class (healthy h, glaucoma g, diabetic retinopathy dr)
  train (15), images 06-15 of each class test (30).
* ``fives``: the official ``train`` (600) / ``test`` (200) folders.
* ``xcad_kfold``: k-fold (default k = 5, seeded) over the labelled part (its ``test`` folder).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .splits import split_by_groups, write_split_files

DEFAULT_VAL_FRACTION = 0.2


@dataclass(frozen=True)
class Protocol:
    name: str
    dataset: str
    description: str
    # (records) -> (train stems, test stems) for a fixed split, or a list of folds.
    assign: Callable[[Sequence[Mapping], int, int], List[Tuple[List[str], List[str]]]]
    kfold: bool = False


def _official(records: Sequence[Mapping], k: int, seed: int) -> List[Tuple[List[str], List[str]]]:
    train = sorted(r['stem'] for r in records if r.get('official_split') == 'train')
    test = sorted(r['stem'] for r in records if r.get('official_split') == 'test')
    return [(train, test)]


def _first_n(n_train: int, n_total: int) -> Callable:
    """The first ``n_train`` of the sorted stems train, the rest test; the set must be complete
    (``n_total`` images): on a partial copy the published split would silently shift."""

    def assign(records: Sequence[Mapping], k: int, seed: int) -> List[Tuple[List[str], List[str]]]:
        stems = sorted(r['stem'] for r in records)
        if len(stems) != n_total:
            raise ValueError(f'this protocol needs the complete set of {n_total} images, found {len(stems)}')
        return [(stems[:n_train], stems[n_train:])]

    return assign


def _hrf(records: Sequence[Mapping], k: int, seed: int) -> List[Tuple[List[str], List[str]]]:
    train, test = [], []
    for r in records:
        m = re.search(r'(\d+)_(h|g|dr)$', r['stem'])
        if m is None:
            raise ValueError(f'HRF sample {r["stem"]!r} is not named NN_{{h,g,dr}}')
        (train if int(m.group(1)) <= 5 else test).append(r['stem'])
    if len(records) != 45:
        raise ValueError(f'hrf_15_30 needs the complete set of 45 images, found {len(records)}')
    return [(sorted(train), sorted(test))]


def _kfold(default_k: Optional[int]) -> Callable:
    """Folds of whole groups; ``default_k=None`` is leave-one-group-out."""

    def assign(records: Sequence[Mapping], k: int, seed: int) -> List[Tuple[List[str], List[str]]]:
        groups: Dict[str, List[str]] = {}
        for r in records:
            groups.setdefault(r.get('group') or r['stem'], []).append(r['stem'])
        names = sorted(groups)
        n_folds = len(names) if default_k is None else (k or default_k)
        if not 2 <= n_folds <= len(names):
            raise ValueError(f'k must be between 2 and the number of groups ({len(names)}), got {n_folds}')
        order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
        if default_k is None:
            order = names  # leave-one-out: fold i holds the i-th image, no shuffle needed
        folds: List[List[str]] = [[] for _ in range(n_folds)]
        for i, g in enumerate(order):
            folds[i % n_folds] += groups[g]
        all_stems = sorted(r['stem'] for r in records)
        return [(sorted(set(all_stems) - set(f)), sorted(f)) for f in folds]

    return assign


PROTOCOLS: Dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol(
            'drive', 'drive', 'DRIVE official split: 20 training images (21-40) / 20 test images (01-20)', _official
        ),
        Protocol(
            'chase_20_8',
            'chase_db1',
            'CHASE_DB1 sorted by name: first 20 images (children 01-10) train, last 8 (children 11-14) test',
            _first_n(20, 28),
        ),
        Protocol(
            'chase_8_20',
            'chase_db1',
            'CHASE_DB1 sorted by name: first 8 images (children 01-04) train, last 20 (children 05-14) test',
            _first_n(8, 28),
        ),
        Protocol(
            'stare_10_10', 'stare', 'STARE sorted by number: first 10 images train, last 10 test', _first_n(10, 20)
        ),
        Protocol(
            'stare_loo',
            'stare',
            'STARE leave-one-out: 20 folds, fold i tests the i-th image (sorted)',
            _kfold(None),
            kfold=True,
        ),
        Protocol(
            'hrf_15_30',
            'hrf',
            'HRF: images 01-05 of each class (h, g, dr) train (15), images 06-15 of each class test (30)',
            _hrf,
        ),
        Protocol('fives', 'fives', 'FIVES official folders: train (600) / test (200)', _official),
        Protocol(
            'xcad_kfold',
            'xcad',
            'XCAD labelled part (its test/ folder): seeded k-fold over images',
            _kfold(5),
            kfold=True,
        ),
    )
}


def default_protocol(dataset: str) -> str:
    """The first protocol listed for ``dataset``."""
    for p in PROTOCOLS.values():
        if p.dataset == dataset:
            return p.name
    raise KeyError(f'no protocol for data set {dataset!r}')


def protocols_of(dataset: str) -> List[str]:
    return [p.name for p in PROTOCOLS.values() if p.dataset == dataset]


def _with_val(
    train: Sequence[str], groups: Mapping[str, str], val_fraction: float, seed: int
) -> Tuple[List[str], List[str]]:
    """(train, val) of a training part: whole groups to val, seeded (never test images)."""
    # Splitting on tagged "group\x1fstem" names keeps group members together.
    tagged = [f'{groups[s]}\x1f{s}' for s in train]
    fit, val = split_by_groups(tagged, val_fraction, r'^([^\x1f]*)\x1f', seed)
    return sorted(t.split('\x1f', 1)[1] for t in fit), sorted(t.split('\x1f', 1)[1] for t in val)


def protocol_splits(
    dataset: str,
    records: Sequence[Mapping],
    protocol: Optional[str] = None,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    seed: int = 0,
    k: Optional[int] = None,
) -> Tuple[Dict[str, List[str]], Dict[str, object]]:
    """(split name -> stems, protocol record for the manifest) for prepared ``records``
    (dicts with ``stem``, ``group``, ``official_split``)."""
    name = protocol or default_protocol(dataset)
    if name not in PROTOCOLS or PROTOCOLS[name].dataset != dataset:
        raise KeyError(f'unknown protocol {name!r} for {dataset}; known: {protocols_of(dataset)}')
    proto = PROTOCOLS[name]
    if k is not None and not proto.kfold:
        raise ValueError(
            f'protocol {name!r} is not a k-fold protocol; k applies to '
            f'{[p.name for p in PROTOCOLS.values() if p.kfold]}'
        )
    groups = {r['stem']: r.get('group') or r['stem'] for r in records}
    folds = proto.assign(records, k or 0, seed)
    splits: Dict[str, List[str]] = {'all': sorted(groups)}
    for i, (trainval, test) in enumerate(folds):
        if not trainval or not test:
            raise ValueError(
                f'protocol {name!r} found no {"training" if not trainval else "test"} images; is the source complete?'
            )
        try:
            train, val = _with_val(trainval, groups, val_fraction, seed)
        except ValueError as exc:
            raise ValueError(
                f'protocol {name!r}: cannot take val from the {len(trainval)} training image(s): {exc}'
            ) from exc
        parts = {'trainval': trainval, 'train': train, 'val': val, 'test': sorted(test)}
        if proto.kfold:
            splits.update({f'fold{i}_{p}': v for p, v in parts.items()})
        if i == 0:
            splits.update(parts)
    record = {
        'name': name,
        'description': proto.description,
        'val_fraction': val_fraction,
        'seed': seed,
        'val_from': "trainval (the protocol's training part), whole groups",
        'n_folds': len(folds) if proto.kfold else None,
        'counts': {k_: len(v) for k_, v in splits.items() if not k_.startswith('fold')},
    }
    return splits, record


def protocol_markdown(record: Mapping[str, object]) -> str:
    """splits/PROTOCOL.md: which protocol made these split files, in words."""
    lines = [
        f'# Protocol: {record["name"]}',
        '',
        str(record['description']),
        '',
        f'- validation: {record["val_fraction"]:.0%} of the training part (`trainval`), whole '
        f'groups, seed {record["seed"]}; `train` = `trainval` minus `val`',
        '- `test` is never read by training or model selection (best checkpoint, threshold)',
    ]
    if record.get('n_folds'):
        lines.append(
            f'- {record["n_folds"]} folds: `fold<i>_{{trainval,train,val,test}}`; `train`/`val`/`test` are fold 0'
        )
    lines += ['', '| split | images |', '|---|---|']
    lines += [f'| {k} | {v} |' for k, v in dict(record['counts']).items()]
    return '\n'.join(lines) + '\n'


def write_protocol(data_root: str | Path, splits: Mapping[str, Sequence[str]], record: Mapping[str, object]) -> None:
    """Write the split files and splits/PROTOCOL.md; split files of an earlier protocol that
    this one does not write are removed (PROTOCOL.md must describe every split file there)."""
    folder = Path(data_root) / 'splits'
    if folder.is_dir():
        for old in folder.glob('*.txt'):
            if old.stem not in splits:
                old.unlink()
    write_split_files(data_root, splits)
    (folder / 'PROTOCOL.md').write_text(protocol_markdown(record))


def read_protocol(data_root: str | Path) -> Optional[Dict[str, object]]:
    """The protocol record of a prepared folder (manifest.json), or None when it has none."""
    path = Path(data_root) / 'manifest.json'
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f'{path}: invalid JSON ({exc})') from exc
    proto = manifest.get('protocol')
    return dict(proto, dataset=manifest.get('source')) if isinstance(proto, dict) else None
