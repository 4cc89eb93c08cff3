"""Annotated sources (a LabelMe folder, a COCO file, an ARCADE tree) -> the canonical layout.

Output (as prepare.py's, plus what annotations add):
- ``images/<stem>.png``, ``masks/<stem>.png`` (0/255, the union of the vessel shapes);
- with ``per_category`` (COCO/ARCADE): ``segments/<category>/<stem>.png``, one binary mask per
  category present on the image (ARCADE: per SYNTAX segment, folder named after it, e.g.
  ``segments/6/arcade_train_12.png``), so that a prompt can later ask for a segment by name;
- ``splits/{all,train,val[,test]}.txt``: the source's official splits (ARCADE), otherwise
  patient-disjoint train/val (with a grouping) or per sample (without one), frames in order;
- ``manifest.json``: per sample its name, patient/video/frame, source files with sha256, the
  rescale factor of a LabelMe file drawn in another coordinate frame, the skipped shapes;
  at the top the rescaled files, the skip counts by kind and the unpaired images;
- ``prepare_report.txt``: the same in words, and ``contact_sheet.png`` (contact_sheet.py).

Sources are only read. ``on_error='fail'`` stops at the first bad shape or sample with its
named error (annotation_errors.py); ``'skip'`` leaves it out, counts it and reports it.
"""

from __future__ import annotations

import base64
import io
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from .annotation_errors import AnnotationError, EmptyMaskError, ImageSizeMismatchError, load_json
from .coco_masks import CocoFile
from .grouping import SampleGroup, frame_order, resolve_groups, split_by_patient, split_summary
from .labelme import ON_ERROR, labelme_header, rasterise_labelme
from .prepare import sha256_file
from .progress import progress
from .readers import IMAGE_EXTENSIONS, DataReadError, read_image
from .splits import write_split_files

ARCADE_SPLITS = ('train', 'val', 'test')
ARCADE_NON_VESSEL = ('stenosis',)  # a category of ARCADE's files that is no artery segment


class MissingImageError(AnnotationError):
    """An annotation whose image file is not there."""

    kind = 'missing image'


@dataclass
class SampleMask:
    mask: np.ndarray
    by_category: Dict[str, np.ndarray] = field(default_factory=dict)
    n_shapes: int = 0
    problems: List[AnnotationError] = field(default_factory=list)
    scale: Optional[Tuple[float, float]] = None
    annotated_wh: Optional[Tuple[int, int]] = None


@dataclass
class AnnotatedSample:
    """One image and how to get its mask at the real image size."""

    name: str  # relative source path without extension, '/' separated
    stem: str  # output file stem
    annotation: Path
    rasterise: Callable[[Tuple[int, int]], SampleMask]
    image: Optional[Path] = None  # None: the image is embedded (LabelMe imageData)
    embedded_image: Optional[str] = None
    official_split: Optional[str] = None

    def load_image(self) -> np.ndarray:
        if self.image is not None:
            return read_image(self.image)
        try:
            return np.asarray(Image.open(io.BytesIO(base64.b64decode(self.embedded_image or ''))).convert('RGB'))
        except Exception as exc:
            raise DataReadError(f'{self.annotation}: cannot decode the embedded imageData ({exc})') from None


@dataclass
class FoundSet:
    source: str
    root: Path
    samples: List[AnnotatedSample]
    unpaired: List[str] = field(default_factory=list)  # image files no annotation refers to
    broken: List[AnnotationError] = field(default_factory=list)  # annotation files skipped whole
    notes: List[str] = field(default_factory=list)


def safe_stem(name: str) -> str:
    """A file-system- and split-file-safe stem: folders joined by '_', odd characters replaced."""
    return re.sub(r'[^A-Za-z0-9._-]+', '_', name.replace('/', '_')).strip('._') or 'sample'


def _without_ext(rel: str) -> str:
    low = rel.lower()
    for ext in sorted(IMAGE_EXTENSIONS, key=len, reverse=True):
        if low.endswith(ext):
            return rel[: -len(ext)]
    return rel.rsplit('.', 1)[0]


