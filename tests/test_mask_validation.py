"""Every wrong mask of issue 12 gets its named error at preparation, at the dataset's first read
and in the checker (or a counted, reported skip), and a sound one passes all three."""

import json

import numpy as np
import pytest

from projects.sa2va_vessel.datasets import mask_validation as mv
from projects.sa2va_vessel.datasets.check import check_dataset
from projects.sa2va_vessel.datasets.prepare import prepare_dataset
from projects.sa2va_vessel.datasets.readers import read_mask
from projects.sa2va_vessel.datasets.vessel_dataset import VesselSegDataset
from tests._bad_masks import BAD_MASKS, canonical_set, fives_source, vessels, write_good, write_two_colour_palette
from tests._data_support import tiny_checkpoint_dir

CASES = sorted(BAD_MASKS)


def _errors(report):
    return {(i.kind, i.file.rsplit('/', 1)[-1]) for i in report.issues if i.severity == 'error'}


@pytest.mark.parametrize('case', CASES)
def test_validate_mask_names_each_problem(tmp_path, case):
    writer, kind = BAD_MASKS[case]
    writer(tmp_path / 'm.png')
    problems = mv.validate_mask(tmp_path / 'm.png')
    assert [p.kind for p in problems] == [kind], problems
    assert problems[0].is_error and str(tmp_path / 'm.png') in str(problems[0])


def test_sound_masks_pass(tmp_path):
    write_good(tmp_path / 'm.png')
    assert mv.validate_mask(tmp_path / 'm.png') == []
    assert mv.validate_mask(vessels()) == []  # a bool array: content only
    write_two_colour_palette(tmp_path / 'p.png')  # black/red palette: binary
    assert mv.validate_mask(tmp_path / 'p.png') == []
    assert np.array_equal(read_mask(tmp_path / 'p.png'), vessels())


def test_fraction_is_of_the_fov_and_configurable():
    m = np.zeros((10, 10), bool)
    m[:, :3] = True  # 30 % of the image
    fov = np.zeros((10, 10), bool)
    fov[:, :5] = True  # 60 % of the FOV
    assert mv.validate_mask(m) == []
    assert [p.kind for p in mv.validate_mask(m, fov)] == [mv.MOSTLY_VESSEL]
    assert mv.validate_mask(m, fov, max_vessel_fraction=0.7) == []
    assert [p.kind for p in mv.validate_mask(m, np.zeros_like(fov))] == [mv.EMPTY_FOV]
    with pytest.raises(ValueError, match='max_vessel_fraction'):
        mv.MaskRules(max_vessel_fraction=0.0)


def test_layout_checks_on_raw_arrays():
    v = vessels().astype(np.uint8) * 255
    black_alpha = np.dstack([np.zeros_like(v)] * 3 + [v])  # vessels in alpha, RGB black
    assert [p.kind for p in mv.validate_mask(black_alpha)] == [mv.ALPHA_CHANNEL]
    opaque = np.dstack([v] * 3 + [np.full_like(v, 255)])  # ordinary RGBA, alpha constant
    assert mv.validate_mask(opaque) == []
    cut_out = np.dstack([v] * 3 + [v])  # colour and alpha agree
    assert mv.validate_mask(cut_out) == []
    other = np.dstack([v] * 3 + [v[::-1]])  # they disagree
    assert [p.kind for p in mv.validate_mask(other)] == [mv.CHANNEL_LAYOUT]
    assert mv.validate_mask(vessels().astype(np.uint16) * 65535) == []  # true 16-bit 0/65535
    assert mv.validate_mask(vessels().astype(np.uint16)) == []  # 0/1 label map
    assert [p.kind for p in mv.validate_mask(vessels().astype(np.uint16) * 1000)] == [mv.RANGE_16BIT]


def test_non_binary_can_be_allowed_as_a_warning(tmp_path):
    BAD_MASKS['non_binary'][0](tmp_path / 'm.png')
    (p,) = mv.validate_mask(tmp_path / 'm.png', allow_non_binary=True)
    assert p.kind == mv.NON_BINARY and p.severity == mv.WARNING


# --- the checker --------------------------------------------------------------------------------


@pytest.mark.parametrize('case', CASES)
def test_checker_names_each_bad_mask(tmp_path, case):
    writer, kind = BAD_MASKS[case]
    root = canonical_set(tmp_path / 'd', writer)
    assert _errors(check_dataset(root)) == {(kind, 'bad.png')}


