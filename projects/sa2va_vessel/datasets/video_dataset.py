"""`VesselVideoDataset`: clips of K frames of one video -> one Sa2VA video training sample.

Layout: the canonical one (`images/`, `masks/`, optional `fov/`, `splits/<split>.txt` listing frame
stems), with frames grouped into videos by

- `frames.csv` under `data_root` when present: columns `stem,video,frame` (frame an integer
  index; extra columns such as `patient` are ignored): the hook for a manifest with grouping;
- otherwise the stem rule `<video>_f<index>` (e.g. `pat03_run2_f0017`), which
  `synthetic_video.write_synthetic_video_dataset` writes.

A frame without a mask file is UNLABELLED: it is in the clip (the LLM and SAM2 see it) but gets
no loss. Clips: `clip_len` frames (default 5, the official choice) `frame_stride` apart, in order;
the start is random in training and chosen among the starts whose clip holds at least one labelled
frame when the video has any (labelled frames are always included where the clip allows).

The start is drawn from a generator seeded by (seed, epoch, item), never from a global RNG state, so
it is the same in every DataLoader worker, re-run and resumed run. The epoch reaches the dataset
inside the index: the video configs' train sampler, `epoch_samplers.EpochStreamSampler`, is
mmengine's `DefaultSampler` order yielding ``epoch * len(dataset) + item``. The index crosses into the worker processes with the
sample, so persistent workers see each new epoch (a hook setting an attribute on the main process's
dataset would not reach them), and a resumed run, whose loop sets the sampler's epoch from the
iteration (`engine.resumable_loop`), draws the clips of the uninterrupted run without any state of its
own in the checkpoint. A plain index below ``len(dataset)`` is epoch 0. A video shorter than the clip
gives a shorter clip (the stride shrinks first). Each frame is ONE 448 px tile, as the official
video path; the prompt holds one image block per frame.
"""

from __future__ import annotations

import csv
import logging
import random
import re
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from ..registry import DATASETS, FUNCTIONS
from .checkpoint_config import checkpoint_inputs
from .collate import vessel_collate
from .conversation import SEG_ANSWERS, VESSEL_QUESTIONS, encode_turn, make_question, pick_answer, pick_question
from .epoch_samplers import split_epoch_index
from .files import DuplicateStemError, index_folder  # the one file resolver of checker and dataset
from .readers import DataReadError, read_image, read_mask
from .vessel_dataset import load_tokenizer, read_split
from .video_inputs import video_g_pixel_values, video_pixel_values, video_token_string

logger = logging.getLogger(__name__)

FRAME_STEM = re.compile(r'^(?P<video>.+)_f(?P<frame>\d+)$')
FRAMES_CSV = 'frames.csv'


def find_frame_file(folder: Path, stem: str) -> Optional[Path]:
    """The image/mask file of a frame stem in ``folder`` (any image extension), or None."""
    return _folder_files(folder).get(stem)


def _folder_files(folder: Path) -> Dict[str, Path]:
    index = index_folder(folder)
    if index.duplicates:
        d = index.duplicates[0]
        raise DuplicateStemError(
            f'{folder}: stem {d.stem!r} has {len(d.paths)} files ({", ".join(p.name for p in d.paths)}); keep one'
        )
    return index.files


def group_frames(stems: Sequence[str], data_root: Optional[Path] = None) -> Dict[str, List[Tuple[int, str]]]:
    """{video: [(frame index, stem), ...] sorted by index} (module docstring rules)."""
    table: Dict[str, Tuple[str, int]] = {}
    csv_path = None if data_root is None else Path(data_root) / FRAMES_CSV
    if csv_path is not None and csv_path.is_file():
        with open(csv_path, newline='') as f:
            for row_no, row in enumerate(csv.DictReader(f), start=2):
                try:
                    table[row['stem']] = (row['video'], int(row['frame']))
                except (KeyError, ValueError, TypeError) as exc:
                    raise DataReadError(
                        f'{csv_path}: line {row_no}: needs stem,video,frame with an integer frame ({exc})'
                    ) from None
    groups: Dict[str, List[Tuple[int, str]]] = {}
    bad = []
    for stem in stems:
        if stem in table:
            video, idx = table[stem]
        else:
            match = FRAME_STEM.match(stem)
            if match is None:
                bad.append(stem)
                continue
            video, idx = match['video'], int(match['frame'])
        groups.setdefault(video, []).append((idx, stem))
    if bad:
        raise DataReadError(
            f'{data_root}: {len(bad)} frame stem(s) name no video (expected <video>_f<index> '
            f'or a row in {FRAMES_CSV}): {bad[:5]}'
        )
    for video, frames in groups.items():
        frames.sort()
        idx = [i for i, _ in frames]
        if len(set(idx)) != len(idx):
            raise DataReadError(f'{data_root}: video {video!r} lists a frame index twice: {idx}')
    return groups


