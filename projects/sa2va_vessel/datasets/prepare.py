"""Public vessel data sets in their published folder layouts -> the canonical layout.

Canonical: `images/<stem>.png` (8-bit RGB), `masks/<stem>.png` (0/255), `fov/<stem>.png`
when the source has FOV masks (or `estimate_fov`), `splits/*.txt`, and `manifest.json`
(source, per-sample source files with sha256 and sizes, group, official split).

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
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
from PIL import Image

from .progress import progress
from .readers import read_image, read_mask
from .splits import split_by_groups, write_split_files


@dataclass
class SourceSample:
    stem: str
    image: Path
    mask: Path
    fov: Optional[Path] = None
    group: Optional[str] = None
    official_split: Optional[str] = None  # 'train' / 'test' where the source defines one


def _files(folder: Path) -> Dict[str, Path]:
    """{lower-case file name: path} of a folder (empty when it does not exist)."""
    if not folder.is_dir():
        return {}
    return {f.name.lower(): f for f in folder.iterdir() if f.is_file()}


def _subdir(root: Path, name: str) -> Path:
    """`root/name`, matched case-insensitively."""
    for d in root.iterdir() if root.is_dir() else []:
        if d.is_dir() and d.name.lower() == name.lower():
            return d
    return root / name


def _require(samples: List[SourceSample], name: str, root: Path) -> List[SourceSample]:
    if not samples:
        raise FileNotFoundError(f"{root}: no {name} samples found; is this the unpacked {name} folder?")
    return samples


def find_drive(root: Path) -> List[SourceSample]:
    out = []
    for part, split in (("training", "train"), ("test", "test")):
        base = _subdir(root, part)
        manual = _files(_subdir(base, "1st_manual"))
        fovs = _files(_subdir(base, "mask"))
        for name, img in sorted(_files(_subdir(base, "images")).items()):
            m = re.match(r"(\d+)_(training|test)\.tif{1,2}$", name)
            if not m:
                continue
            num = m.group(1)
            mask = manual.get(f"{num}_manual1.gif")
            if mask is None:
                continue  # older DRIVE test releases ship no manual labels
            fov = fovs.get(f"{num}_{m.group(2)}_mask.gif")
            out.append(SourceSample(f"drive_{num}", img, mask, fov, group=num, official_split=split))
    return _require(out, "DRIVE", root)


def find_chase_db1(root: Path) -> List[SourceSample]:
    files = _files(root)
    out = []
    for name, img in sorted(files.items()):
        m = re.match(r"image_(\d+)([lr])\.jpg$", name)
        if m and f"image_{m.group(1)}{m.group(2)}_1stho.png" in files:
            stem = f"chase_Image_{m.group(1)}{m.group(2).upper()}"
            out.append(SourceSample(stem, img, files[f"image_{m.group(1)}{m.group(2)}_1stho.png"],
                                    group=m.group(1)))
    return _require(out, "CHASE_DB1", root)


def find_stare(root: Path) -> List[SourceSample]:
    images = _files(_subdir(root, "stare-images"))
    labels = _files(_subdir(root, "labels-ah"))
    out = []
    for name, img in sorted(images.items()):
        m = re.match(r"(im\d+)\.ppm(\.gz)?$", name)
        if not m:
            continue
        mask = labels.get(f"{m.group(1)}.ah.ppm") or labels.get(f"{m.group(1)}.ah.ppm.gz")
        if mask is not None:
            out.append(SourceSample(f"stare_{m.group(1)}", img, mask, group=m.group(1)))
    return _require(out, "STARE", root)


def find_hrf(root: Path) -> List[SourceSample]:
    manual = _files(_subdir(root, "manual1"))
    fovs = _files(_subdir(root, "mask"))
    out = []
    for name, img in sorted(_files(_subdir(root, "images")).items()):
        m = re.match(r"(\d+_(?:h|g|dr))\.jpe?g$", name)
        if m and f"{m.group(1)}.tif" in manual:
            key = m.group(1)
            out.append(SourceSample(f"hrf_{key}", img, manual[f"{key}.tif"], fovs.get(f"{key}_mask.tif"),
                                    group=key))
    return _require(out, "HRF", root)


def find_fives(root: Path) -> List[SourceSample]:
    out = []
    for part, split in (("train", "train"), ("test", "test")):
        base = _subdir(root, part)
        gts = _files(_subdir(base, "Ground truth"))
        for name, img in sorted(_files(_subdir(base, "Original")).items()):
            if name in gts:
                stem = Path(img.name).stem
                out.append(SourceSample(f"fives_{split}_{stem}", img, gts[name], group=f"{split}_{stem}",
                                        official_split=split))
    return _require(out, "FIVES", root)


def find_xcad(root: Path) -> List[SourceSample]:
    base = _subdir(root, "test")
    masks = _files(_subdir(base, "masks"))
    out = []
    for name, img in sorted(_files(_subdir(base, "images")).items()):
        if name in masks:
            stem = Path(img.name).stem
            out.append(SourceSample(f"xcad_{stem}", img, masks[name], group=stem, official_split="test"))
    return _require(out, "XCAD", root)


LAYOUTS: Dict[str, Callable[[Path], List[SourceSample]]] = {
    "drive": find_drive, "chase_db1": find_chase_db1, "stare": find_stare,
    "hrf": find_hrf, "fives": find_fives, "xcad": find_xcad,
}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def estimate_fov(image: np.ndarray, threshold: int = 20) -> np.ndarray:
    """A rough FOV for sources without one: pixels whose brightest channel exceeds `threshold`."""
    return image.max(axis=2) > threshold


def prepare_dataset(name: str, src_root: str | Path, out_dir: str | Path, estimate_missing_fov: bool = False,
                    val_fraction: float = 0.25, seed: int = 0) -> Dict[str, object]:
    """Convert one source data set; returns (and writes) the manifest.

    Splits: the official train/test split where the source has one (train.txt, and the test
    part as val.txt and test.txt); otherwise a seeded, group-aware train/val split. all.txt
    always lists every sample.
    """
    key = name.lower()
    if key not in LAYOUTS:
        raise KeyError(f"unknown data set {name!r}; known: {sorted(LAYOUTS)}")
    src, out = Path(src_root), Path(out_dir)
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: source folder not found")
    samples = LAYOUTS[key](src)
    for sub in ("images", "masks", "fov"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    records = []
    for s in progress(samples, desc=f"prepare {key}", unit="img"):
        image = read_image(s.image)
        mask = read_mask(s.mask)
        if mask.shape != image.shape[:2]:
            raise ValueError(f"{s.mask}: mask size {mask.shape[::-1]} differs from image {s.image} "
                             f"size {image.shape[1::-1]} (W, H)")
        fov = read_mask(s.fov) if s.fov is not None else (estimate_fov(image) if estimate_missing_fov else None)
        if fov is not None and fov.shape != mask.shape:
            raise ValueError(f"{s.fov}: FOV size {fov.shape[::-1]} differs from image {s.image}")
        Image.fromarray(image).save(out / "images" / f"{s.stem}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(out / "masks" / f"{s.stem}.png")
        if fov is not None:
            Image.fromarray(fov.astype(np.uint8) * 255).save(out / "fov" / f"{s.stem}.png")
        records.append({
            "stem": s.stem, "group": s.group, "official_split": s.official_split,
            "size_wh": [int(image.shape[1]), int(image.shape[0])],
            "image": {"source": str(s.image.relative_to(src)), "sha256": sha256_file(s.image)},
            "mask": {"source": str(s.mask.relative_to(src)), "sha256": sha256_file(s.mask),
                     "vessel_fraction": round(float(mask.mean()), 6)},
            "fov": ({"source": str(s.fov.relative_to(src)), "sha256": sha256_file(s.fov)} if s.fov is not None
                    else ({"source": "estimated"} if fov is not None else None)),
        })
    stems = [r["stem"] for r in records]
    splits: Dict[str, List[str]] = {"all": sorted(stems)}
    official = {r["official_split"] for r in records}
    if official == {"train", "test"}:
        splits["train"] = sorted(r["stem"] for r in records if r["official_split"] == "train")
        splits["val"] = splits["test"] = sorted(r["stem"] for r in records if r["official_split"] == "test")
    else:
        groups = {r["stem"]: r["group"] or r["stem"] for r in records}
        # Splitting on the group names themselves keeps group members together.
        tagged = [f"{groups[s]}\x1f{s}" for s in stems]
        train, val = split_by_groups(tagged, val_fraction, r"^([^\x1f]*)\x1f", seed)
        splits["train"] = sorted(t.split("\x1f", 1)[1] for t in train)
        splits["val"] = sorted(t.split("\x1f", 1)[1] for t in val)
    write_split_files(out, splits)
    manifest = {"source": key, "source_root": str(src.resolve()), "n_samples": len(records),
                "splits": {k: len(v) for k, v in splits.items()}, "samples": records}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest
