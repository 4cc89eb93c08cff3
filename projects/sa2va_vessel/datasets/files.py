"""One file resolver: which file of a folder is the image / mask / FOV of a stem.

Used by the checker (check.py), the dataset (vessel_dataset.py), preparation (prepare.py) and
prediction (evaluation/predict.py), so they all see the same files.

    report = resolve_pairs(images_dir, masks_dir, fov_dir=None)
    report.pairs        # {stem: SamplePaths(stem, image, mask, fov)}: stems with an image and a mask
    report.unpaired     # [UnpairedFile(path, kind, missing)]: image without mask, mask without
                        #   image, FOV without image, image without FOV (when fov_dir has files)
    report.duplicates   # [DuplicateStem(stem, paths)]: s1.png beside s1.tif (in one folder)
    report.ignored      # files without an image extension (README.txt, ...)
    report.raise_for_duplicates()        # DuplicateStemError naming both files
    images = list_images(folder)         # sorted image files; DuplicateStemError on duplicates

Rules:
- A file's stem is its name without its image extension (readers.IMAGE_EXTENSIONS), matched
  case-insensitively: `s1.Png`, `s1.TIF` are images; `.ppm.gz` is one extension.
- Stems are case-sensitive (`S1.png` and `s1.png` are two samples), as on Linux file systems.
- Two image files with one stem in one folder are an error naming both; such a stem is in no
  pair (no reader may silently pick one of them).
- Hidden files (`.DS_Store`, `._s1.png` from macOS) and sub-folders are not looked at.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

from .readers import IMAGE_EXTENSIONS, DataReadError

# Longest first, so 'x.ppm.gz' is matched as '.ppm.gz', never as something shorter.
_EXTENSIONS = tuple(sorted(IMAGE_EXTENSIONS, key=len, reverse=True))


class DuplicateStemError(DataReadError):
    """Two or more files of one folder share a stem (s1.png beside s1.tif)."""


def split_stem(name: str) -> Optional[Tuple[str, str]]:
    """(stem, extension) of an image file name, or None when it has no image extension."""
    lower = name.lower()
    for ext in _EXTENSIONS:
        if lower.endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)], name[-len(ext) :]
    return None


@dataclass
class DuplicateStem:
    stem: str
    paths: List[Path]

    def __str__(self) -> str:
        return f'stem {self.stem!r} names {len(self.paths)} files: ' + ', '.join(str(p) for p in self.paths)


@dataclass
class FolderIndex:
    """The image files of one folder by stem, its duplicate stems and its non-image files."""

    files: Dict[str, Path] = field(default_factory=dict)
    duplicates: List[DuplicateStem] = field(default_factory=list)
    ignored: List[Path] = field(default_factory=list)


def index_folder(folder: Union[str, Path, None]) -> FolderIndex:
    """Image files of `folder` by stem (an absent folder gives an empty index)."""
    out = FolderIndex()
    if folder is None or not Path(folder).is_dir():
        return out
    by_stem: Dict[str, List[Path]] = {}
    for f in sorted(Path(folder).iterdir()):
        if f.name.startswith('.') or not f.is_file():
            continue
        parts = split_stem(f.name)
        if parts is None:
            out.ignored.append(f)
            continue
        by_stem.setdefault(parts[0], []).append(f)
    for stem, paths in sorted(by_stem.items()):
        if len(paths) > 1:
            out.duplicates.append(DuplicateStem(stem, paths))
        else:
            out.files[stem] = paths[0]
    return out


@dataclass
class SamplePaths:
    stem: str
    image: Path
    mask: Path
    fov: Optional[Path] = None


@dataclass
class UnpairedFile:
    path: Path
    kind: str  # 'image', 'mask' or 'fov': what this file is
    missing: str  # 'mask', 'image' or 'fov': what it lacks
    stem: str = ''

    def __str__(self) -> str:
        return f'{self.path}: {self.kind} without {"an" if self.missing == "image" else "a"} {self.missing}'

    def to_json(self, root: Union[str, Path, None] = None) -> Dict[str, str]:
        path = self.path
        if root is not None:
            try:
                path = self.path.relative_to(root)
            except ValueError:
                pass
        return {'file': str(path), 'kind': self.kind, 'missing': self.missing}


@dataclass
class PairReport:
    pairs: Dict[str, SamplePaths] = field(default_factory=dict)
    unpaired: List[UnpairedFile] = field(default_factory=list)
    duplicates: List[DuplicateStem] = field(default_factory=list)
    ignored: List[Path] = field(default_factory=list)
    duplicate_stems: Dict[str, DuplicateStem] = field(default_factory=dict)  # stem -> its first duplicate

    def raise_for_duplicates(self) -> None:
        if self.duplicates:
            raise DuplicateStemError(
                'duplicate stems (one file per stem and folder): ' + '; '.join(str(d) for d in self.duplicates)
            )

    def summary(self, max_lines: int = 20) -> str:
        """Human-readable lines: counts, then the first unpaired / duplicate / ignored files."""
        lines = [
            f'{len(self.pairs)} pair(s), {len(self.unpaired)} unpaired file(s), '
            f'{len(self.duplicates)} duplicate stem(s), {len(self.ignored)} non-image file(s)'
        ]
        details = (
            [f'duplicate: {d}' for d in self.duplicates]
            + [f'unpaired: {u}' for u in self.unpaired]
            + [f'not an image: {p}' for p in self.ignored]
        )
        lines += details[:max_lines]
        if len(details) > max_lines:
            lines.append(f'... {len(details) - max_lines} more')
        return '\n'.join(lines)


def resolve_pairs(
    images_dir: Union[str, Path], masks_dir: Union[str, Path], fov_dir: Union[str, Path, None] = None
) -> PairReport:
    """Pair the images of `images_dir` with the masks (and FOVs) of the other folders by stem."""
    images, masks, fovs = index_folder(images_dir), index_folder(masks_dir), index_folder(fov_dir)
    report = PairReport(
        duplicates=images.duplicates + masks.duplicates + fovs.duplicates,
        ignored=images.ignored + masks.ignored + fovs.ignored,
    )
    for d in report.duplicates:
        report.duplicate_stems.setdefault(d.stem, d)
    bad = set(report.duplicate_stems)
    for stem, image in images.files.items():
        if stem in bad:
            continue
        mask = masks.files.get(stem)
        if mask is None:
            report.unpaired.append(UnpairedFile(image, 'image', 'mask', stem))
            continue
        fov = fovs.files.get(stem)
        if fov is None and fovs.files:
            report.unpaired.append(UnpairedFile(image, 'image', 'fov', stem))
        report.pairs[stem] = SamplePaths(stem, image, mask, fov)
    for kind, index in (('mask', masks), ('fov', fovs)):
        for stem, path in index.files.items():
            if stem not in images.files and stem not in bad:
                report.unpaired.append(UnpairedFile(path, kind, 'image', stem))
    return report


def list_images(folder: Union[str, Path]) -> List[Path]:
    """The image files of `folder`, sorted; DuplicateStemError when two share a stem (their
    outputs, named by stem, would overwrite each other)."""
    index = index_folder(folder)
    if index.duplicates:
        raise DuplicateStemError(f'{folder}: ' + '; '.join(str(d) for d in index.duplicates))
    return sorted(index.files.values())
