"""Public vessel data sets in their published folder layouts -> the canonical layout.

Canonical: `images/<stem>.png` (8-bit RGB), `masks/<stem>.png` (0/255), `fov/<stem>.png`
when the source has FOV masks (or `estimate_fov`), `splits/*.txt`, and `manifest.json`
(source, per-sample source files with sha256 and sizes, group, official split; `unpaired`:
source files no sample took; `skipped`: masks refused by mask_validation.py under
skip_bad_masks; `warnings`; `mask_rules`).

    prepare_dataset(name, src, out, ...)       # a layout of LAYOUTS
    write_prepared(listing, out, source, ...)  # any list of SourceSample (other source formats)

`write_prepared` is atomic (a hidden sibling `.OUT.partial-*` renamed at the end: a failure
leaves nothing), refuses a non-empty output unless `overwrite` (which replaces it whole),
judges every mask (MaskValidationError listing every bad one, or `skip_bad_masks`), and gives
ImageTooLargeError above PIL's pixel limit unless `allow_large_images`. Layout finders return
a `SourceListing(samples, unpaired)`; finders pairing by stem use files.resolve_pairs.

Layouts (as the archives unpack; names matched case-insensitively):
- DRIVE:     {training,test}/images/NN_{training,test}.tif, .../1st_manual/NN_manual1.gif,
             .../mask/NN_{training,test}_mask.gif
- CHASE_DB1: Image_NN{L,R}.jpg with Image_NN{L,R}_1stHO.png (group: child NN)
- STARE:     stare-images/imNNNN.ppm[.gz] with labels-ah/imNNNN.ah.ppm[.gz]
- HRF:       images/NN_{h,g,dr}.jpg, manual1/NN_{h,g,dr}.tif, mask/NN_{h,g,dr}_mask.tif
- FIVES:     {train,test}/Original/N_X.png with {train,test}/Ground truth/N_X.png
- XCAD:      test/images/*.png with test/masks/*.png (only the test part is paired)
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Set

import numpy as np
from PIL import Image
from tqdm import tqdm

from .files import PairReport, UnpairedFile, resolve_pairs
from .mask_validation import MaskRules, MaskValidationError, as_rules, check_mask_values
from .protocols import DEFAULT_VAL_FRACTION, protocol_splits, protocols_of, write_protocol
from .readers import read_image, read_mask, read_mask_raw
from .splits import split_by_groups, write_split_files


@dataclass
class SourceSample:
    stem: str
    image: Path
    mask: Path
    fov: Optional[Path] = None
    group: Optional[str] = None
    official_split: Optional[str] = None  # 'train' / 'test' where the source defines one


@dataclass
class SourceListing:
    """What a layout finder found: the paired samples and every file it left unpaired."""

    samples: List[SourceSample]
    unpaired: List[UnpairedFile] = field(default_factory=list)


def _files(folder: Path) -> Dict[str, Path]:
    """{lower-case file name: path} of a folder (empty when it does not exist)."""
    if not folder.is_dir():
        return {}
    return {f.name.lower(): f for f in folder.iterdir() if f.is_file() and not f.name.startswith('.')}


def _subdir(root: Path, name: str) -> Path:
    """`root/name`, matched case-insensitively."""
    for d in root.iterdir() if root.is_dir() else []:
        if d.is_dir() and d.name.lower() == name.lower():
            return d
    return root / name


def _leftovers(
    files: Dict[str, Path], used: Set[Path], kind: str, missing: str, pattern: Optional[str] = None
) -> List[UnpairedFile]:
    """The files of one source folder that no sample took (only names matching `pattern`)."""
    return [
        UnpairedFile(p, kind, missing)
        for name, p in sorted(files.items())
        if p not in used and (pattern is None or re.match(pattern, name))
    ]


def _require(listing: SourceListing, name: str, root: Path) -> SourceListing:
    if not listing.samples:
        raise FileNotFoundError(f'{root}: no {name} samples found; is this the unpacked {name} folder?')
    return listing


def find_drive(root: Path) -> SourceListing:
    out, unpaired = [], []
    for part, split in (('training', 'train'), ('test', 'test')):
        base = _subdir(root, part)
        manual = _files(_subdir(base, '1st_manual'))
        fovs = _files(_subdir(base, 'mask'))
        used: Set[Path] = set()
        for name, img in sorted(_files(_subdir(base, 'images')).items()):
            m = re.match(r'(\d+)_(training|test)\.tif{1,2}$', name)
            if not m:
                continue
            num = m.group(1)
            mask = manual.get(f'{num}_manual1.gif')
            if mask is None:
                unpaired.append(UnpairedFile(img, 'image', 'mask'))  # older DRIVE test releases
                continue
            fov = fovs.get(f'{num}_{m.group(2)}_mask.gif')
            used |= {img, mask, fov}
            out.append(SourceSample(f'drive_{num}', img, mask, fov, group=num, official_split=split))
        unpaired += _leftovers(manual, used, 'mask', 'image', r'.*manual1\.gif$')
        unpaired += _leftovers(fovs, used, 'fov', 'image', r'.*_mask\.gif$')
    return _require(SourceListing(out, unpaired), 'DRIVE', root)


def find_chase_db1(root: Path) -> SourceListing:
    files = _files(root)
    out, used = [], set()
    for name, img in sorted(files.items()):
        m = re.match(r'image_(\d+)([lr])\.jpg$', name)
        if m and f'image_{m.group(1)}{m.group(2)}_1stho.png' in files:
            stem = f'chase_Image_{m.group(1)}{m.group(2).upper()}'
            mask = files[f'image_{m.group(1)}{m.group(2)}_1stho.png']
            used |= {img, mask}
            out.append(SourceSample(stem, img, mask, group=m.group(1)))
    unpaired = _leftovers(files, used, 'image', 'mask', r'image_\d+[lr]\.jpg$') + _leftovers(
        files, used, 'mask', 'image', r'image_\d+[lr]_1stho\.png$'
    )
    return _require(SourceListing(out, unpaired), 'CHASE_DB1', root)


def find_stare(root: Path) -> SourceListing:
    images = _files(_subdir(root, 'stare-images'))
    labels = _files(_subdir(root, 'labels-ah'))
    out, used = [], set()
    for name, img in sorted(images.items()):
        m = re.match(r'(im\d+)\.ppm(\.gz)?$', name)
        if not m:
            continue
        mask = labels.get(f'{m.group(1)}.ah.ppm') or labels.get(f'{m.group(1)}.ah.ppm.gz')
        if mask is not None:
            used |= {img, mask}
            out.append(SourceSample(f'stare_{m.group(1)}', img, mask, group=m.group(1)))
    unpaired = _leftovers(images, used, 'image', 'mask', r'im\d+\.ppm(\.gz)?$') + _leftovers(
        labels, used, 'mask', 'image', r'im\d+\.ah\.ppm(\.gz)?$'
    )
    return _require(SourceListing(out, unpaired), 'STARE', root)


def find_hrf(root: Path) -> SourceListing:
    manual = _files(_subdir(root, 'manual1'))
    fovs = _files(_subdir(root, 'mask'))
    images = _files(_subdir(root, 'images'))
    out, used = [], set()
    for name, img in sorted(images.items()):
        m = re.match(r'(\d+_(?:h|g|dr))\.jpe?g$', name)
        if m and f'{m.group(1)}.tif' in manual:
            key = m.group(1)
            fov = fovs.get(f'{key}_mask.tif')
            used |= {img, manual[f'{key}.tif'], fov}
            out.append(SourceSample(f'hrf_{key}', img, manual[f'{key}.tif'], fov, group=key))
    unpaired = (
        _leftovers(images, used, 'image', 'mask', r'\d+_(h|g|dr)\.jpe?g$')
        + _leftovers(manual, used, 'mask', 'image', r'\d+_(h|g|dr)\.tif$')
        + _leftovers(fovs, used, 'fov', 'image', r'\d+_(h|g|dr)_mask\.tif$')
    )
    return _require(SourceListing(out, unpaired), 'HRF', root)


def _same_names(images_dir: Path, masks_dir: Path) -> PairReport:
    """Image and mask folders pairing by stem (files.py's resolver; duplicate stems refused)."""
    report = resolve_pairs(images_dir, masks_dir)
    report.raise_for_duplicates()
    return report


def find_fives(root: Path) -> SourceListing:
    out, unpaired = [], []
    for part, split in (('train', 'train'), ('test', 'test')):
        base = _subdir(root, part)
        pairs = _same_names(_subdir(base, 'Original'), _subdir(base, 'Ground truth'))
        unpaired += pairs.unpaired
        for stem, p in pairs.pairs.items():
            out.append(
                SourceSample(f'fives_{split}_{stem}', p.image, p.mask, group=f'{split}_{stem}', official_split=split)
            )
    return _require(SourceListing(out, unpaired), 'FIVES', root)


def find_xcad(root: Path) -> SourceListing:
    base = _subdir(root, 'test')
    pairs = _same_names(_subdir(base, 'images'), _subdir(base, 'masks'))
    out = [
        SourceSample(f'xcad_{stem}', p.image, p.mask, group=stem, official_split='test')
        for stem, p in pairs.pairs.items()
    ]
    return _require(SourceListing(out, pairs.unpaired), 'XCAD', root)


LAYOUTS: Dict[str, Callable[[Path], SourceListing]] = {
    'drive': find_drive,
    'chase_db1': find_chase_db1,
    'stare': find_stare,
    'hrf': find_hrf,
    'fives': find_fives,
    'xcad': find_xcad,
}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def estimate_fov(image: np.ndarray, threshold: int = 20) -> np.ndarray:
    """A rough FOV for sources without one: pixels whose brightest channel exceeds `threshold`."""
    return image.max(axis=2) > threshold


class OutputNotEmptyError(FileExistsError):
    """The output folder holds files and --overwrite was not given."""


def _check_output(out: Path, src: Optional[Path], overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise OutputNotEmptyError(f'{out}: exists and is not a folder')
    if src is not None and (src.resolve() == out.resolve() or out.resolve() in src.resolve().parents):
        raise ValueError(f'{out}: the output folder holds the source {src}; choose another output folder')
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        n = sum(1 for _ in out.iterdir())
        raise OutputNotEmptyError(
            f'{out}: output folder is not empty ({n} entries); preparing into it would '
            f'mix two data sets. Choose an empty folder, or pass --overwrite '
            f'(overwrite=True) to replace it whole'
        )


def _publish(tmp: Path, out: Path) -> None:
    """Move the finished temporary folder to `out`, replacing what was there."""
    if out.is_dir():
        old = Path(tempfile.mkdtemp(prefix=f'.{out.name}.old-', dir=out.parent))
        old.rmdir()
        out.rename(old)  # same file system: atomic; the old content stays whole until here
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out)


def write_prepared(
    listing: SourceListing | List[SourceSample],
    out_dir: str | Path,
    source: str,
    src_root: str | Path | None = None,
    estimate_missing_fov: bool = False,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    seed: int = 0,
    overwrite: bool = False,
    mask_rules: MaskRules | dict | None = None,
    skip_bad_masks: bool = False,
    allow_large_images: bool = False,
    progress: bool = True,
    protocol: Optional[str] = None,
    k: Optional[int] = None,
) -> Dict[str, object]:
    """Write samples (source files) into the canonical layout of `out_dir`; returns the manifest.

    Atomic: everything is written into a hidden sibling folder (`.OUT.partial-*`) that is renamed
    to `out_dir` at the end, so a failure leaves nothing behind (and an `--overwrite` run that fails
    leaves the old folder untouched). A non-empty `out_dir` is refused unless `overwrite`, which
    replaces it whole. Every mask is judged by mask_validation.py: a bad one raises
    MaskValidationError listing all bad masks, or with `skip_bad_masks` the sample is left out and
    listed in the manifest's `skipped`. Unpaired source files are listed in `unpaired`.

    Splits: a public set's published protocol (protocols.py; val from its training part only);
    otherwise a seeded, group-aware train/val split. all.txt always lists every sample.
    """
    if not isinstance(listing, SourceListing):
        listing = SourceListing(list(listing))
    rules = as_rules(mask_rules)
    out = Path(out_dir)
    src = Path(src_root) if src_root is not None else None
    _check_output(out, src, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f'.{out.name}.partial-', dir=out.parent))
    try:
        manifest = _write_all(
            listing,
            tmp,
            source,
            src,
            estimate_missing_fov,
            val_fraction,
            seed,
            rules,
            skip_bad_masks,
            allow_large_images,
            progress,
            protocol,
            k,
        )
        _publish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _relative(path: Path, src: Optional[Path]) -> str:
    if src is not None:
        try:
            return str(path.relative_to(src))
        except ValueError:
            pass
    return str(path)


