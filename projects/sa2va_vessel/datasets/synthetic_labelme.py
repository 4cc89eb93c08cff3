"""A fake LabelMe folder of angiography-like frames, with the true masks, for tests and the docs.

Frames are named ``P<pp>_V<v>_f<fff>.png`` (patients, videos, frame numbers). Vessels are
polygon strips along random polylines plus one ``linestrip``; the true mask is drawn with PIL
at the image size, independently of the converter. Every `foreign_every`-th file is written in
a `foreign_size` x `foreign_size` coordinate frame (its imageWidth/imageHeight say so), as
happens when annotating a resized copy; every `lying_every`-th file has those coordinates but
a header claiming the real size (the case no rescaling can fix: shapes sit off the vessels).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
from PIL import Image, ImageDraw

LINE_WIDTH = 3


def _strip(line: np.ndarray, half: float) -> List[Tuple[float, float]]:
    """A polygon of width 2*half around a polyline (offset along the vertex normals)."""
    d = np.gradient(line, axis=0)
    n = np.stack([-d[:, 1], d[:, 0]], axis=1)
    n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-9
    left, right = line + half * n, line - half * n
    return [tuple(map(float, p)) for p in np.concatenate([left, right[::-1]])]


def _frame(rng: np.random.Generator, size: int) -> Tuple[List[List[Tuple[float, float]]], List[Tuple[float, float]]]:
    polys = []
    for _ in range(3):
        start = rng.uniform(0.1, 0.9, 2) * size
        steps = rng.normal(0, size * 0.12, (5, 2)).cumsum(axis=0)
        line = np.clip(start + steps, 0.08 * size, 0.92 * size)
        polys.append(_strip(line, rng.uniform(1.5, 3.5)))
    strip = np.clip(
        rng.uniform(0.1, 0.9, 2) * size + rng.normal(0, size * 0.1, (4, 2)).cumsum(axis=0), 0.08 * size, 0.92 * size
    )
    return polys, [tuple(map(float, p)) for p in strip]


def write_fake_labelme(
    root: str | Path,
    n_patients: int = 3,
    videos: int = 2,
    frames: int = 3,
    size: int = 256,
    foreign_size: int = 800,
    foreign_every: int = 2,
    lying_every: int = 0,
    seed: int = 0,
) -> Dict[str, np.ndarray]:
    """Write images + LabelMe JSON under `root`; returns {name: true bool mask at `size`}."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    truths: Dict[str, np.ndarray] = {}
    i = 0
    for p in range(1, n_patients + 1):
        for v in range(1, videos + 1):
            for f in range(1, frames + 1):
                name = f'P{p:02d}_V{v}_f{f:03d}'
                polys, strip = _frame(rng, size)
                truth = Image.new('L', (size, size), 0)
                draw = ImageDraw.Draw(truth)
                for poly in polys:
                    draw.polygon(poly, fill=1, outline=1)
                draw.line(strip, fill=1, width=LINE_WIDTH, joint='curve')
                r = LINE_WIDTH / 2.0
                for x, y in (strip[0], strip[-1]):
                    draw.ellipse([x - r, y - r, x + r, y + r], fill=1)
                mask = np.asarray(truth).astype(bool)
                # Angiography-like: dark vessels on a bright, noisy background.
                img = rng.normal(170, 12, (size, size)) - 90 * mask
                Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).convert('RGB').save(root / f'{name}.png')
                i += 1
                foreign = foreign_every and i % foreign_every == 0
                lying = lying_every and i % lying_every == 0
                k = foreign_size / size if (foreign or lying) else 1.0
                header = size if (lying or not foreign) else foreign_size
                shapes = [
                    {
                        'label': 'vessel',
                        'shape_type': 'polygon',
                        'points': [[x * k, y * k] for x, y in poly],
                        'group_id': None,
                        'flags': {},
                    }
                    for poly in polys
                ]
                shapes.append(
                    {
                        'label': 'vessel',
                        'shape_type': 'linestrip',
                        'points': [[x * k, y * k] for x, y in strip],
                        'group_id': None,
                        'flags': {},
                    }
                )
                doc = {
                    'version': '5.4.1',
                    'flags': {},
                    'shapes': shapes,
                    'imagePath': f'{name}.png',
                    'imageData': None,
                    'imageHeight': header,
                    'imageWidth': header,
                }
                (root / f'{name}.json').write_text(json.dumps(doc))
                truths[name] = mask
    return truths
