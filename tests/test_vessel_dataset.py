"""VesselSegDataset: image/text inputs per item, with the tiny and the real tokenizer."""

import numpy as np
import pytest
import torch
from PIL import Image

from projects.sa2va_vessel.datasets.conversation import IGNORE_INDEX, VESSEL_QUESTIONS
from projects.sa2va_vessel.datasets.readers import DataReadError
from projects.sa2va_vessel.datasets.synthetic import write_synthetic_dataset
from projects.sa2va_vessel.datasets.vessel_dataset import VesselSegDataset
from tests._data_support import real_checkpoint_dir, requires_real_tokenizer, tiny_checkpoint_dir


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('vessels')
    write_synthetic_dataset(root, n=4, seed=0, size=160, val_fraction=0.5)
    # One wide image (3 tiles + thumbnail under max 12) to exercise multi-tile items.
    Image.new('RGB', (1000, 500), (90, 40, 20)).save(root / 'images' / 'wide.png')
    m = np.zeros((500, 1000), np.uint8)
    m[200:210, 100:900] = 255
    Image.fromarray(m).save(root / 'masks' / 'wide.png')
    (root / 'splits' / 'wide.txt').write_text('wide\n')
    return root


def _check_item(item, tok):
    ctx = tok.convert_tokens_to_ids('<IMG_CONTEXT>')
    seg = tok.convert_tokens_to_ids('[SEG]')
    ids, labels = item['input_ids'], item['labels']
    assert ids.dtype == labels.dtype == torch.long and ids.shape == labels.shape
    n_tiles = item['pixel_values'].shape[0]
    assert item['n_tiles'] == n_tiles
    assert int((ids == ctx).sum()) == 256 * n_tiles
    labelled = labels != IGNORE_INDEX
    first = int(labelled.nonzero()[0])
    assert not labelled[:first].any()  # the prompt is masked
    assert (ids[:first] == ctx).sum() == 256 * n_tiles  # ... image tokens included
    assert seg in labels[labelled].tolist()  # [SEG] is in the labelled answer
    assert torch.equal(labels[labelled], ids[labelled])
    assert item['pixel_values'].shape[1:] == (3, 448, 448) and item['pixel_values'].dtype == torch.uint8
    assert item['g_pixel_values'].shape == (3, 1024, 1024) and item['g_pixel_values'].dtype == torch.uint8
    h, w = item['ori_size']
    assert item['masks'].shape == (1, h, w) and item['masks'].dtype == torch.bool
    assert item['pad_token_id'] == tok.pad_token_id


def test_items_with_tiny_tokenizer(data_root):
    ds = VesselSegDataset(str(data_root), 'train', str(tiny_checkpoint_dir()), seed=0)
    assert len(ds) == 2 and ds.random_question and ds.template == 'qwen_chat'
    item = ds[0]
    _check_item(item, ds.tokenizer)
    assert item['fov'] is not None and item['fov'].dtype == bool and item['fov'].shape == item['ori_size']
    stem = (data_root / 'splits' / 'train.txt').read_text().split()[0]
    expect = np.asarray(Image.open(data_root / 'masks' / f'{stem}.png')) > 127
    assert np.array_equal(item['masks'][0].numpy(), expect)
    assert item['img_path'].endswith(f'{stem}.png')


def test_questions_random_for_train_fixed_for_val(data_root):
    ckpt = str(tiny_checkpoint_dir())
    val = VesselSegDataset(str(data_root), 'val', ckpt)
    assert not val.random_question
    assert {val[i]['question'] for i in range(len(val))} == {'<image>\n' + VESSEL_QUESTIONS[0]}
    a = VesselSegDataset(str(data_root), 'train', ckpt, seed=1)
    b = VesselSegDataset(str(data_root), 'train', ckpt, seed=1)
    qs = [(a[i]['question'], a[i]['answer']) for i in range(2)]
    assert qs == [(b[i]['question'], b[i]['answer']) for i in range(2)]  # seeded
    seen = {a[epoch * len(a)]['question'] for epoch in range(6)}  # epoch-coded indices (epoch_samplers)
    assert len(seen) > 1  # the question varies across epochs


def test_multi_tile_item_and_max_dynamic_patch_override(data_root):
    ckpt = str(tiny_checkpoint_dir())
    item = VesselSegDataset(str(data_root), 'wide', ckpt)[0]
    assert item['n_tiles'] == 3  # (2,1) grid + thumbnail
    _check_item(item, VesselSegDataset(str(data_root), 'wide', ckpt).tokenizer)
    one = VesselSegDataset(str(data_root), 'wide', ckpt, max_dynamic_patch=1)[0]
    assert one['n_tiles'] == 1 and one['input_ids'].numel() == item['input_ids'].numel() - 512


def test_missing_files_and_size_mismatch_name_the_file(data_root, tmp_path):
    ckpt = str(tiny_checkpoint_dir())
    with pytest.raises(FileNotFoundError, match='splits/nope.txt'):
        VesselSegDataset(str(data_root), 'nope', ckpt)
    with pytest.raises(FileNotFoundError, match='config.json'):
        VesselSegDataset(str(data_root), 'train', str(tmp_path))
    root = tmp_path / 'bad'
    write_synthetic_dataset(root, n=2, seed=0, size=96, val_fraction=0.5)
    (root / 'splits' / 'train.txt').write_text('synth_00000\nghost\n')
    # the start-up check names the entry too; without it, indexing the split does
    with pytest.raises(DataReadError, match='split entry without files: .*ghost'):
        VesselSegDataset(str(root), 'train', ckpt)
    with pytest.raises(FileNotFoundError, match='ghost'):
        VesselSegDataset(str(root), 'train', ckpt, check_on_start=False)
    (root / 'splits' / 'train.txt').write_text('synth_00000\n')
    Image.new('L', (50, 50)).save(root / 'masks' / 'synth_00000.png')
    with pytest.raises(DataReadError, match='size mismatch: .*masks/synth_00000.png'):
        VesselSegDataset(str(root), 'train', ckpt)
    ds = VesselSegDataset(str(root), 'train', ckpt, check_on_start=False)
    with pytest.raises(DataReadError, match='masks/synth_00000.png'):
        ds[0]


def test_registered_and_buildable_from_config(data_root):
    from projects.sa2va_vessel.registry import DATASETS

    ds = DATASETS.build(
        dict(type='VesselSegDataset', data_root=str(data_root), split='val', model_path=str(tiny_checkpoint_dir()))
    )
    assert isinstance(ds, VesselSegDataset) and len(ds) == 2


@requires_real_tokenizer
def test_items_with_real_tokenizer(data_root):
    ds = VesselSegDataset(str(data_root), 'val', str(real_checkpoint_dir()))
    item = ds[0]
    _check_item(item, ds.tokenizer)
    assert item['pad_token_id'] == 151643
    assert int((item['input_ids'] == 151667).sum()) == 256
    wide = VesselSegDataset(str(data_root), 'wide', str(real_checkpoint_dir()))[0]
    _check_item(wide, ds.tokenizer)


def test_on_error_skip_counts_and_logs(tmp_path, caplog):
    root = tmp_path / 'skip'
    write_synthetic_dataset(root, n=3, seed=0, size=96, val_fraction=0.0)
    (root / 'masks' / 'synth_00000.png').write_bytes(b'junk')
    ckpt = str(tiny_checkpoint_dir())
    with pytest.raises(DataReadError, match='unreadable: .*masks/synth_00000.png'):
        VesselSegDataset(str(root), 'train', ckpt)  # refused at start
    strict = VesselSegDataset(str(root), 'train', ckpt, check_on_start=False)
    with pytest.raises(DataReadError, match='masks/synth_00000.png'):
        strict[0]
    lenient = VesselSegDataset(str(root), 'train', ckpt, on_error='skip')
    with caplog.at_level('WARNING'):
        item = lenient[0]
    assert item['img_path'].endswith('synth_00001.png')
    assert list(lenient.skipped) == [str(root / 'images' / 'synth_00000.png')]
    assert 'skipping sample 0' in caplog.text
    with pytest.raises(ValueError, match='on_error'):
        VesselSegDataset(str(root), 'train', ckpt, on_error='ignore')
