"""Sanity checks of a canonical data folder before training on it.

Errors: missing or unreadable files, image/mask/FOV size mismatch, empty masks, degenerate
annotation shapes (annotations/*.json, LabelMe), duplicate images (same pixels), a sample
or a group in more than one split, split entries without files.
Warnings: masks that are not strictly binary (0/255 or 0/1; still usable by the rule in
readers.py), images not listed in any split.
"""
from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
from PIL import Image

from .progress import progress
from .readers import IMAGE_EXTENSIONS, DataReadError, read_image, read_labelme, read_mask
from .splits import group_of

ERROR, WARNING = "error", "warning"


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
        lines = [f"{self.n_samples} samples checked, {self.n_errors} error(s), "
                 f"{len(self.issues) - self.n_errors} warning(s)"]
        if counts:
            w = max(len(k) for k, _ in counts) + 2
            lines.append(f"{'check'.ljust(w)}{'severity':<10}count")
            for (kind, sev), n in sorted(counts.items()):
                lines.append(f"{kind.ljust(w)}{sev:<10}{n}")
            lines.append("")
            for i in self.issues[:max_details]:
                lines.append(f"[{i.severity}] {i.kind}: {i.file}: {i.detail}")
            if len(self.issues) > max_details:
                lines.append(f"... {len(self.issues) - max_details} more")
        return "\n".join(lines)


def _by_stem(folder: Path) -> Dict[str, Path]:
    out: Dict[str, Path] = {}
    if folder.is_dir():
        for f in sorted(folder.iterdir()):
            name = f.name.lower()
            for ext in IMAGE_EXTENSIONS:
                if f.is_file() and name.endswith(ext):
                    out[f.name[: -len(ext)]] = f
                    break
    return out


def _raw_values(path: Path) -> Optional[np.ndarray]:
    try:
        return np.asarray(Image.open(path).convert("L") if Image.open(path).mode == "P" else Image.open(path))
    except Exception:  # unreadable files are reported by read_mask already
        return None


def _start(root: Path) -> tuple:
    """An empty report and the image, mask and FOV files of ``root`` by stem."""
    report = CheckReport()
    images, masks, fovs = _by_stem(root / "images"), _by_stem(root / "masks"), _by_stem(root / "fov")
    report.n_samples = len(images)
    if not images:
        report.add(ERROR, "no images", root / "images", "no image files found")
    return report, images, masks, fovs


def _header_size(path: Path) -> Optional[tuple]:
    """(W, H) from the file header alone (no pixel decoding), or None when unreadable."""
    try:
        with Image.open(path) as im:
            return im.size
    except Exception:
        return None


def quick_check(data_root: str | Path, group_regex: Optional[str] = None) -> CheckReport:
    """The checks that need no pixel decoding, fast enough for every training start.

    Missing and unreadable files (by header), image/mask/FOV size mismatches, split entries
    without files, samples or groups crossing splits. ``check_dataset`` adds the pixel-level ones
    (empty or non-binary masks, duplicates, degenerate annotations).
    """
    root = Path(data_root)
    report, images, masks, fovs = _start(root)
    for stem, img_path in images.items():
        size = _header_size(img_path)
        if size is None:
            report.add(ERROR, "unreadable", img_path, "not a readable image")
            continue
        if stem not in masks:
            report.add(ERROR, "missing mask", img_path, f"no masks/{stem}.*")
            continue
        for kind, path in (("mask", masks[stem]), ("FOV", fovs.get(stem))):
            if path is None:
                continue
            other = _header_size(path)
            if other is None:
                report.add(ERROR, "unreadable", path, "not a readable image")
            elif other != size:
                report.add(ERROR, "size mismatch", path, f"{kind} {other} vs image {size} (W, H)")
    _check_splits(root, images, group_regex, report)
    return report