def _is_image(p: Path) -> bool:
    return p.is_file() and p.name.lower().endswith(IMAGE_EXTENSIONS)


def _rel(path: Path, root: Path) -> str:
    """`path` relative to `root` when inside it (a COCO file may live elsewhere), else absolute."""
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path.resolve())


# ---------------------------------------------------------------------------------------------
# Finding the samples of each source
# ---------------------------------------------------------------------------------------------


def _labelme_image(json_path: Path, doc: dict) -> Optional[Path]:
    """The image a LabelMe file belongs to: its imagePath, else a same-stem image beside it."""
    image_path = str(doc.get('imagePath') or '').replace('\\', '/')
    if image_path:
        cand = json_path.parent / image_path
        if cand.is_file():
            return cand
    for f in sorted(json_path.parent.iterdir()):
        if _is_image(f) and _without_ext(f.name) == json_path.stem:
            return f
    return None


def find_labelme(
    src: str | Path,
    labels: Optional[Sequence[str]] = None,
    ignore_labels: Sequence[str] = (),
    line_width: int = 3,
    on_error: str = 'fail',
) -> FoundSet:
    """Every LabelMe JSON under `src` (recursively) with its image."""
    root = Path(src)
    if not root.is_dir():
        raise FileNotFoundError(f'{root}: source folder not found')
    found = FoundSet('labelme', root, [])
    used: set = set()
    for jp in sorted(root.rglob('*.json')):
        try:
            doc = load_json(jp)
            labelme_header(doc, jp)
            image = _labelme_image(jp, doc)
            if image is None and not doc.get('imageData'):
                raise MissingImageError(f'{jp}: image {doc.get("imagePath")!r} not found and no imageData embedded')
        except AnnotationError as exc:
            if on_error == 'fail':
                raise
            found.broken.append(exc)
            continue
        if image is not None:
            used.add(image.resolve())
        name = _without_ext(_rel(image, root)) if image is not None else _rel(jp, root)[: -len('.json')]

        def rasterise(hw: Tuple[int, int], doc: dict = doc, jp: Path = jp) -> SampleMask:
            r = rasterise_labelme(
                doc, jp, hw, labels=labels, ignore_labels=ignore_labels, line_width=line_width, on_error=on_error
            )
            return SampleMask(r.mask, {}, r.n_shapes, r.problems, r.scale, r.annotated_wh)

        found.samples.append(
            AnnotatedSample(
                name, safe_stem(name), jp, rasterise, image, None if image is not None else str(doc['imageData'])
            )
        )
    found.unpaired = sorted(_rel(f, root) for f in root.rglob('*') if _is_image(f) and f.resolve() not in used)
    if not found.samples and not found.broken:
        raise FileNotFoundError(f'{root}: no LabelMe .json files found')
    return found


def _coco_samples(
    coco: CocoFile,
    images_dir: Path,
    root: Path,
    categories: Optional[set],
    per_category: bool,
    on_error: str,
    found: FoundSet,
    split: Optional[str] = None,
    prefix: str = '',
) -> None:
    used = set()
    for image_id, im in sorted(coco.images.items()):
        path = images_dir / im['file_name']
        if not path.is_file():
            exc = MissingImageError(f'{coco.path}: image {im["file_name"]!r} not found under {images_dir}')
            if on_error == 'fail':
                raise exc
            found.broken.append(exc)
            continue
        used.add(path.resolve())
        base = _without_ext(im['file_name'])
        name = f'{split}/{base}' if split else base

        def rasterise(hw: Tuple[int, int], image_id: int = image_id, im: dict = im) -> SampleMask:
            if tuple(hw) != (im['height'], im['width']):
                raise ImageSizeMismatchError(
                    f'{coco.path}: image {im["file_name"]!r} is {hw[1]}x{hw[0]} but the '
                    f'file says {im["width"]}x{im["height"]} (COCO masks are not rescaled)'
                )
            r = coco.image_mask(image_id, categories, per_category, on_error)
            return SampleMask(r.mask, r.by_category, r.n_shapes, r.problems)

        found.samples.append(
            AnnotatedSample(name, prefix + safe_stem(base), coco.path, rasterise, path, official_split=split)
        )
    found.unpaired += sorted(_rel(f, root) for f in images_dir.rglob('*') if _is_image(f) and f.resolve() not in used)