def _write_all(
    listing: SourceListing,
    out: Path,
    source: str,
    src: Optional[Path],
    estimate_missing_fov: bool,
    val_fraction: float,
    seed: int,
    rules: MaskRules,
    skip_bad_masks: bool,
    allow_large_images: bool,
    progress: bool,
    protocol: Optional[str] = None,
    k: Optional[int] = None,
) -> Dict[str, object]:
    for sub in ('images', 'masks', 'fov'):
        (out / sub).mkdir(parents=True, exist_ok=True)
    records, skipped, bad, warnings = [], [], [], []
    samples = listing.samples
    for s in tqdm(samples, desc=f'prepare {source}', unit='image', disable=not progress or len(samples) < 2):
        image = read_image(s.image, allow_large_images)
        fov = (
            read_mask(s.fov, allow_large_images)
            if s.fov is not None
            else (estimate_fov(image) if estimate_missing_fov else None)
        )
        if fov is not None and fov.shape != image.shape[:2]:
            raise ValueError(
                f'{s.fov}: FOV size {fov.shape[::-1]} differs from image {s.image} size {image.shape[1::-1]} (W, H)'
            )
        raw = read_mask_raw(s.mask, allow_large_images)
        if raw.shape[:2] != image.shape[:2]:
            raise ValueError(
                f'{s.mask}: mask size {raw.shape[1::-1]} differs from image {s.image} size {image.shape[1::-1]} (W, H)'
            )
        checked = check_mask_values(raw, fov, rules, str(s.mask))
        warnings += [str(p) for p in checked.problems if not p.is_error]
        if checked.errors:
            bad += checked.errors
            skipped.append(
                {
                    'stem': s.stem,
                    'mask': _relative(s.mask, src),
                    'problems': [f'{p.kind}: {p.detail}' for p in checked.errors],
                }
            )
            continue
        if bad and not skip_bad_masks:
            continue  # this run fails at the end; keep judging the rest so the error lists all
        mask = checked.mask
        Image.fromarray(image).save(out / 'images' / f'{s.stem}.png')
        Image.fromarray(mask.astype(np.uint8) * 255).save(out / 'masks' / f'{s.stem}.png')
        if fov is not None:
            Image.fromarray(fov.astype(np.uint8) * 255).save(out / 'fov' / f'{s.stem}.png')
        records.append(
            {
                'stem': s.stem,
                'group': s.group,
                'official_split': s.official_split,
                'size_wh': [int(image.shape[1]), int(image.shape[0])],
                'image': {'source': _relative(s.image, src), 'sha256': sha256_file(s.image)},
                'mask': {
                    'source': _relative(s.mask, src),
                    'sha256': sha256_file(s.mask),
                    'vessel_fraction': round(float(mask.mean()), 6),
                },
                'fov': (
                    {'source': _relative(s.fov, src), 'sha256': sha256_file(s.fov)}
                    if s.fov is not None
                    else ({'source': 'estimated'} if fov is not None else None)
                ),
            }
        )
    if bad and not skip_bad_masks:
        shown = '\n  '.join(str(p) for p in bad[:20]) + (f'\n  ... {len(bad) - 20} more' if len(bad) > 20 else '')
        raise MaskValidationError(
            bad,
            f'{len(skipped)} of {len(samples)} masks are refused (nothing was '
            f'written; --skip-bad-masks leaves them out and lists them in the '
            f'manifest):\n  {shown}',
        )
    if not records:
        raise ValueError(f'{source}: every one of the {len(samples)} masks was refused; nothing to write')
    stems = [r['stem'] for r in records]
    protocol_record = None
    if protocols_of(source):
        # a public set: its published train/test protocol, val from the training part only
        # (protocols.py); the skipped samples are already out of `records`
        splits, protocol_record = protocol_splits(source, records, protocol, val_fraction, seed, k)
        write_protocol(out, splits, protocol_record)
    else:
        splits = {'all': sorted(stems)}
        groups = {r['stem']: r['group'] or r['stem'] for r in records}
        # Splitting on the group names themselves keeps group members together.
        tagged = [f'{groups[s]}\x1f{s}' for s in stems]
        train, val = split_by_groups(tagged, val_fraction, r'^([^\x1f]*)\x1f', seed)
        splits['train'] = sorted(t.split('\x1f', 1)[1] for t in train)
        splits['val'] = sorted(t.split('\x1f', 1)[1] for t in val)
        write_split_files(out, splits)
    manifest = {
        'source': source,
        'source_root': str(src.resolve()) if src is not None else None,
        'n_samples': len(records),
        'protocol': protocol_record,
        'splits': {name: len(v) for name, v in splits.items()},
        'mask_rules': {'max_vessel_fraction': rules.max_vessel_fraction, 'allow_non_binary': rules.allow_non_binary},
        'unpaired': [u.to_json(src) for u in listing.unpaired],
        'skipped': skipped,
        'warnings': warnings,
        'samples': records,
    }
    (out / 'manifest.json').write_text(json.dumps(manifest, indent=1) + '\n')
    return manifest