def clip_positions(
    n_frames: int, clip_len: int, stride: int, labelled: Sequence[bool], rng: Optional[random.Random]
) -> List[int]:
    """Positions (into the video's frame list) of one clip; random start when ``rng`` is given."""
    stride = max(1, stride)
    while stride > 1 and (clip_len - 1) * stride + 1 > n_frames:
        stride -= 1
    k = min(clip_len, n_frames)
    span = (k - 1) * stride + 1
    starts = list(range(0, n_frames - span + 1))
    covering = [s for s in starts if any(labelled[s + j * stride] for j in range(k))]
    candidates = covering or starts
    start = rng.choice(candidates) if rng is not None else candidates[0]
    return [start + j * stride for j in range(k)]


@DATASETS.register_module()
class VesselVideoDataset(Dataset):
    """Video clips as Sa2VA samples (module docstring).

    Args:
        data_root, split, model_path, seed, tokenizer_path, questions, answers: as VesselSegDataset.
        clip_len: frames per clip (K). frame_stride: frames between clip frames.
        clips_per_video: items per video and epoch (training draws a fresh random clip for each).
        random_start: random clip starts (default: True for 'train'); else every clip of a video that
            holds a labelled frame, tiling the video without overlap.
    """

    def __init__(
        self,
        data_root: str,
        split: str,
        model_path: str,
        clip_len: int = 5,
        frame_stride: int = 1,
        clips_per_video: int = 1,
        random_start: Optional[bool] = None,
        random_question: Optional[bool] = None,
        seed: int = 0,
        tokenizer_path: Optional[str] = None,
        questions: tuple = VESSEL_QUESTIONS,
        answers: tuple = SEG_ANSWERS,
    ) -> None:
        super().__init__()
        if clip_len < 1 or frame_stride < 1 or clips_per_video < 1:
            raise ValueError('clip_len, frame_stride and clips_per_video must be >= 1')
        self.data_root, self.split, self.seed = Path(data_root), split, int(seed)
        self.clip_len, self.frame_stride = clip_len, frame_stride
        self.random_start = (split == 'train') if random_start is None else bool(random_start)
        self.random_question = (split == 'train') if random_question is None else bool(random_question)
        self.questions, self.answers = tuple(questions), tuple(answers)
        inputs = checkpoint_inputs(model_path)
        self.template, self.tokens_per_tile, self.tile_size = inputs.template, inputs.tokens_per_tile, inputs.image_size
        self.tokenizer = load_tokenizer(tokenizer_path or model_path)
        self.videos = self._index(read_split(self.data_root / 'splits' / f'{split}.txt'))
        if self.random_start:
            self.items = [(v, None) for v in range(len(self.videos)) for _ in range(clips_per_video)]
        else:
            self.items = [(v, pos) for v in range(len(self.videos)) for pos in self._tiling(self.videos[v])]
        if not self.items:
            raise ValueError(f'{self.data_root}: split {split!r} gives no clip with a labelled frame')

    def _index(self, stems: List[str]) -> List[Dict[str, Any]]:
        videos, missing = [], []
        fov_dir = self.data_root / 'fov'
        images, masks = _folder_files(self.data_root / 'images'), _folder_files(self.data_root / 'masks')
        fovs = _folder_files(fov_dir) if fov_dir.is_dir() else {}
        for video, frames in sorted(group_frames(stems, self.data_root).items()):
            entries = []
            for idx, stem in frames:
                image = images.get(stem)
                if image is None:
                    missing.append(stem)
                    continue
                entries.append(
                    {'stem': stem, 'index': idx, 'image': image, 'mask': masks.get(stem), 'fov': fovs.get(stem)}
                )
            videos.append({'video': video, 'frames': entries})
        if missing:
            raise FileNotFoundError(
                f'{self.data_root}: {len(missing)} frame(s) of split {self.split!r} have no image: {missing[:5]}'
            )
        return videos

    def _tiling(self, video: Dict[str, Any]) -> List[List[int]]:
        n, labelled = len(video['frames']), [f['mask'] is not None for f in video['frames']]
        clips, start = [], 0
        span = (min(self.clip_len, n) - 1) * self.frame_stride + 1
        while start < n:
            pos = [p for p in range(start, min(n, start + span), self.frame_stride)]
            if any(labelled[p] for p in pos):
                clips.append(pos)
            start += span
        return clips

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        # epoch 0 once: without this, iterating would run on through the epoch-coded indices
        return (self[i] for i in range(len(self)))

    def split_index(self, index: int) -> Tuple[int, int]:
        """(epoch, item) of a sampler index ``epoch * len(self) + item`` (module docstring)."""
        try:
            return split_epoch_index(index, len(self.items))
        except IndexError as exc:
            raise IndexError(f'{self.data_root}: clip {exc}') from None

    def clip_rng(self, epoch: int, item: int) -> random.Random:
        """The generator of one item's clip start and question in one epoch."""
        return random.Random(f'video:{self.seed}:{epoch}:{item}')

    def __getitem__(self, index: int) -> Dict[str, Any]:
        epoch, item = self.split_index(index)
        v, positions = self.items[item]
        video = self.videos[v]
        rng = self.clip_rng(epoch, item)
        labelled_all = [f['mask'] is not None for f in video['frames']]
        if positions is None:
            positions = clip_positions(len(video['frames']), self.clip_len, self.frame_stride, labelled_all, rng)
        frames = [video['frames'][p] for p in positions]
        images = [read_image(f['image']) for f in frames]
        size = images[0].shape[:2]
        masks = []
        for f, image in zip(frames, images):
            if image.shape[:2] != size:
                raise DataReadError(
                    f"{f['image']}: frame size {image.shape[:2]} differs from the clip's first frame {size}"
                )
            mask = read_mask(f['mask']) if f['mask'] is not None else np.zeros(size, bool)
            if mask.shape != size:
                raise DataReadError(f'{f["mask"]}: mask size {mask.shape} differs from its image {size}')
            masks.append(mask)
        fov = read_mask(frames[0]['fov']) if frames[0]['fov'] is not None else None
        qa_rng = rng if self.random_question else None
        question = make_question(pick_question(qa_rng, self.questions))
        answer = pick_answer(qa_rng, self.answers)
        turn = encode_turn(
            self.tokenizer,
            question,
            answer,
            n_tiles=len(frames),
            template=self.template,
            tokens_per_tile=self.tokens_per_tile,
            image_string=video_token_string(len(frames), self.tokens_per_tile),
        )
        return {
            'pixel_values': video_pixel_values(images, self.tile_size),  # (K, 3, 448, 448)
            'g_pixel_values': torch.cat([video_g_pixel_values(im) for im in images]),  # (K, 3, 1024, 1024)
            'input_ids': torch.tensor(turn.input_ids, dtype=torch.long),
            'labels': torch.tensor(turn.labels, dtype=torch.long),
            'masks': torch.from_numpy(np.stack(masks)),  # (K, H, W) bool
            'labelled': torch.tensor([f['mask'] is not None for f in frames]),  # (K,) bool
            'n_tiles': len(frames),
            'img_path': str(frames[0]['image']),
            'frame_paths': [str(f['image']) for f in frames],
            'video': video['video'],
            'frame_indices': [f['index'] for f in frames],
            'frozen_feature_key': None,
            'ori_size': (int(size[0]), int(size[1])),
            'fov': None if fov is None else np.ascontiguousarray(fov),
            'pad_token_id': int(self.tokenizer.pad_token_id),
        }


