"""A contact sheet of a canonical data set: every image with its mask outline, to check labels by.

Each tile is the image shrunk to `thumb` px with the mask outline drawn on it (green), the file
stem underneath; flagged samples (a check issue, a rescaled annotation frame, skipped shapes)
come first, with a red frame and the reason in red. Misplaced polygons (e.g. drawn in an
800x800 frame on a 512x512 image) show as outlines off the vessels at a glance.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .grouping import natural_key
from .progress import progress
from .readers import IMAGE_EXTENSIONS, DataReadError, read_image, read_mask

OUTLINE = (0, 255, 0)
FLAG = (230, 40, 40)


def _by_stem(folder: Path) -> Dict[str, Path]:
    out: Dict[str, Path] = {}
    for f in sorted(folder.iterdir()) if folder.is_dir() else []:
        for ext in IMAGE_EXTENSIONS:
            if f.is_file() and f.name.lower().endswith(ext):
                out[f.name[: -len(ext)]] = f
                break
    return out


def manifest_flags(data_root: str | Path) -> Dict[str, List[str]]:
    """{stem: reasons} from manifest.json: rescaled annotation frames and skipped shapes."""
    path = Path(data_root) / 'manifest.json'
    flags: Dict[str, List[str]] = defaultdict(list)
    if not path.is_file():
        return {}
    for rec in json.loads(path.read_text()).get('samples', []):
        if rec.get('rescaled'):
            fx, fy = rec['rescaled']['factor_xy']
            flags[rec['stem']].append(f'rescaled x{fx:.3g}' if fx == fy else f'rescaled x{fx:.3g},{fy:.3g}')
        kinds = [p['kind'] for p in rec.get('skipped_shapes', [])]
        for kind in sorted(set(kinds)):
            flags[rec['stem']].append(f'{kinds.count(kind)} {kind}')
    return dict(flags)


def report_flags(issues: Sequence[object], data_root: str | Path) -> Dict[str, List[str]]:
    """{stem: reasons} from a check report's issues (anything with `.kind` and `.file`)."""
    stems = set(_by_stem(Path(data_root) / 'images'))
    flags: Dict[str, List[str]] = defaultdict(list)
    for issue in issues:
        name = Path(str(getattr(issue, 'file'))).name
        stem = next((s for s in stems if name.startswith(s + '.')), None)
        if stem is not None and getattr(issue, 'kind') not in flags[stem]:
            flags[stem].append(str(getattr(issue, 'kind')))
    return {k: v for k, v in flags.items() if v}


def merge_flags(*parts: Mapping[str, List[str]]) -> Dict[str, List[str]]:
    out: Dict[str, List[str]] = defaultdict(list)
    for part in parts:
        for stem, reasons in part.items():
            out[stem] += [r for r in reasons if r not in out[stem]]
    return dict(out)


def _outline(mask: np.ndarray) -> np.ndarray:
    """Pixels of `mask` with a 4-neighbour outside it (thin vessels are their own outline)."""
    p = np.pad(mask, 1)
    inner = p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return mask & ~inner


def _tile(image: np.ndarray, mask: Optional[np.ndarray], thumb: int) -> Image.Image:
    h, w = image.shape[:2]
    s = thumb / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    tile = Image.fromarray(image).resize(size, Image.Resampling.BILINEAR)
    if mask is not None and mask.shape == (h, w):
        # BOX then > 0 keeps 1-2 px vessels that nearest-neighbour would drop.
        small = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.Resampling.BOX)) > 0
        arr = np.asarray(tile).copy()
        arr[_outline(small)] = OUTLINE
        tile = Image.fromarray(arr)
    return tile


def write_contact_sheet(
    data_root: str | Path,
    out_path: str | Path,
    flags: Optional[Mapping[str, List[str]]] = None,
    thumb: int = 160,
    columns: int = 8,
    max_images: Optional[int] = None,
) -> Path:
    """Write the contact sheet PNG of `data_root` (images/, masks/) to `out_path`; flagged first."""
    root = Path(data_root)
    images, masks = _by_stem(root / 'images'), _by_stem(root / 'masks')
    if not images:
        raise FileNotFoundError(f'{root / "images"}: no images for a contact sheet')
    flags = dict(flags or {})
    order = sorted(images, key=lambda s: (s not in flags, natural_key(s)))
    if max_images is not None:
        order = order[:max_images]
    font = ImageFont.load_default()
    text_h = 12
    cell_w, cell_h = thumb + 8, thumb + 8 + 2 * text_h
    cols = max(1, min(columns, len(order)))
    rows = (len(order) + cols - 1) // cols
    sheet = Image.new('RGB', (cols * cell_w, rows * cell_h), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    max_chars = max(4, thumb // 6)
    for i, stem in enumerate(progress(order, desc='contact sheet', unit='img')):
        x, y = (i % cols) * cell_w, (i // cols) * cell_h
        try:
            image = read_image(images[stem])
            mask = read_mask(masks[stem]) if stem in masks else None
            tile = _tile(image, mask, thumb)
        except DataReadError:
            tile = Image.new('RGB', (thumb, thumb), (80, 0, 0))  # unreadable: the check report says why
        sheet.paste(tile, (x + 4 + (thumb - tile.width) // 2, y + 4 + (thumb - tile.height) // 2))
        reasons = flags.get(stem)
        if reasons:
            draw.rectangle([x + 1, y + 1, x + cell_w - 2, y + thumb + 6], outline=FLAG, width=2)
        name = stem if len(stem) <= max_chars else stem[: max_chars - 1] + '~'
        draw.text((x + 4, y + thumb + 7), name, fill=(230, 230, 230), font=font)
        if reasons:
            why = '; '.join(reasons)
            draw.text((x + 4, y + thumb + 7 + text_h), why[:max_chars], fill=FLAG, font=font)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out