def find_coco(
    src_json: str | Path,
    images_dir: str | Path,
    categories: Optional[Sequence[str]] = None,
    per_category: bool = False,
    on_error: str = 'fail',
) -> FoundSet:
    """The images of a COCO instances file, found under `images_dir` by their file_name."""
    images = Path(images_dir)
    if not images.is_dir():
        raise FileNotFoundError(f'{images}: images folder not found')
    coco = CocoFile(src_json)
    found = FoundSet('coco', images, [])
    _coco_samples(coco, images, images, coco.check_categories(categories), per_category, on_error, found)
    if not found.samples and not found.broken:
        raise FileNotFoundError(f'{src_json}: no images listed')
    return found


def _arcade_split_dir(root: Path) -> Path:
    """The folder holding train/val/test: `root/syntax` of an ARCADE download, or root itself."""
    for cand in (root / 'syntax', root / 'arcade' / 'syntax', root):
        if (cand / 'train').is_dir() or (cand / 'val').is_dir() or (cand / 'test').is_dir():
            return cand
    raise FileNotFoundError(
        f'{root}: not an ARCADE tree (expected syntax/{{train,val,test}}/images and '
        f'syntax/<split>/annotations/<split>.json)'
    )


def _arcade_json(split_dir: Path, split: str) -> Path:
    files = sorted((split_dir / 'annotations').glob('*.json'))
    named = [f for f in files if f.stem == split]
    if named:
        return named[0]
    if len(files) == 1:
        return files[0]
    raise FileNotFoundError(f'{split_dir / "annotations"}: expected {split}.json (found {[f.name for f in files]})')


def find_arcade(
    src: str | Path, categories: Optional[Sequence[str]] = None, per_category: bool = False, on_error: str = 'fail'
) -> FoundSet:
    """ARCADE's SYNTAX task: syntax/{train,val,test}/images + annotations/<split>.json.

    Stems are ``arcade_<split>_<file stem>`` (ARCADE numbers each split's images from 1).
    Default categories: every one except 'stenosis', i.e. all SYNTAX segments.
    """
    root = Path(src)
    base = _arcade_split_dir(root)
    found = FoundSet('arcade', root, [])
    for split in ARCADE_SPLITS:
        split_dir = base / split
        if not split_dir.is_dir():
            found.notes.append(f'ARCADE split {split!r} not found under {base}')
            continue
        coco = CocoFile(_arcade_json(split_dir, split))
        cats = coco.check_categories(categories)
        if cats is None:
            cats = {c for c in coco.categories.values() if c not in ARCADE_NON_VESSEL}
        _coco_samples(
            coco, split_dir / 'images', root, cats, per_category, on_error, found, split, 'arcade_' + split + '_'
        )
    if not found.samples and not found.broken:
        raise FileNotFoundError(f'{base}: no ARCADE images found')
    return found


# ---------------------------------------------------------------------------------------------
# Writing the canonical set
# ---------------------------------------------------------------------------------------------


def _check_out(src: Path, out: Path) -> None:
    s, o = src.resolve(), out.resolve()
    if o == s or s in o.parents or o in s.parents:
        raise ValueError(f'{out}: the output folder must be outside the source {src} (sources are never written)')
    if out.exists() and any(out.iterdir()):
        raise ValueError(f'{out}: output folder is not empty; choose a new or empty folder')