def prepare_dataset(
    name: str,
    src_root: str | Path,
    out_dir: str | Path,
    estimate_missing_fov: bool = False,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    seed: int = 0,
    overwrite: bool = False,
    mask_rules: MaskRules | dict | None = None,
    skip_bad_masks: bool = False,
    allow_large_images: bool = False,
    progress: bool = True,
    protocol: Optional[str] = None,
    k: Optional[int] = None,
) -> Dict[str, object]:
    """Convert one source data set of LAYOUTS; returns (and writes) the manifest (write_prepared).

    Splits: the published protocol (``protocol``, default: the data set's first one in
    protocols.py; ``k`` folds for the k-fold ones), with val taken from the training part
    only (seeded, group-aware, ``val_fraction``), in splits/*.txt, splits/PROTOCOL.md and the
    manifest's "protocol" entry.
    """
    key = name.lower()
    if key not in LAYOUTS:
        raise KeyError(f'unknown data set {name!r}; known: {sorted(LAYOUTS)}')
    src = Path(src_root)
    if not src.is_dir():
        raise FileNotFoundError(f'{src}: source folder not found')
    _check_output(Path(out_dir), src, overwrite)  # before the (slow) listing of the source
    return write_prepared(
        LAYOUTS[key](src),
        out_dir,
        key,
        src,
        estimate_missing_fov,
        val_fraction,
        seed,
        overwrite,
        mask_rules,
        skip_bad_masks,
        allow_large_images,
        progress,
        protocol,
        k,
    )
