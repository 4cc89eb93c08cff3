"""Patients, videos and frame order of the samples of a data set.

A sample's *name* is its source image path relative to the source root, without the
extension, with '/' separators (``P01_V02_f0007`` for a flat folder, ``P01/V02/f0007`` for
nested ones). Two ways to say who is who:

- ``--group-regex``: a regex searched in the name, with named groups ``patient`` (required),
  ``video`` and ``frame`` (digits), e.g. ``^(?P<patient>P\\d+)_(?P<video>V\\d+)_f(?P<frame>\\d+)``;
- ``--groups groups.csv``: a CSV with a header and the columns ``name,patient[,video][,frame]``.

Without ``video`` every patient is one video; without ``frame`` the frames of a video are
numbered in natural name order (``f2`` before ``f10``). Every sample must be covered, and no
two samples of one video may share a frame index: both would make the order ambiguous.

The grouping is stored per sample in ``manifest.json`` (``patient``, ``video``, ``frame``;
``group`` = patient, which the split tools read). :func:`video_frames` gives, per video, the
frame stems in order (the contract the video features build on).
"""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from .splits import kfold_splits, split_by_groups


class GroupingError(ValueError):
    """The grouping (regex or CSV) does not cover or does not fit the samples."""


@dataclass(frozen=True)
class SampleGroup:
    patient: str
    video: str
    frame: int


