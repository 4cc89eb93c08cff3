"""The contact sheet: mask outlines where the masks are, flagged files first, and the one-command
path from a LabelMe folder to a set that check_dataset passes and tools/train.py trains on."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from projects.sa2va_vessel.datasets.contact_sheet import FLAG, OUTLINE, write_contact_sheet
from projects.sa2va_vessel.datasets.synthetic_labelme import write_fake_labelme
from tests._data_support import load_tool
from tests.test_prepare_labelme import GROUP_RX, PREPARE

THUMB = 64


def _cell(sheet: np.ndarray, i: int, columns: int) -> np.ndarray:
    cw, ch = THUMB + 8, THUMB + 8 + 24
    r, c = divmod(i, columns)
    return sheet[r * ch : (r + 1) * ch, c * cw : (c + 1) * cw]


def test_sheet_outlines_the_masks_and_puts_flagged_files_first(tmp_path, capsys):
    src = tmp_path / 'src'
    # Every 3rd file lies: 160 px coordinates under a 128 px header; shapes beyond the border
    # are skipped (and flag the file), the rest stay misplaced for the eye to see.
    write_fake_labelme(
        src, n_patients=2, videos=1, frames=3, size=128, foreign_size=160, foreign_every=2, lying_every=3
    )
    out = tmp_path / 'out'
    assert PREPARE.main(['labelme', str(src), str(out), '--group-regex', GROUP_RX, '--on-error', 'skip']) == 0
    man = json.loads((out / 'manifest.json').read_text())
    flagged = sorted(r['stem'] for r in man['samples'] if r['rescaled'] or r['skipped_shapes'])
    assert man['skipped']['shapes'].get('outside image', 0) > 0 and len(flagged) >= 3
    capsys.readouterr()
    check = load_tool('check_dataset')
    assert (
        check.main(
            [str(out), '--sheet', str(tmp_path / 'sheet.png'), '--sheet-thumb', str(THUMB), '--sheet-columns', '3']
        )
        == 0
    )
    assert f'({len(flagged)} flagged first)' in capsys.readouterr().out
    sheet = np.asarray(Image.open(tmp_path / 'sheet.png').convert('RGB'))
    n = man['n_samples']
    assert sheet.shape[:2] == (((n + 2) // 3) * (THUMB + 32), 3 * (THUMB + 8))
    red = [bool((_cell(sheet, i, 3) == FLAG).all(axis=2).any()) for i in range(n)]
    assert red == [True] * len(flagged) + [False] * (n - len(flagged))
    assert all((_cell(sheet, i, 3) == OUTLINE).all(axis=2).sum() > 20 for i in range(n))


def test_outline_sits_on_the_mask(tmp_path):
    (tmp_path / 'images').mkdir()
    (tmp_path / 'masks').mkdir()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / 'images' / 'a.png')
    m = np.zeros((64, 64), np.uint8)
    m[10:30, 40:60] = 255
    Image.fromarray(m).save(tmp_path / 'masks' / 'a.png')
    write_contact_sheet(tmp_path, tmp_path / 's.png', thumb=64, columns=1)
    tile = np.asarray(Image.open(tmp_path / 's.png').convert('RGB'))[4:68, 4:68]
    ys, xs = np.nonzero((tile == OUTLINE).all(axis=2))
    assert ys.min() == 10 and ys.max() == 29 and xs.min() == 40 and xs.max() == 59
    assert not (tile[15:25, 45:55] == OUTLINE).all(axis=2).any()  # an outline, not a fill


@pytest.mark.slow  # ~50 s on 2 shared cores: trains the tiny model
def test_labelme_folder_to_training_in_one_command(tiny_checkpoint, tmp_path, monkeypatch):
    """LabelMe folder -> prepare (patient-disjoint splits, sheet) -> check passes -> train 3 steps."""
    from projects.sa2va_vessel.engine import train
    from tests.test_real_model_runs import CONFIG
    from tests.toy_runs import in_process_cfg, read_trace

    src = tmp_path / 'src'
    write_fake_labelme(src, n_patients=4, videos=1, frames=2, size=128, foreign_every=2)
    data = tmp_path / 'data'
    assert PREPARE.main(['labelme', str(src), str(data), '--group-regex', GROUP_RX]) == 0
    assert (data / 'contact_sheet.png').is_file()
    assert load_tool('check_dataset').main([str(data)]) == 0
    monkeypatch.setenv('SA2VA_MODEL_PATH', str(tiny_checkpoint))
    monkeypatch.setenv('VESSEL_DATA_ROOT', str(data))
    cfg = in_process_cfg(CONFIG, tmp_path / 'work', {'deepspeed': 'none'})
    train(cfg)
    trace = read_trace(tmp_path / 'work')
    assert [r['iter'] for r in trace] == [0, 1, 2]
    train_stems = set((data / 'splits' / 'train.txt').read_text().split())
    assert all(p.rsplit('/', 1)[-1].rsplit('.', 1)[0] in train_stems for r in trace for p in r['indices'])
    assert len({r['weights'] for r in trace}) == 3, 'the weights must change every step'