@FUNCTIONS.register_module()
def video_collate(
    samples: Sequence[Dict[str, Any]], pad_token_id: Optional[int] = None, pad_to_multiple_of: Optional[int] = None
) -> Dict[str, Any]:
    """``vessel_collate`` for clips: SAM2 inputs flattened to (sum K, 3, 1024, 1024) with
    ``data['frames_per_sample']`` (B,) and ``data['labelled']`` (B x (K,)); each data sample's
    ``mask`` holds its labelled frames only (what the metric scores). ``pad_to_multiple_of`` as
    ``vessel_collate`` (the image configs set it, and the video configs inherit it)."""
    # vessel_collate stacks one SAM2 image per sample: hand it the first frame, then put the clips back
    batch = vessel_collate(
        [{**s, 'g_pixel_values': s['g_pixel_values'][0]} for s in samples], pad_token_id, pad_to_multiple_of
    )
    data = batch['data']
    data['g_pixel_values'] = torch.cat([s['g_pixel_values'] for s in samples], dim=0)
    data['frames_per_sample'] = torch.tensor([int(s['g_pixel_values'].shape[0]) for s in samples])
    data['labelled'] = [s['labelled'].to(torch.bool) for s in samples]
    for ds, s in zip(batch['data_samples'], samples):
        ds['mask'] = s['masks'][s['labelled']].to(torch.bool).numpy()
        ds['video'], ds['frame_indices'], ds['frame_paths'] = s['video'], s['frame_indices'], s['frame_paths']
        # frames are read unchanged (no augmentation), so the frozen encoders' features may be cached
        ds['frozen_feature_key'] = '|'.join(s['frame_paths'])
    return batch