def check_dataset(data_root: str | Path, group_regex: Optional[str] = None) -> CheckReport:
    """Run every check on `data_root` (images/, masks/, optional fov/, splits/, annotations/)."""
    root = Path(data_root)
    report, images, masks, fovs = _start(root)
    hashes: Dict[str, List[str]] = defaultdict(list)
    for stem, img_path in progress(images.items(), desc="check", total=len(images), unit="img"):
        try:
            image = read_image(img_path)
        except DataReadError as exc:
            report.add(ERROR, "unreadable", img_path, str(exc))
            continue
        hashes[hashlib.sha256(image.tobytes() + str(image.shape).encode()).hexdigest()].append(stem)
        if stem not in masks:
            report.add(ERROR, "missing mask", img_path, f"no masks/{stem}.*")
            continue
        try:
            mask = read_mask(masks[stem])
        except DataReadError as exc:
            report.add(ERROR, "unreadable", masks[stem], str(exc))
            continue
        if mask.shape != image.shape[:2]:
            report.add(ERROR, "size mismatch", masks[stem],
                       f"mask {mask.shape[::-1]} vs image {image.shape[1::-1]} (W, H)")
        elif not mask.any():
            report.add(ERROR, "empty mask", masks[stem], "no vessel pixel")
        raw = _raw_values(masks[stem])
        if raw is not None and raw.dtype != bool:
            values = set(np.unique(raw).tolist())
            if not (values <= {0, 255} or values <= {0, 1} or values <= {0, 65535}):
                report.add(WARNING, "non-binary mask", masks[stem],
                           f"{len(values)} distinct values (binarised by the readers.py rule)")
        if stem in fovs:
            try:
                fov = read_mask(fovs[stem])
                if fov.shape != image.shape[:2]:
                    report.add(ERROR, "size mismatch", fovs[stem],
                               f"FOV {fov.shape[::-1]} vs image {image.shape[1::-1]} (W, H)")
            except DataReadError as exc:
                report.add(ERROR, "unreadable", fovs[stem], str(exc))
    for stem in sorted(set(masks) - set(images)):
        report.add(WARNING, "orphan mask", masks[stem], "no image with this stem")
    for stems in hashes.values():
        if len(stems) > 1:
            report.add(ERROR, "duplicate image", images[stems[0]], f"same pixels as {', '.join(stems[1:])}")

    ann_dir = root / "annotations"
    for ann in sorted(ann_dir.glob("*.json")) if ann_dir.is_dir() else []:
        try:
            res = read_labelme(ann, strict=False)
        except DataReadError as exc:
            report.add(ERROR, "unreadable", ann, str(exc))
            continue
        for msg in res.skipped:
            report.add(ERROR, "degenerate shape", ann, msg.split(": ", 1)[-1])

    _check_splits(root, images, group_regex, report)
    return report


def _check_splits(root: Path, images: Dict[str, Path], group_regex: Optional[str], report: CheckReport) -> None:
    split_dir = root / "splits"
    files = sorted(split_dir.glob("*.txt")) if split_dir.is_dir() else []
    if not files:
        report.add(WARNING, "no splits", split_dir, "no split files")
        return
    splits = {f.stem: [s.strip() for s in f.read_text().splitlines() if s.strip() and not s.startswith("#")]
              for f in files}
    for name, stems in splits.items():
        for s in sorted(set(stems) - set(images)):
            report.add(ERROR, "split entry without files", split_dir / f"{name}.txt", s)
    # A training split must share no sample and no group with its evaluation splits:
    # 'train' vs 'val'/'test', 'fold0_train' vs 'fold0_val', ... ('all' overlaps by design).
    for name in splits:
        if not name.endswith("train"):
            continue
        prefix = name[: -len("train")]
        for other in (f"{prefix}val", f"{prefix}test"):
            if other not in splits:
                continue
            for s in sorted(set(splits[name]) & set(splits[other])):
                report.add(ERROR, "sample crosses splits", split_dir, f"{s} in {name} and {other}")
            try:
                train_groups = {group_of(s, group_regex) for s in splits[name]}
                shared = sorted(train_groups & {group_of(s, group_regex) for s in splits[other]})
            except ValueError as exc:
                report.add(ERROR, "group regex", split_dir, str(exc))
                continue
            if group_regex is not None:
                for g in shared:
                    report.add(ERROR, "group crosses splits", split_dir, f"group {g} in {name} and {other}")
    listed = set().union(*map(set, splits.values()))
    for s in sorted(set(images) - listed):
        report.add(WARNING, "not in any split", images[s], "listed in no split file")