def _splits(
    records: List[dict], groups: Optional[Dict[str, SampleGroup]], val_fraction: float, seed: int
) -> Tuple[Dict[str, List[str]], List[str]]:
    stems = [r['stem'] for r in records]
    by_stem = {r['stem']: groups[r['name']] for r in records if groups and r['name'] in groups}
    notes = []
    official = {r['official_split'] for r in records}
    if None not in official:
        out = {
            name: [r['stem'] for r in records if r['official_split'] == name]
            for name in ARCADE_SPLITS
            if name in official
        }
        notes.append("splits: the source's official " + '/'.join(out))
    else:
        if by_stem:
            patient_of = {s: g.patient for s, g in by_stem.items()}
            notes.append('splits: patient-disjoint train/val')
        else:
            patient_of = {}
            notes.append(
                'splits: per sample (no --group-regex/--groups: frames of one patient may fall in both train and val)'
            )
        if len({patient_of.get(s, s) for s in stems}) < 2:
            notes.append('WARNING: one patient (or sample) only: everything is in train, val is empty')
            train, val = list(stems), []
        else:
            train, val = split_by_patient(stems, patient_of, val_fraction, seed)
        out = {'train': train, 'val': val}
    out = {'all': stems, **out}
    return {k: frame_order(v, by_stem) for k, v in out.items()}, notes + split_summary(out, by_stem)


def _save_mask(path: Path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8) * 255).save(path)


def prepare_annotated(
    found: FoundSet,
    out_dir: str | Path,
    on_error: str = 'fail',
    group_regex: Optional[str] = None,
    groups_csv: Optional[str | Path] = None,
    val_fraction: float = 0.25,
    seed: int = 0,
    options: Optional[dict] = None,
    sheet: bool = True,
) -> Dict[str, object]:
    """Write the canonical set for `found`; returns (and writes) the manifest."""
    if on_error not in ON_ERROR:
        raise ValueError(f'on_error must be one of {ON_ERROR}, got {on_error!r}')
    out = Path(out_dir)
    _check_out(found.root, out)
    names = [s.name for s in found.samples]
    seen: Dict[str, str] = {}
    for s in found.samples:
        if s.stem in seen:
            raise ValueError(f'samples {seen[s.stem]!r} and {s.name!r} map to the same stem {s.stem!r}')
        seen[s.stem] = s.name
    groups = resolve_groups(names, group_regex, groups_csv)  # before any write: a bad regex costs nothing

    for sub in ('images', 'masks'):
        (out / sub).mkdir(parents=True, exist_ok=True)
    records: List[dict] = []
    skipped_samples: List[AnnotationError] = list(found.broken)
    shape_counts: Counter = Counter()
    hashes: Dict[Path, str] = {}

    def sha(p: Path) -> str:
        if p not in hashes:
            hashes[p] = sha256_file(p)
        return hashes[p]

    for s in progress(found.samples, desc=f'prepare {found.source}', unit='img'):
        try:
            image = s.load_image()
            res = s.rasterise(image.shape[:2])
            shape_counts.update(p.kind for p in res.problems)  # counted also when the sample goes
            if not res.mask.any():
                detail = f'{len(res.problems)} shape(s) skipped' if res.problems else 'no vessel shape'
                raise EmptyMaskError(f'{s.annotation}: sample {s.name!r}: empty mask ({detail})')
        except DataReadError as exc:
            if on_error == 'fail':
                raise
            skipped_samples.append(exc if isinstance(exc, AnnotationError) else AnnotationError(str(exc)))
            continue
        Image.fromarray(image).save(out / 'images' / f'{s.stem}.png')
        _save_mask(out / 'masks' / f'{s.stem}.png', res.mask)
        for cat, m in sorted(res.by_category.items()):
            _save_mask(out / 'segments' / safe_stem(cat) / f'{s.stem}.png', m)
        g = groups.get(s.name) if groups else None
        records.append(
            {
                'stem': s.stem,
                'name': s.name,
                'group': g.patient if g else None,
                'patient': g.patient if g else None,
                'video': g.video if g else None,
                'frame': g.frame if g else None,
                'official_split': s.official_split,
                'size_wh': [int(image.shape[1]), int(image.shape[0])],
                'image': (
                    {'source': _rel(s.image, found.root), 'sha256': sha(s.image)}
                    if s.image is not None
                    else {'source': 'imageData', 'sha256': None}
                ),
                'annotation': {'source': _rel(s.annotation, found.root), 'sha256': sha(s.annotation)},
                'mask': {'vessel_fraction': round(float(res.mask.mean()), 6), 'n_shapes': res.n_shapes},
                'rescaled': (
                    {
                        'factor_xy': [round(res.scale[0], 6), round(res.scale[1], 6)],
                        'annotated_wh': list(res.annotated_wh),
                    }
                    if res.scale
                    else None
                ),
                'skipped_shapes': [{'kind': p.kind, 'message': str(p)} for p in res.problems],
                'segments': sorted(safe_stem(c) for c in res.by_category),
            }
        )
    if not records:
        raise ValueError(f'{found.root}: no sample could be prepared ({len(skipped_samples)} skipped)')
    splits, split_lines = _splits(records, groups, val_fraction, seed)
    write_split_files(out, splits)
    rescaled = [
        {'stem': r['stem'], 'annotation': r['annotation']['source'], **r['rescaled']} for r in records if r['rescaled']
    ]
    manifest = {
        'source': found.source,
        'source_root': str(found.root.resolve()),
        'options': options or {},
        'on_error': on_error,
        'n_samples': len(records),
        'splits': {k: len(v) for k, v in splits.items()},
        'grouping': (
            {'group_regex': group_regex} if group_regex else {'groups_csv': str(groups_csv)} if groups_csv else None
        ),
        'rescaled': rescaled,
        'skipped': {
            'shapes': dict(shape_counts),
            'samples': [{'kind': e.kind, 'message': str(e)} for e in skipped_samples],
        },
        'unpaired': found.unpaired,
        'notes': found.notes,
        'samples': records,
    }
    (out / 'manifest.json').write_text(json.dumps(manifest, indent=1) + '\n')
    report = _report_text(manifest, split_lines)
    (out / 'prepare_report.txt').write_text(report)
    if sheet:
        from .contact_sheet import manifest_flags, write_contact_sheet

        write_contact_sheet(out, out / 'contact_sheet.png', manifest_flags(out))
    return manifest