def test_checker_gives_no_false_warning_for_a_two_colour_palette(tmp_path):
    root = canonical_set(tmp_path / 'd')
    write_two_colour_palette(root / 'masks' / 'good0.png')
    report = check_dataset(root)
    assert [i for i in report.issues if 'mask' in i.kind] == [], report.table()
    assert report.n_errors == 0


# --- the dataset's first read ------------------------------------------------------------------


@pytest.mark.parametrize('case', CASES)
def test_dataset_refuses_or_skips_each_bad_mask(tmp_path, case):
    writer, kind = BAD_MASKS[case]
    root = canonical_set(tmp_path / 'd', writer)
    ckpt = str(tiny_checkpoint_dir())
    strict = VesselSegDataset(str(root), 'train', ckpt)  # header checks pass: content is read
    assert strict.samples[0]['stem'] == 'bad'
    with pytest.raises(mv.MaskValidationError, match=rf'masks/bad.png: {kind}') as err:
        strict[0]
    assert [p.kind for p in err.value.problems] == [kind]
    with pytest.raises(mv.MaskValidationError, match=kind):  # the cached verdict, again
        strict[0]
    assert strict[1]['img_path'].endswith('good0.png')
    lenient = VesselSegDataset(str(root), 'train', ckpt, on_error='skip')
    assert lenient[0]['img_path'].endswith('good0.png')
    assert list(lenient.skipped) == [str(root / 'images' / 'bad.png')]
    assert lenient.skip_counts() == {kind: 1}


def test_dataset_validates_once_and_caches(tmp_path, monkeypatch):
    root = canonical_set(tmp_path / 'd')
    ds = VesselSegDataset(str(root), 'train', str(tiny_checkpoint_dir()))
    calls = []
    real = mv.check_mask_values
    import projects.sa2va_vessel.datasets.vessel_dataset as vd

    monkeypatch.setattr(vd, 'check_mask_values', lambda *a, **k: calls.append(a[3]) or real(*a, **k))
    first = ds.load(0)['mask']
    again = ds.load(0)['mask']
    assert len(calls) == 1 and np.array_equal(first, again) and np.array_equal(first, vessels())


def test_dataset_mask_rules_from_config(tmp_path):
    root = canonical_set(tmp_path / 'd', BAD_MASKS['inverted_96pct'][0])
    ds = VesselSegDataset(str(root), 'train', str(tiny_checkpoint_dir()), mask_rules=dict(max_vessel_fraction=0.99))
    assert ds.load(0)['mask'].mean() == pytest.approx(0.96, abs=0.01)


def test_dataset_reads_a_two_colour_palette_mask(tmp_path):
    root = canonical_set(tmp_path / 'd')
    write_two_colour_palette(root / 'masks' / 'good0.png')
    ds = VesselSegDataset(str(root), 'train', str(tiny_checkpoint_dir()))
    assert np.array_equal(ds.load(0)['mask'], vessels())


# --- preparation --------------------------------------------------------------------------------


@pytest.mark.parametrize('case', CASES)
def test_prepare_refuses_or_skips_each_bad_mask(tmp_path, case):
    writer, kind = BAD_MASKS[case]
    src = fives_source(tmp_path / 'FIVES', writer)
    out = tmp_path / 'out'
    with pytest.raises(mv.MaskValidationError, match=rf'Ground truth/9_X.png: {kind}') as err:
        prepare_dataset('fives', src, out, progress=False)
    assert [p.kind for p in err.value.problems] == [kind]
    assert not out.exists() and list(tmp_path.glob('.out*')) == []  # nothing written
    man = prepare_dataset('fives', src, out, skip_bad_masks=True, progress=False)
    assert man['n_samples'] == 3  # 2 sound train + 1 test, bad left out
    assert [(s['stem'], s['problems'][0].split(':')[0]) for s in man['skipped']] == [('fives_train_9_X', kind)]
    assert sorted(p.name for p in (out / 'masks').iterdir()) == [
        'fives_test_t0_A.png',
        'fives_train_0_A.png',
        'fives_train_1_A.png',
    ]
    assert json.loads((out / 'manifest.json').read_text())['skipped'] == man['skipped']


def test_prepare_writes_a_two_colour_palette_mask_without_warning(tmp_path):
    src = fives_source(tmp_path / 'FIVES')
    write_two_colour_palette(src / 'train' / 'Ground truth' / '0_A.png')
    man = prepare_dataset('fives', src, tmp_path / 'out', progress=False)
    assert man['warnings'] == [] and man['skipped'] == []
    assert np.array_equal(read_mask(tmp_path / 'out' / 'masks' / 'fives_train_0_A.png'), vessels())
