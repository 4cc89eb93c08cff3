"""tools/predict.py --video on a frame folder, synthetic moving sequences, and memory on/off."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from projects.sa2va_vessel.datasets.synthetic_video import (
    contrast_curve,
    make_vessel_sequence,
    write_synthetic_video_dataset,
)
from projects.sa2va_vessel.models.video import conditioning_frames


def test_sequence_moves_and_contrast_washes() -> None:
    frames, masks, fov = make_vessel_sequence(3, n_frames=6, size=128)
    assert len(frames) == len(masks) == 6 and frames[0].shape == (128, 128, 3)
    overlap = [(masks[t] & masks[t + 1]).sum() / max(1, (masks[t] | masks[t + 1]).sum()) for t in range(5)]
    assert all(0.3 < o < 0.99 for o in overlap), overlap  # it moves, but slowly
    contrast = [float(f[..., 1][~m & fov].mean() - f[..., 1][m].mean()) for f, m in zip(frames, masks)]
    assert contrast[2] > contrast[0] + 2 and contrast[2] > contrast[5] + 2  # washes in and out
    curve = contrast_curve(6)
    assert curve[0] == pytest.approx(curve[-1]) and curve.max() > curve[0]


def test_conditioning_frame_choice() -> None:
    assert conditioning_frames(8) == [0, 1, 2, 3, 4]
    assert conditioning_frames(3) == [0, 1, 2]
    assert conditioning_frames(21, 3, 'even') == [0, 10, 20]
    with pytest.raises(ValueError):
        conditioning_frames(5, 2, 'random')


def test_predict_video_cli_on_frame_folder(tiny_video_checkpoint, tmp_path) -> None:
    from projects.sa2va_vessel.evaluation.cli import predict_main
    from projects.sa2va_vessel.evaluation.predict import read_probability

    frames, _, _ = make_vessel_sequence(1, n_frames=4, size=96)
    src = tmp_path / 'frames'
    src.mkdir()
    for t, f in enumerate(frames):
        Image.fromarray(f).save(src / f'frame_{t}.png')  # natural order: frame_10 after frame_9
    out = tmp_path / 'out'
    predict_main(
        [
            str(tiny_video_checkpoint),
            str(src),
            str(out),
            '--video',
            '--key-frames',
            '2',
            '--threshold',
            '0.5',
            '--device',
            'cpu',
        ]
    )
    manifest = json.loads((out / 'video_prediction.json').read_text())
    assert manifest['conditioning_frames'] == [0, 1] and manifest['n_frames'] == 4
    assert [e['frame'] for e in manifest['frames']] == [f'frame_{t}' for t in range(4)]
    for t in range(4):
        mask = np.asarray(Image.open(out / 'mask' / f'frame_{t}.png'))
        assert mask.shape == (96, 96) and set(np.unique(mask)) <= {0, 255}
        assert (out / 'prob' / f'frame_{t}.png').is_file()
    gif = Image.open(out / 'overlay.gif')
    assert gif.n_frames == 4

    # memory switched off gives other masks on the propagated frames only
    from projects.sa2va_vessel.evaluation.inference import load_eval_model
    from projects.sa2va_vessel.evaluation.video_predict import VideoSegmenter

    model, _ = load_eval_model(None, str(tiny_video_checkpoint), 'cpu')
    with_memory = np.stack([read_probability(out / 'prob' / f'frame_{t}.png') for t in range(4)])
    without, _ = VideoSegmenter(model, n_cond=2, propagation='independent')(frames)
    np.testing.assert_allclose(with_memory[:2], without[:2], atol=2e-5)  # 16-bit PNG quantisation
    assert np.abs(with_memory[2:] - without[2:]).max() > 1e-3


def test_synthetic_video_dataset_layout(tmp_path) -> None:
    train, val = write_synthetic_video_dataset(tmp_path, n_videos=3, n_frames=4, size=64, label_every=2)
    assert len(train) == 2 and len(val) == 1
    assert sorted(p.name for p in (tmp_path / 'masks').iterdir() if p.name.startswith(val[0])) == [
        f'{val[0]}_f0000.png',
        f'{val[0]}_f0002.png',
    ]
    assert (tmp_path / 'splits' / 'val.txt').read_text().split() == [f'{val[0]}_f{t:04d}' for t in range(4)]