def _report_text(manifest: dict, split_lines: Iterable[str], max_lines: int = 200) -> str:
    lines = [f'{manifest["source"]}: {manifest["n_samples"]} samples from {manifest["source_root"]}']
    lines += list(split_lines)
    lines += list(manifest['notes'])
    resc = manifest['rescaled']
    lines.append(f'rescaled annotation frames: {len(resc)}')
    lines += [
        f'  {r["annotation"]}: {r["annotated_wh"][0]}x{r["annotated_wh"][1]} -> factor '
        f'x{r["factor_xy"][0]:g}, y{r["factor_xy"][1]:g}'
        for r in resc[:max_lines]
    ]
    sk = manifest['skipped']
    lines.append(
        f'skipped shapes: {sum(sk["shapes"].values())}'
        + (' (' + ', '.join(f'{k}: {v}' for k, v in sorted(sk['shapes'].items())) + ')' if sk['shapes'] else '')
    )
    msgs = [p['message'] for r in manifest['samples'] for p in r['skipped_shapes']]
    lines += [f'  {m}' for m in msgs[:max_lines]]
    by_kind = Counter(s['kind'] for s in sk['samples'])
    lines.append(
        f'skipped samples: {len(sk["samples"])}'
        + (' (' + ', '.join(f'{k}: {v}' for k, v in sorted(by_kind.items())) + ')' if by_kind else '')
    )
    lines += [f'  {s["message"]}' for s in sk['samples'][:max_lines]]
    lines.append(f'unpaired images (no annotation refers to them): {len(manifest["unpaired"])}')
    lines += [f'  {u}' for u in manifest['unpaired'][:max_lines]]
    return '\n'.join(lines) + '\n'
