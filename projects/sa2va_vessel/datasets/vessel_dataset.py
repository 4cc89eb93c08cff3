"""`VesselSegDataset`: one vessel image -> one Sa2VA training sample.

Layout under `data_root` (what tools/make_synthetic_vessels.py and tools/prepare_dataset.py
write): `images/<stem>.<ext>`, `masks/<stem>.<ext>`, optional `fov/<stem>.<ext>`, and
`splits/<split>.txt` with one stem per line. Files are found by files.py (the checker's
resolver: case-insensitive extensions, duplicate stems refused). Masks are binarised by the
rule in readers.py (8-bit: pixel > 127) and judged by mask_validation.py the first time each is
read (empty, all-vessel, mostly vessel, non-binary, alpha channel, 16-bit range); the verdict is
cached, so later epochs pay nothing.

The checkpoint directory `model_path` supplies the tokenizer and, from its `config.json` (read by
checkpoint_config.py, the model's reader too), `template`, `force_image_size`, `min_dynamic_patch`,
`max_dynamic_patch`, `use_thumbnail`, `dynamic_image_size`, `downsample_ratio` and
`vision_config.patch_size`. Items are built by sample.py, which inference on bare images uses too.

The MLLM family comes from that `config.json` too (never from a dataset option): a Qwen2.5-VL or
Qwen3-VL Sa2VA checkpoint gets the Qwen-VL image processor (`qwen_image_processing.py`, settings
from its `preprocessor_config.json`), `<|image_pad|>` image tokens and M-RoPE position ids, and its
items carry `pixel_values` (patches, (N, 3*T*p*p)), `image_grid_thw` (1, 3) and `position_ids` (3, L).
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import numpy as np
from torch.utils.data import Dataset

from ..registry import DATASETS, TRANSFORMS
from .check import quick_check
from .checkpoint_config import checkpoint_inputs
from .conversation import SEG_ANSWERS, VESSEL_QUESTIONS, make_question, pick_answer, pick_question
from .epoch_samplers import split_epoch_index
from .fast_tokenizer import load_fast_tokenizer
from .files import DuplicateStemError, resolve_pairs
from .mask_validation import MaskProblem, MaskRules, MaskValidationError, as_rules, check_mask_values
from .readers import DataReadError, mask_from_raw, read_image, read_mask, read_mask_raw
from .sample import SampleBuilder
from .splits import check_split_leaks

logger = logging.getLogger(__name__)


def load_tokenizer(path: str | Path):
    """The checkpoint's tokenizer, fast, converted from a slow one at most once (fast_tokenizer.py)."""
    return load_fast_tokenizer(path)