def natural_key(text: str) -> Tuple:
    """Sort key that orders digit runs by value: 'f2' < 'f10'."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r'(\d+)', text))


def _number_frames(partial: Dict[str, Tuple[str, str, Optional[int]]], source: str) -> Dict[str, SampleGroup]:
    """Fill missing frame indices by natural name order; refuse duplicate (video, frame)."""
    by_video: Dict[Tuple[str, str], List[str]] = defaultdict(list)
    for name, (patient, video, _) in partial.items():
        by_video[(patient, video)].append(name)
    out: Dict[str, SampleGroup] = {}
    for (patient, video), names in by_video.items():
        names.sort(key=natural_key)
        seen: Dict[int, str] = {}
        for i, name in enumerate(names):
            frame = partial[name][2]
            frame = i if frame is None else frame
            if frame in seen:
                raise GroupingError(
                    f'{source}: samples {seen[frame]!r} and {name!r} are both frame {frame} '
                    f'of patient {patient!r} video {video!r}'
                )
            seen[frame] = name
            out[name] = SampleGroup(patient, video, frame)
    return out


def groups_from_regex(names: Sequence[str], pattern: str) -> Dict[str, SampleGroup]:
    """{name: SampleGroup} from a regex with named groups patient[, video][, frame]."""
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise GroupingError(f'--group-regex {pattern!r}: invalid regex ({exc})') from None
    if 'patient' not in rx.groupindex:
        raise GroupingError(f'--group-regex {pattern!r}: needs a named group (?P<patient>...)')
    partial: Dict[str, Tuple[str, str, Optional[int]]] = {}
    unmatched = []
    for name in names:
        m = rx.search(name)
        if m is None or m.group('patient') is None:
            unmatched.append(name)
            continue
        video = m.group('video') if 'video' in rx.groupindex and m.group('video') is not None else ''
        frame = m.group('frame') if 'frame' in rx.groupindex else None
        if frame is not None and not frame.isdigit():
            raise GroupingError(f'--group-regex {pattern!r}: frame {frame!r} of sample {name!r} is not a number')
        partial[name] = (m.group('patient'), video, None if frame is None else int(frame))
    if unmatched:
        shown = ', '.join(repr(n) for n in unmatched[:5])
        raise GroupingError(
            f'--group-regex {pattern!r} does not match {len(unmatched)} sample(s): {shown}'
            + (' ...' if len(unmatched) > 5 else '')
        )
    return _number_frames(partial, f'--group-regex {pattern!r}')


def groups_from_csv(names: Sequence[str], path: str | Path) -> Dict[str, SampleGroup]:
    """{name: SampleGroup} from a CSV with columns name, patient[, video][, frame]."""
    path = Path(path)
    try:
        with open(path, newline='', encoding='utf-8') as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise GroupingError(f'{path}: groups file not found') from None
    if not rows or not {'name', 'patient'} <= set(rows[0]):
        raise GroupingError(f'{path}: needs a header with the columns name,patient[,video][,frame]')
    table: Dict[str, Tuple[str, str, Optional[int]]] = {}
    for i, row in enumerate(rows, start=2):
        name = (row.get('name') or '').strip()
        name = name.rsplit('.', 1)[0] if re.search(r'\.[A-Za-z]{2,4}$', name) else name  # tolerate 'x.png'
        patient = (row.get('patient') or '').strip()
        if not name or not patient:
            raise GroupingError(f'{path}: line {i}: empty name or patient')
        frame_text = (row.get('frame') or '').strip()
        if frame_text and not frame_text.isdigit():
            raise GroupingError(f'{path}: line {i}: frame {frame_text!r} is not a number')
        if name in table:
            raise GroupingError(f'{path}: line {i}: {name!r} listed twice')
        table[name] = (patient, (row.get('video') or '').strip(), int(frame_text) if frame_text else None)
    missing = [n for n in names if n not in table]
    if missing:
        raise GroupingError(
            f'{path}: no row for {len(missing)} sample(s): '
            + ', '.join(repr(n) for n in missing[:5])
            + (' ...' if len(missing) > 5 else '')
        )
    return _number_frames({n: table[n] for n in names}, str(path))


def resolve_groups(
    names: Sequence[str], group_regex: Optional[str] = None, groups_csv: Optional[str | Path] = None
) -> Optional[Dict[str, SampleGroup]]:
    """The grouping asked for on the command line, or None when neither option is given."""
    if group_regex and groups_csv:
        raise GroupingError('give --group-regex or --groups, not both')
    if group_regex:
        return groups_from_regex(names, group_regex)
    if groups_csv:
        return groups_from_csv(names, groups_csv)
    return None


# ---------------------------------------------------------------------------------------------
# Reading the grouping back from a prepared data set
# ---------------------------------------------------------------------------------------------


def manifest_groups(data_root: str | Path) -> Dict[str, SampleGroup]:
    """{stem: SampleGroup} of every manifest sample that carries a patient (empty when none)."""
    path = Path(data_root) / 'manifest.json'
    if not path.is_file():
        return {}
    try:
        samples = json.loads(path.read_text()).get('samples', [])
    except json.JSONDecodeError as exc:
        raise GroupingError(f'{path}: invalid JSON ({exc})') from None
    return {
        s['stem']: SampleGroup(str(s['patient']), str(s.get('video') or ''), int(s['frame']))
        for s in samples
        if s.get('patient') is not None and s.get('frame') is not None
    }


def video_frames(data_root: str | Path, stems: Optional[Sequence[str]] = None) -> Dict[Tuple[str, str], List[str]]:
    """{(patient, video): [stem, ...] in frame order} from the data set's manifest.

    `stems` restricts it to those samples (e.g. one split). Raises GroupingError when the
    manifest has no patient/video/frame entries (prepare with --group-regex or --groups).
    """
    groups = manifest_groups(data_root)
    if not groups:
        raise GroupingError(
            f'{Path(data_root) / "manifest.json"}: no patient/video/frame entries; '
            f'prepare the set with --group-regex or --groups'
        )
    keep = set(groups) if stems is None else set(stems)
    out: Dict[Tuple[str, str], List[str]] = defaultdict(list)
    for stem, g in sorted(groups.items(), key=lambda kv: (kv[1].patient, kv[1].video, kv[1].frame)):
        if stem in keep:
            out[(g.patient, g.video)].append(stem)
    return dict(out)


def frame_order(stems: Sequence[str], groups: Mapping[str, SampleGroup]) -> List[str]:
    """`stems` ordered by patient, video, frame (stems without a group last, by name)."""
    known = sorted(
        (s for s in stems if s in groups),
        key=lambda s: (natural_key(groups[s].patient), natural_key(groups[s].video), groups[s].frame),
    )
    return known + sorted((s for s in stems if s not in groups), key=natural_key)


# ---------------------------------------------------------------------------------------------
# Patient-disjoint splits
# ---------------------------------------------------------------------------------------------

_TAG = '\x1f'  # patient<TAG>stem: the split functions group by the part before it
_TAG_REGEX = r'^([^\x1f]*)\x1f'


def _tagged(stems: Sequence[str], patient_of: Mapping[str, str]) -> List[str]:
    return [f'{patient_of.get(s, s)}{_TAG}{s}' for s in stems]


def _untag(tagged: Sequence[str]) -> List[str]:
    return [t.split(_TAG, 1)[1] for t in tagged]


def split_by_patient(
    stems: Sequence[str], patient_of: Mapping[str, str], val_fraction: float = 0.25, seed: int = 0
) -> Tuple[List[str], List[str]]:
    """(train, val) with every patient wholly in one of them (a stem without a patient is its own)."""
    train, val = split_by_groups(_tagged(stems, patient_of), val_fraction, _TAG_REGEX, seed)
    return _untag(train), _untag(val)


def kfold_by_patient(
    stems: Sequence[str], patient_of: Mapping[str, str], k: int, seed: int = 0
) -> List[Tuple[List[str], List[str]]]:
    """k (train, val) pairs, each patient in exactly one val fold."""
    return [(_untag(t), _untag(v)) for t, v in kfold_splits(_tagged(stems, patient_of), k, _TAG_REGEX, seed)]


def split_summary(splits: Mapping[str, Sequence[str]], groups: Mapping[str, SampleGroup]) -> List[str]:
    """One line per split: frames, patients and videos (for the tools to print)."""
    lines = []
    for name, stems in splits.items():
        patients = {groups[s].patient for s in stems if s in groups}
        videos = {(groups[s].patient, groups[s].video) for s in stems if s in groups}
        lines.append(f'{name}: {len(stems)} frames, {len(patients)} patients, {len(videos)} videos')
    return lines


def patients_crossing(splits: Mapping[str, Sequence[str]], groups: Mapping[str, SampleGroup]) -> Dict[str, List[str]]:
    """{patient: [split names]} for patients in more than one of the given splits."""
    where: Dict[str, set] = defaultdict(set)
    for name, stems in splits.items():
        for s in stems:
            if s in groups:
                where[groups[s].patient].add(name)
    return {p: sorted(n) for p, n in where.items() if len(n) > 1}


def patient_split_problems(data_root: str | Path) -> List[str]:
    """'patient P in train and val' lines for the train/val/test(-like) split files of a data set
    whose manifest records patients (empty when it records none or nothing crosses)."""
    groups = manifest_groups(data_root)
    folder = Path(data_root) / 'splits'
    if not groups or not folder.is_dir():
        return []
    splits = {
        f.stem: [s.strip() for s in f.read_text().splitlines() if s.strip() and not s.startswith('#')]
        for f in sorted(folder.glob('*.txt'))
    }
    problems = []
    for name in splits:
        if not name.endswith('train'):
            continue
        prefix = name[: -len('train')]
        pair = {n: splits[n] for n in (name, f'{prefix}val', f'{prefix}test') if n in splits}
        for patient, where in sorted(patients_crossing(pair, groups).items()):
            problems.append(f'patient {patient} in {" and ".join(where)}')
    return problems
