"""The named errors of annotation files (LabelMe, COCO, ARCADE), one class per problem.

Every class has a short `kind`, used to count skips (``--on-error skip``) in the manifest and
the report. All are DataReadError, so callers that catch that keep working.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .readers import DataReadError


class AnnotationError(DataReadError):
    """An annotation file or one of its shapes cannot become a mask."""

    kind = 'bad annotation'


class ShapeOutsideImageError(AnnotationError):
    """A shape reaches outside the image (after any rescaling to the real image size)."""

    kind = 'outside image'


class DegenerateShapeAnnotationError(AnnotationError):
    """A polygon with fewer than 3 distinct points or zero area; a zero-size rectangle/circle/line."""

    kind = 'degenerate shape'


class UnknownLabelError(AnnotationError):
    """A shape label (or COCO category) that is neither a vessel label nor an ignored one."""

    kind = 'unknown label'


class UnsupportedShapeError(AnnotationError):
    """A shape type this converter does not turn into area (e.g. LabelMe 'point')."""

    kind = 'unsupported shape'


class EmptyMaskError(AnnotationError):
    """No vessel pixel is left for a sample (no shapes, or every shape skipped)."""

    kind = 'empty mask'


class ImageSizeMismatchError(AnnotationError):
    """The annotation's image size differs from the real image where it cannot be rescaled (COCO)."""

    kind = 'size mismatch'


def load_json(path: str | Path) -> Any:
    """Parse a JSON file; errors name the file."""
    try:
        return json.loads(Path(path).read_text(encoding='utf-8'))
    except FileNotFoundError:
        raise AnnotationError(f'{path}: file not found') from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AnnotationError(f'{path}: invalid JSON ({exc})') from None