def read_split(path: str | Path) -> List[str]:
    """Stems listed in a split file (blank lines and '#' comments ignored)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f'{p}: split file not found')
    stems = [ln.strip() for ln in p.read_text().splitlines()]
    stems = [s for s in stems if s and not s.startswith('#')]
    if not stems:
        raise ValueError(f'{p}: split file lists no samples')
    return stems


@DATASETS.register_module()
class VesselSegDataset(Dataset):
    """Vessel images with binary masks as Sa2VA samples (see module docstring).

    Args:
        data_root: folder with images/, masks/, optional fov/ and splits/.
        split: 'train' or 'val' (any name with a splits/<split>.txt works).
        model_path: Sa2VA checkpoint folder (tokenizer + config.json).
        max_dynamic_patch: overrides config.json's maximum number of tiles.
        random_question: pick question/answer at random (default: True for 'train').
        seed: base seed of the question choice (and of `transform` when it is random).
        tokenizer_path: tokenizer folder when it is not `model_path`.
        transform: optional callable (image, mask, fov, rng) -> (image, mask, fov) applied
            before tiling (augmentation; geometric changes must move mask and fov too), or
            a TRANSFORMS config dict such as dict(type='VesselAugment'). Leave None for val.
        questions, answers: the phrase lists to draw from.
        on_error: 'raise' (default, strict): a bad file raises DataReadError naming it
            (a bad mask: MaskValidationError naming the file and the problem);
            'skip': the bad sample is logged, counted in `self.skipped` (by problem kind in
            `self.skip_counts()`), and the next readable sample is returned instead.
        mask_rules: mask_validation.MaskRules or a dict of its fields, e.g.
            dict(max_vessel_fraction=0.6, allow_non_binary=True); default MaskRules().
        allow_large_images: read images above PIL's pixel limit (else ImageTooLargeError).
    """

    def __init__(
        self,
        data_root: str,
        split: str,
        model_path: str,
        max_dynamic_patch: Optional[int] = None,
        random_question: Optional[bool] = None,
        seed: int = 0,
        tokenizer_path: Optional[str] = None,
        transform: Optional[Callable | dict] = None,
        questions: tuple = VESSEL_QUESTIONS,
        answers: tuple = SEG_ANSWERS,
        on_error: str = 'raise',
        check_on_start: bool = True,
        mask_rules: Optional[MaskRules | dict] = None,
        allow_large_images: bool = False,
    ) -> None:
        super().__init__()
        if on_error not in ('raise', 'skip'):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.mask_rules = as_rules(mask_rules)
        self.allow_large_images = bool(allow_large_images)
        # Always (not only with check_on_start): val sharing images with test would let model
        # selection read test images; only split files are read, so this costs nothing.
        check_split_leaks(data_root, split)
        if check_on_start:
            # the header-level checks of tools/check_dataset.py, before hours of GPU time
            report = quick_check(data_root, allow_large_images=self.allow_large_images)
            if report.n_errors and on_error == 'raise':
                raise DataReadError(
                    f'{data_root}: the data set fails its checks '
                    f'(tools/check_dataset.py lists them all):\n{report.table()}'
                )
            if report.n_errors:  # on_error='skip': the bad samples are skipped and counted later
                logger.warning(
                    '%s: %d check error(s); their samples will be skipped:\n%s',
                    data_root,
                    report.n_errors,
                    report.table(),
                )
        self.on_error = on_error
        self.skipped: Dict[str, str] = {}  # img_path -> reason (per process/worker)
        self._skip_kinds: Dict[str, str] = {}  # img_path -> problem kind, for skip_counts()
        # mask path -> its problems, judged at its first read (per process/worker)
        self._mask_verdicts: Dict[str, List[MaskProblem]] = {}
        self.data_root = Path(data_root)
        self.split = split
        self.seed = int(seed)
        self.random_question = (split == 'train') if random_question is None else bool(random_question)
        if isinstance(transform, dict):  # from a config: dict(type='VesselAugment', ...)
            from . import transforms as _  # noqa: F401  (registers VesselAugment)

            transform = TRANSFORMS.build(transform)
        self.transform = transform
        self.questions = tuple(questions)
        self.answers = tuple(answers)

        inputs = checkpoint_inputs(model_path, max_dynamic_patch)  # before the tokenizer: names a bad config.json
        self.tokenizer = load_tokenizer(tokenizer_path or model_path)
        # the input settings (tiles, template) live in the builder, their one owner
        self.builder = SampleBuilder(inputs, self.tokenizer)
        self.template: str = self.builder.template

        self.samples = self._index(read_split(self.data_root / 'splits' / f'{split}.txt'))

    def _index(self, stems: List[str]) -> List[Dict[str, Optional[Path]]]:
        root = self.data_root
        files = resolve_pairs(root / 'images', root / 'masks', root / 'fov')
        samples, missing = [], []
        without_mask = {u.stem for u in files.unpaired if u.kind == 'image' and u.missing == 'mask'}
        for stem in stems:
            if stem in files.duplicate_stems:
                # never pick one of two files silently: the checker reports the same error
                raise DuplicateStemError(f'{root}: split {self.split!r}: {files.duplicate_stems[stem]}')
            pair = files.pairs.get(stem)
            if pair is None:
                missing.append(f'{stem} ({"mask" if stem in without_mask else "image"})')
                continue
            samples.append({'stem': stem, 'image': pair.image, 'mask': pair.mask, 'fov': pair.fov})
        if missing:
            shown = ', '.join(missing[:5]) + (' ...' if len(missing) > 5 else '')
            raise FileNotFoundError(
                f'{self.data_root}: {len(missing)} sample(s) of split {self.split!r} lack files: {shown}'
            )
        return samples

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        # epoch 0 once: without this, iterating would run on through the epoch-coded indices
        return (self[i] for i in range(len(self)))

    def _rng(self, epoch: int, item: int) -> random.Random:
        # Seeded by (seed, epoch, item): the same in every DataLoader worker, re-run and resumed run.
        return random.Random(f'{self.seed}:{epoch}:{item}')

    def load(self, index: int) -> Dict[str, Any]:
        """The raw arrays of one sample: image uint8 (H,W,3), mask/fov bool (H,W)."""
        entry = self.samples[index]
        image = read_image(entry['image'], self.allow_large_images)
        fov = read_mask(entry['fov'], self.allow_large_images) if entry['fov'] is not None else None
        if fov is not None and fov.shape != image.shape[:2]:
            raise DataReadError(
                f'{entry["fov"]}: FOV size {fov.shape[::-1]} (W, H) differs from '
                f'image {entry["image"]} size {image.shape[1::-1]}'
            )
        mask = self._read_mask(entry['mask'], fov, entry['image'], image.shape[:2])
        return {'image': image, 'mask': mask, 'fov': fov, 'img_path': str(entry['image'])}

    def _read_mask(self, path: Path, fov: Optional[np.ndarray], image_path: Path, image_hw: tuple) -> np.ndarray:
        """The mask, judged by mask_validation.py at its first read; a bad one raises
        MaskValidationError every time (from the cached verdict, without re-reading)."""
        key = str(path)
        verdict = self._mask_verdicts.get(key)
        if verdict:
            raise MaskValidationError(verdict)
        raw = read_mask_raw(path, self.allow_large_images)
        if raw.shape[:2] != tuple(image_hw):
            raise DataReadError(
                f'{path}: mask size {raw.shape[1::-1]} (W, H) differs from '
                f'image {image_path} size {tuple(image_hw)[::-1]}'
            )
        if verdict is not None:  # judged sound before: decode only
            return mask_from_raw(raw, path)
        checked = check_mask_values(raw, fov, self.mask_rules, key)
        self._mask_verdicts[key] = checked.errors
        checked.raise_for_errors()
        return checked.mask

    def skip_counts(self) -> Dict[str, int]:
        """How many samples were skipped (on_error='skip'), by problem kind ('unreadable' for
        files that failed to read)."""
        counts: Dict[str, int] = {}
        for kind in self._skip_kinds.values():
            counts[kind] = counts.get(kind, 0) + 1
        return counts

    def __getitem__(self, index: int) -> Dict[str, Any]:
        """The sample of a sampler index ``epoch * len(self) + item`` (``epoch_samplers``): the
        epoch picks the augmentation and question draws; a plain index is epoch 0."""
        epoch, item = split_epoch_index(index, len(self))
        if self.on_error == 'raise':
            return self._item(epoch, item)
        for step in range(len(self)):
            i = (item + step) % len(self)
            try:
                return self._item(epoch, i)
            except DataReadError as exc:
                path = str(self.samples[i]['image'])
                if path not in self.skipped:
                    self.skipped[path] = str(exc)
                    self._skip_kinds[path] = (
                        ', '.join(sorted({p.kind for p in exc.problems}))
                        if isinstance(exc, MaskValidationError)
                        else 'unreadable'
                    )
                    logger.warning(
                        'skipping sample %d (%d skipped so far: %s): %s', i, len(self.skipped), self.skip_counts(), exc
                    )
        raise DataReadError(f'{self.data_root}: every sample of split {self.split!r} failed to load')

    def _item(self, epoch: int, index: int) -> Dict[str, Any]:
        raw = self.load(index)
        rng = self._rng(epoch, index)
        image, mask, fov = raw['image'], raw['mask'], raw['fov']
        if self.transform is not None:
            image, mask, fov = self.transform(image, mask, fov, np.random.default_rng(rng.getrandbits(64)))

        qa_rng = rng if self.random_question else None
        question = make_question(pick_question(qa_rng, self.questions))
        answer = pick_answer(qa_rng, self.answers)
        # the frozen SAM2 encoder sees this image unchanged only without a transform, so only
        # then may the model reuse its features (models/feature_cache.py)
        return self.builder(
            image,
            mask,
            fov,
            question,
            answer,
            img_path=raw['img_path'],
            frozen_feature_key=raw['img_path'] if self.transform is None else None,
        )
