"""What a mask file holds, judged once, by one set of rules, for every tool.

Preparation (prepare.py), the dataset's first read of each mask (vessel_dataset.py) and the
checker (check.py) all call this module, so a mask that one of them refuses, all refuse.

    problems = validate_mask(path_or_array, fov=None, max_vessel_fraction=0.5)
    checked = read_checked_mask(path, fov=None, rules=MaskRules())  # one decode: mask + problems
    checked.raise_for_errors()                                      # MaskValidationError

`validate_mask` takes a file path, the raw values of `readers.read_mask_raw` (uint8/uint16,
(H, W) or (H, W, C) with C = 2 (LA), 3 (RGB), 4 (RGBA)), or a bool mask (content checks
only; e.g. a rasterised annotation). It returns a list of `MaskProblem`s, empty when sound.

Problem kinds (`MaskProblem.kind`), all errors unless a rule says otherwise:
- 'mask in alpha channel': the colour channels are uniform and the alpha channel varies; the
  readers drop alpha, so the vessels would vanish (RGB black) or fill everything (RGB white).
- 'channel layout': colour and alpha channels both vary and hold different masks.
- '16-bit value range': a 16-bit file whose values all stay below the 16-bit vessel threshold
  (> 32767) but above a 0/1 label map, e.g. 0/255 saved as 16 bits: it would read as empty.
- 'empty mask': no vessel pixel (inside the FOV when one is given).
- 'all-vessel mask': every pixel (of the FOV) is vessel.
- 'mostly vessel': more than `max_vessel_fraction` (default 0.5) of the FOV is vessel; vessels
  cover ~10 % of a fundus FOV, so this is almost always an inverted mask.
- 'non-binary mask': more than two distinct values after palette and colour resolution (a
  two-colour palette is binary); JPEG artefacts or anti-aliasing make the > 127 cut a guess.
  With `allow_non_binary=True` it is reported with severity 'warning' instead.
- 'empty FOV': the FOV given with the mask has no pixel.
When the layout problems (the first three) are found the content checks are skipped: the
decoded mask is wrong, so its fraction would mislead.

What a caller does with errors is its own mode: the dataset raises (on_error='raise') or skips
and counts (on_error='skip'); prepare refuses (or, with --skip-bad-masks, leaves the sample out
and lists it in the manifest); the checker reports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Union

import numpy as np

from .readers import DataReadError, mask_from_raw, read_mask_raw

ERROR, WARNING = 'error', 'warning'

EMPTY = 'empty mask'
ALL_VESSEL = 'all-vessel mask'
MOSTLY_VESSEL = 'mostly vessel'
NON_BINARY = 'non-binary mask'
ALPHA_CHANNEL = 'mask in alpha channel'
CHANNEL_LAYOUT = 'channel layout'
RANGE_16BIT = '16-bit value range'
EMPTY_FOV = 'empty FOV'
KINDS = (EMPTY, ALL_VESSEL, MOSTLY_VESSEL, NON_BINARY, ALPHA_CHANNEL, CHANNEL_LAYOUT, RANGE_16BIT, EMPTY_FOV)


@dataclass(frozen=True)
class MaskRules:
    """The configurable part of the rules (a dataset config may pass them as a dict)."""

    max_vessel_fraction: float = 0.5
    allow_non_binary: bool = False

    def __post_init__(self) -> None:
        if not 0.0 < float(self.max_vessel_fraction) <= 1.0:
            raise ValueError(f'max_vessel_fraction must be in (0, 1], got {self.max_vessel_fraction}')


def as_rules(rules: Union[MaskRules, dict, None]) -> MaskRules:
    """MaskRules from None (defaults), a dict (from a config) or MaskRules itself."""
    if rules is None:
        return MaskRules()
    if isinstance(rules, dict):
        return MaskRules(**rules)
    return rules


@dataclass(frozen=True)
class MaskProblem:
    kind: str  # one of KINDS
    file: str  # the mask file ('<array>' for in-memory masks)
    detail: str
    severity: str = ERROR

    @property
    def is_error(self) -> bool:
        return self.severity == ERROR

    def __str__(self) -> str:
        return f'{self.file}: {self.kind}: {self.detail}'


class MaskValidationError(DataReadError):
    """A mask holds something other than a sound binary vessel mask; `problems` lists why."""

    def __init__(self, problems: List[MaskProblem], message: Optional[str] = None) -> None:
        self.problems = list(problems)
        super().__init__(message or '; '.join(str(p) for p in self.problems))


@dataclass
class CheckedMask:
    """A mask as the readers decode it, and what is wrong with it (nothing when `ok`)."""

    mask: np.ndarray
    problems: List[MaskProblem] = field(default_factory=list)

    @property
    def errors(self) -> List[MaskProblem]:
        return [p for p in self.problems if p.is_error]

    @property
    def ok(self) -> bool:
        return not self.errors

    def raise_for_errors(self) -> None:
        if self.errors:
            raise MaskValidationError(self.errors)


def _layout_problems(raw: np.ndarray, name: str) -> List[MaskProblem]:
    """Alpha-channel and 16-bit range problems: the decoded mask would be wrong."""
    out: List[MaskProblem] = []
    if raw.ndim == 3 and raw.shape[2] in (2, 4):
        colour, alpha = raw[..., :-1].max(axis=2), raw[..., -1]
        if alpha.min() != alpha.max():
            if colour.min() == colour.max():
                out.append(
                    MaskProblem(
                        ALPHA_CHANNEL,
                        name,
                        f'the colour channels are uniform (value {int(colour.min())}) and the alpha channel '
                        f'varies: the vessels are in the alpha channel, which the readers drop (the mask '
                        f'would read as {"all vessel" if mask_from_raw(raw).all() else "empty"}); save the '
                        f'alpha channel as an 8-bit grey 0/255 mask',
                    )
                )
            else:
                from_colour, from_alpha = mask_from_raw(raw), mask_from_raw(alpha)
                if not np.array_equal(from_colour, from_alpha):
                    out.append(
                        MaskProblem(
                            CHANNEL_LAYOUT,
                            name,
                            f'the colour channels and the alpha channel hold different masks '
                            f'({int(from_colour.sum())} vs {int(from_alpha.sum())} vessel pixels); save the '
                            f'intended one as an 8-bit grey 0/255 mask',
                        )
                    )
    if raw.dtype == np.uint16:
        vmax = int(raw.max()) if raw.size else 0
        if 1 < vmax <= 32767:
            out.append(
                MaskProblem(
                    RANGE_16BIT,
                    name,
                    f'16-bit mask whose values stay at or below {vmax} (8-bit 0/255 saved as 16 bits?): '
                    f'under the 16-bit rule (> 32767 is vessel) it would read as empty; save it as 8-bit '
                    f'0/255 (or 16-bit 0/65535)',
                )
            )
    return out


def _grey(raw: np.ndarray) -> np.ndarray:
    """The values the binarisation rule thresholds: alpha dropped, maximum over colours."""
    if raw.ndim == 3:
        if raw.shape[2] in (2, 4):
            raw = raw[..., :-1]
        raw = raw.max(axis=2)
    return raw


def _distinct(values: np.ndarray) -> np.ndarray:
    if values.dtype in (np.uint8, np.uint16):
        return np.flatnonzero(np.bincount(values.reshape(-1)))  # faster than np.unique
    return np.unique(values)


def _content_problems(
    mask: np.ndarray, fov: Optional[np.ndarray], raw: Optional[np.ndarray], rules: MaskRules, name: str
) -> List[MaskProblem]:
    out: List[MaskProblem] = []
    if fov is not None:
        fov = np.asarray(fov, dtype=bool)
        if fov.shape != mask.shape:
            raise ValueError(f"{name}: FOV shape {fov.shape} differs from the mask's {mask.shape}")
        if not fov.any():
            return [MaskProblem(EMPTY_FOV, name, 'the FOV given with this mask has no pixel')]
    region = 'the FOV' if fov is not None else 'the image'
    inside = mask[fov] if fov is not None else mask.reshape(-1)
    n_vessel, n = int(inside.sum()), int(inside.size)
    if n_vessel == 0:
        if raw is not None and raw.dtype != bool and _grey(raw).size and int(_grey(raw).max()) > 0:
            why = (
                f'maximum value {int(_grey(raw).max())}, below the vessel threshold '
                f'(> {127 if raw.dtype == np.uint8 else 32767})'
            )
        else:
            why = 'all values 0'
        where = ' inside the FOV' if fov is not None and mask.any() else ''
        out.append(MaskProblem(EMPTY, name, f'no vessel pixel{where} ({why})'))
    elif n_vessel == n:
        out.append(MaskProblem(ALL_VESSEL, name, f'every pixel of {region} is vessel'))
    elif n_vessel / n > rules.max_vessel_fraction:
        out.append(
            MaskProblem(
                MOSTLY_VESSEL,
                name,
                f'{n_vessel / n:.1%} of {region} is vessel (limit {rules.max_vessel_fraction:.0%}, '
                f'max_vessel_fraction): an inverted mask?',
            )
        )
    if raw is not None and raw.dtype != bool:
        grey = _grey(raw)
        values = _distinct(grey)
        if len(values) > 2:
            lo, hi = int(values[0]), int(values[-1])
            between = float(((grey != lo) & (grey != hi)).mean())
            out.append(
                MaskProblem(
                    NON_BINARY,
                    name,
                    f'{len(values)} distinct values ({lo}..{hi}), {between:.1%} of the pixels between the '
                    f'lowest and the highest (JPEG or anti-aliasing?); save it as 0/255'
                    + ('' if rules.allow_non_binary else ' or allow it with allow_non_binary'),
                    WARNING if rules.allow_non_binary else ERROR,
                )
            )
    return out


def check_mask_values(
    raw: np.ndarray, fov: Optional[np.ndarray] = None, rules: Union[MaskRules, dict, None] = None, name: str = '<array>'
) -> CheckedMask:
    """Decode raw mask values (as `read_mask_raw` gives them) and judge them."""
    rules = as_rules(rules)
    raw = np.asarray(raw)
    if raw.dtype == bool and raw.ndim == 2:
        return CheckedMask(raw.copy(), _content_problems(raw, fov, None, rules, name))
    mask = mask_from_raw(raw, name)
    layout = _layout_problems(raw, name)
    if layout:
        return CheckedMask(mask, layout)
    return CheckedMask(mask, _content_problems(mask, fov, raw, rules, name))


def read_checked_mask(
    path: Union[str, Path],
    fov: Optional[np.ndarray] = None,
    rules: Union[MaskRules, dict, None] = None,
    allow_large: bool = False,
) -> CheckedMask:
    """Read a mask file once: the bool mask (readers.py's rule) and its problems.

    Unreadable files raise DataReadError as `readers.read_mask` does; problems are returned,
    not raised (call `raise_for_errors()` for the strict behaviour).
    """
    return check_mask_values(read_mask_raw(path, allow_large), fov, rules, str(path))


def validate_mask(
    source: Union[str, Path, np.ndarray],
    fov: Optional[np.ndarray] = None,
    max_vessel_fraction: float = 0.5,
    allow_non_binary: bool = False,
) -> List[MaskProblem]:
    """The problems of a mask file, raw value array or bool mask (see the module docstring)."""
    rules = MaskRules(max_vessel_fraction, allow_non_binary)
    if isinstance(source, (str, Path)):
        return read_checked_mask(source, fov, rules).problems
    return check_mask_values(source, fov, rules).problems
