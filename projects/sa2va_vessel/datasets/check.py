"""Sanity checks of a canonical data folder before training on it.

Files are found by files.py and masks judged by mask_validation.py, the dataset's own
resolver and rules, so the checker and the loader agree on every file.
Errors: missing or unreadable files, duplicate stems (s1.png beside s1.tif), images above
PIL's pixel limit, image/mask/FOV size mismatch, every mask problem of mask_validation.py
(empty, all-vessel, mostly vessel, non-binary, alpha channel, 16-bit range), degenerate
annotation shapes (annotations/*.json, LabelMe), duplicate images (same pixels), a sample or
a sample or a group in two splits that must be disjoint
(train/val/test, val/test, trainval/test, per fold), split entries without files.
Warnings: masks or FOVs without an image, images without a FOV (when fov/ has files),
non-image files, images not listed in any split, non-binary masks when allowed.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

from .files import PairReport, index_folder, resolve_pairs
from .mask_validation import MaskRules, check_mask_values
from .progress import progress
from .readers import DataReadError, ImageTooLargeError, image_size, read_image, read_labelme, read_mask, read_mask_raw
from .splits import disjoint_pairs, group_of

ERROR, WARNING = 'error', 'warning'


@dataclass
class Issue:
    severity: str
    kind: str
    file: str
    detail: str


@dataclass
class CheckReport:
    n_samples: int = 0
    issues: List[Issue] = field(default_factory=list)

    def add(self, severity: str, kind: str, file: str | Path, detail: str) -> None:
        self.issues.append(Issue(severity, kind, str(file), detail))

    @property
    def n_errors(self) -> int:
        return sum(i.severity == ERROR for i in self.issues)

    def table(self, max_details: int = 20) -> str:
        """A summary table (kind, severity, count) followed by the first issue lines."""
        counts = Counter((i.kind, i.severity) for i in self.issues)
        lines = [
            f'{self.n_samples} samples checked, {self.n_errors} error(s), {len(self.issues) - self.n_errors} warning(s)'
        ]
        if counts:
            w = max(len(k) for k, _ in counts) + 2
            lines.append(f'{"check".ljust(w)}{"severity":<10}count')
            for (kind, sev), n in sorted(counts.items()):
                lines.append(f'{kind.ljust(w)}{sev:<10}{n}')
            lines.append('')
            for i in self.issues[:max_details]:
                lines.append(f'[{i.severity}] {i.kind}: {i.file}: {i.detail}')
            if len(self.issues) > max_details:
                lines.append(f'... {len(self.issues) - max_details} more')
        return '\n'.join(lines)


def _start(root: Path) -> Tuple[CheckReport, PairReport]:
    """An empty report and the resolved files of ``root`` (files.py: the dataset's resolver),
    with duplicate stems (errors) and unpaired files already reported."""
    report = CheckReport()
    files = resolve_pairs(root / 'images', root / 'masks', root / 'fov')
    n_images = len(index_folder(root / 'images').files)
    report.n_samples = n_images
    if not n_images and not files.duplicates:
        report.add(ERROR, 'no images', root / 'images', 'no image files found')
    for dup in files.duplicates:
        report.add(
            ERROR,
            'duplicate stem',
            dup.paths[0],
            f'{", ".join(str(p) for p in dup.paths)}: one file per stem (which one would be read?)',
        )
    for u in files.unpaired:
        if u.missing == 'mask':
            report.add(ERROR, 'missing mask', u.path, f'no masks/{u.stem}.* for this image')
        elif u.missing == 'fov':
            report.add(WARNING, 'missing FOV', u.path, 'fov/ has files but none for this image')
        else:
            report.add(WARNING, f'orphan {u.kind}', u.path, 'no image with this stem')
    for path in files.ignored:
        report.add(WARNING, 'not an image', path, 'no image extension; ignored by every tool')
    return report, files


def _all_stems(root: Path) -> Dict[str, Path]:
    """Every image stem of images/ (duplicates included, by their first file), for the split checks."""
    index = index_folder(root / 'images')
    stems = dict(index.files)
    stems.update({d.stem: d.paths[0] for d in index.duplicates})
    return stems


def quick_check(
    data_root: str | Path, group_regex: Optional[str] = None, allow_large_images: bool = False
) -> CheckReport:
    """The checks that need no pixel decoding, fast enough for every training start.

    Missing and unreadable files (by header), duplicate stems, unpaired files, images above the
    pixel limit, image/mask/FOV size mismatches, split entries without files, samples or groups
    crossing splits. ``check_dataset`` adds the pixel-level ones (mask content, duplicates by
    pixels, degenerate annotations).
    """
    root = Path(data_root)
    report, files = _start(root)
    for stem, sample in files.pairs.items():
        try:
            size = image_size(sample.image, allow_large_images)
        except ImageTooLargeError as exc:
            report.add(ERROR, 'image too large', sample.image, str(exc).split(': ', 1)[-1])
            continue
        except DataReadError:
            report.add(ERROR, 'unreadable', sample.image, 'not a readable image')
            continue
        for kind, path in (('mask', sample.mask), ('FOV', sample.fov)):
            if path is None:
                continue
            try:
                other = image_size(path, allow_large_images)
            except DataReadError:
                report.add(ERROR, 'unreadable', path, 'not a readable image')
                continue
            if other != size:
                report.add(ERROR, 'size mismatch', path, f'{kind} {other} vs image {size} (W, H)')
    _check_splits(root, _all_stems(root), group_regex, report)
    return report


def check_dataset(
    data_root: str | Path,
    group_regex: Optional[str] = None,
    mask_rules: Union[MaskRules, dict, None] = None,
    allow_large_images: bool = False,
) -> CheckReport:
    """Run every check on `data_root` (images/, masks/, optional fov/, splits/, annotations/).

    Masks are judged by mask_validation.py with `mask_rules` (the dataset's rules: an error
    here is a refused or skipped sample there).
    """
    root = Path(data_root)
    report, files = _start(root)
    hashes: Dict[str, List[str]] = defaultdict(list)
    images = index_folder(root / 'images').files
    for stem, img_path in progress(images.items(), desc='check', total=len(images), unit='img'):
        try:
            image = read_image(img_path, allow_large_images)
        except ImageTooLargeError as exc:
            report.add(ERROR, 'image too large', img_path, str(exc).split(': ', 1)[-1])
            continue
        except DataReadError as exc:
            report.add(ERROR, 'unreadable', img_path, str(exc))
            continue
        hashes[hashlib.sha256(image.tobytes() + str(image.shape).encode()).hexdigest()].append(stem)
        sample = files.pairs.get(stem)
        if sample is None:
            continue  # no mask: reported by _start
        fov = None
        if sample.fov is not None:
            try:
                fov = read_mask(sample.fov, allow_large_images)
            except DataReadError as exc:
                report.add(ERROR, 'unreadable', sample.fov, str(exc))
            if fov is not None and fov.shape != image.shape[:2]:
                report.add(
                    ERROR, 'size mismatch', sample.fov, f'FOV {fov.shape[::-1]} vs image {image.shape[1::-1]} (W, H)'
                )
                fov = None
        try:
            raw = read_mask_raw(sample.mask, allow_large_images)
        except DataReadError as exc:
            report.add(ERROR, 'unreadable', sample.mask, str(exc))
            continue
        if raw.shape[:2] != image.shape[:2]:
            report.add(
                ERROR, 'size mismatch', sample.mask, f'mask {raw.shape[1::-1]} vs image {image.shape[1::-1]} (W, H)'
            )
            continue
        for problem in check_mask_values(raw, fov, mask_rules, str(sample.mask)).problems:
            report.add(problem.severity, problem.kind, sample.mask, problem.detail)
    for stems in hashes.values():
        if len(stems) > 1:
            report.add(ERROR, 'duplicate image', images[stems[0]], f'same pixels as {", ".join(stems[1:])}')

    ann_dir = root / 'annotations'
    for ann in sorted(ann_dir.glob('*.json')) if ann_dir.is_dir() else []:
        try:
            res = read_labelme(ann, strict=False)
        except DataReadError as exc:
            report.add(ERROR, 'unreadable', ann, str(exc))
            continue
        for msg in res.skipped:
            report.add(ERROR, 'degenerate shape', ann, msg.split(': ', 1)[-1])

    _check_splits(root, _all_stems(root), group_regex, report)
    return report


def _check_splits(root: Path, images: Dict[str, Path], group_regex: Optional[str], report: CheckReport) -> None:
    split_dir = root / 'splits'
    files = sorted(split_dir.glob('*.txt')) if split_dir.is_dir() else []
    if not files:
        report.add(WARNING, 'no splits', split_dir, 'no split files')
        return
    splits = {
        f.stem: [s.strip() for s in f.read_text().splitlines() if s.strip() and not s.startswith('#')] for f in files
    }
    for name, stems in splits.items():
        for s in sorted(set(stems) - set(images)):
            report.add(ERROR, 'split entry without files', split_dir / f'{name}.txt', s)
    # Splits that must share no sample and no group (splits.LEAK_PAIRS): train vs val/test,
    # val vs test, trainval vs test, and the same inside each fold ('all' overlaps by design).
    for a, b in disjoint_pairs(splits):
        for s in sorted(set(splits[a]) & set(splits[b])):
            report.add(ERROR, 'sample crosses splits', split_dir, f'{s} in {a} and {b}')
        try:
            shared = sorted(
                {group_of(s, group_regex) for s in splits[a]} & {group_of(s, group_regex) for s in splits[b]}
            )
        except ValueError as exc:
            report.add(ERROR, 'group regex', split_dir, str(exc))
            continue
        if group_regex is not None:
            for g in shared:
                report.add(ERROR, 'group crosses splits', split_dir, f'group {g} in {a} and {b}')
    listed = set().union(*map(set, splits.values()))
    for s in sorted(set(images) - listed):
        report.add(WARNING, 'not in any split', images[s], 'listed in no split file')
