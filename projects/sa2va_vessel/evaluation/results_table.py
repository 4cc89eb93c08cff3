"""The results table users compare with: per data set and split, every per-image score as
mean +- sd with a seeded bootstrap 95% interval, and the protocol named. CSV + markdown."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Mapping, Sequence

from .stats import DEFAULT_N_BOOT, mean_sd_ci

# Per-image scores of the table, in this order (higher is better except hd95 and Betti errors).
TABLE_SCORES: tuple[str, ...] = (
    'dice',
    'cldice',
    'iou',
    'sens',
    'spec',
    'precision',
    'acc',
    'roc_auc',
    'pr_auc',
    'hd95',
    'nsd',
    'betti0_error',
    'betti1_error',
)
UNITS = {'hd95': 'px'}
FIELDS = ('dataset', 'split', 'protocol', 'mode', 'threshold', 'metric', 'n', 'mean', 'sd', 'ci95_low', 'ci95_high')


def protocol_name(data_root: str | Path) -> str:
    """The split protocol of a data folder: manifest.json's, else PROTOCOL.md's heading."""
    from ..datasets.protocols import read_protocol

    record = read_protocol(data_root)
    if record is not None:
        return str(record['name'])
    note = Path(data_root) / 'splits' / 'PROTOCOL.md'
    if note.is_file():
        first = note.read_text().splitlines()[:1]
        if first and first[0].startswith('# Protocol:'):
            return first[0].split(':', 1)[1].strip()
    return 'unrecorded (no manifest.json protocol)'


def dataset_name(data_root: str | Path) -> str:
    """manifest.json's source name, else the folder name."""
    from ..datasets.protocols import read_protocol

    record = read_protocol(data_root)
    return str(record.get('dataset') or Path(data_root).name) if record else Path(data_root).name


def table_rows(
    per_image: Sequence[Mapping[str, object]],
    *,
    dataset: str,
    split: str,
    protocol: str,
    mode: str,
    threshold: float,
    scores: Sequence[str] = TABLE_SCORES,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
) -> list[dict]:
    """One row per score: n, mean, sd and the bootstrap 95% interval over the images."""
    rows = []
    for score in scores:
        values = [float('nan') if r.get(score) is None else float(r[score]) for r in per_image]
        s = mean_sd_ci(values, n_boot=n_boot, seed=seed)
        rows.append(
            {
                'dataset': dataset,
                'split': split,
                'protocol': protocol,
                'mode': mode,
                'threshold': threshold,
                'metric': score,
                'n': s['n'],
                'mean': s['mean'],
                'sd': s['sd'],
                'ci95_low': s['ci_low'],
                'ci95_high': s['ci_high'],
            }
        )
    return rows


def write_results_table(
    folder: str | Path,
    rows: Sequence[Mapping[str, object]],
    notes: Sequence[str] = (),
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
) -> tuple[Path, Path]:
    """``results_<dataset>_<split>.csv`` and ``.md`` in ``folder``; returns both paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    first = rows[0]
    stem = f'results_{first["dataset"]}_{first["split"]}'
    csv_path, md_path = folder / f'{stem}.csv', folder / f'{stem}.md'
    with open(csv_path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(FIELDS))
        writer.writeheader()
        writer.writerows({k: r[k] for k in FIELDS} for r in rows)

    def num(v: object) -> str:
        return 'n/a' if v is None or v != v else f'{float(v):.4f}'

    lines = [
        f'# {first["dataset"]} / {first["split"]} ({first["mode"]})',
        '',
        f'- protocol: {first["protocol"]}',
        f'- operating threshold: {first["threshold"]}',
        f'- mean +- sd over images; 95% CI: percentile bootstrap of the mean, {n_boot} resamples, seed {seed}',
        *[f'- {n}' for n in notes],
        '',
        '| metric | n | mean +- sd | 95% CI |',
        '|---|---|---|---|',
    ]
    for r in rows:
        unit = f' ({UNITS[r["metric"]]})' if r['metric'] in UNITS else ''
        lines.append(
            f'| {r["metric"]}{unit} | {r["n"]} | {num(r["mean"])} +- {num(r["sd"])} | '
            f'[{num(r["ci95_low"])}, {num(r["ci95_high"])}] |'
        )
    md_path.write_text('\n'.join(lines) + '\n')
    return csv_path, md_path
