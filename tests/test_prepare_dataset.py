"""prepare_dataset on small fake trees in each published layout."""
import gzip
import importlib.util
import io
import json

import numpy as np
import pytest
from PIL import Image

from tests._data_support import REPO_ROOT
from projects.sa2va_vessel.datasets.prepare import prepare_dataset
from projects.sa2va_vessel.datasets.readers import read_mask
from projects.sa2va_vessel.datasets.splits import groups_crossing

H, W = 24, 32


def _img(path, seed, mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arr = rng.integers(30, 220, size=(H, W, 3), dtype=np.uint8)
    Image.fromarray(arr).convert(mode).save(path)


def _mask(path, seed, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    m = np.zeros((H, W), np.uint8)
    m[seed % H, :] = 255
    m[:, (3 * seed) % W] = 255
    Image.fromarray(m).save(path, format=fmt)
    return m > 127


def _ppm_gz(path, arr):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PPM")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(buf.getvalue()))


def test_drive(tmp_path):
    src = tmp_path / "DRIVE"
    for part, nums in (("training", [21, 22]), ("test", [1, 2])):
        for n in nums:
            _img(src / part / "images" / f"{n:02d}_{part}.tif", n)
            _mask(src / part / "1st_manual" / f"{n:02d}_manual1.gif", n)
            _mask(src / part / "mask" / f"{n:02d}_{part}_mask.gif", 0)
    man = prepare_dataset("DRIVE", src, tmp_path / "out")
    out = tmp_path / "out"
    assert man["n_samples"] == 4 and man["splits"] == {"all": 4, "train": 2, "val": 2, "test": 2}
    assert (out / "splits" / "train.txt").read_text().split() == ["drive_21", "drive_22"]
    assert np.array_equal(read_mask(out / "masks" / "drive_21.png"),
                          read_mask(src / "training" / "1st_manual" / "21_manual1.gif"))
    assert (out / "fov" / "drive_01.png").is_file()
    rec = json.loads((out / "manifest.json").read_text())["samples"][0]
    assert rec["size_wh"] == [W, H] and len(rec["image"]["sha256"]) == 64 and rec["fov"]["source"]
    assert Image.open(out / "images" / "drive_01.png").mode == "RGB"


def test_chase_groups_stay_together(tmp_path):
    src = tmp_path / "CHASEDB1"
    for child in range(1, 9):
        for eye in "LR":
            _img(src / f"Image_{child:02d}{eye}.jpg", child)
            _mask(src / f"Image_{child:02d}{eye}_1stHO.png", child)
            _mask(src / f"Image_{child:02d}{eye}_2ndHO.png", child + 1)
    prepare_dataset("chase_db1", src, tmp_path / "out", estimate_missing_fov=True)
    sp = tmp_path / "out" / "splits"
    train, val = (sp / "train.txt").read_text().split(), (sp / "val.txt").read_text().split()
    assert len(train) + len(val) == 16 and val
    assert groups_crossing({"train": train, "val": val}, r"Image_(\d+)") == {}
    assert (tmp_path / "out" / "fov" / "chase_Image_01L.png").is_file()


def test_stare_gz(tmp_path):
    src = tmp_path / "STARE"
    rng = np.random.default_rng(0)
    for i in (1, 2, 3, 4):
        _ppm_gz(src / "stare-images" / f"im{i:04d}.ppm.gz", rng.integers(0, 255, (H, W, 3), dtype=np.uint8))
        lab = np.zeros((H, W, 3), np.uint8)
        lab[i] = 255
        _ppm_gz(src / "labels-ah" / f"im{i:04d}.ah.ppm.gz", lab)
    man = prepare_dataset("stare", src, tmp_path / "out")
    assert man["n_samples"] == 4 and man["splits"]["train"] + man["splits"]["val"] == 4
    assert read_mask(tmp_path / "out" / "masks" / "stare_im0002.png")[2].all()


def test_hrf_fives_xcad(tmp_path):
    hrf = tmp_path / "HRF"
    for key in ("01_h", "01_g", "01_dr", "02_h"):
        _img(hrf / "images" / f"{key}.jpg", 1)
        _mask(hrf / "manual1" / f"{key}.tif", 2)
        _mask(hrf / "mask" / f"{key}_mask.tif", 3)
    assert prepare_dataset("hrf", hrf, tmp_path / "o1")["n_samples"] == 4
    fives = tmp_path / "FIVES"
    for part in ("train", "test"):
        for k in ("1_A", "2_N"):
            _img(fives / part / "Original" / f"{k}.png", 4)
            _mask(fives / part / "Ground truth" / f"{k}.png", 5)
    man = prepare_dataset("fives", fives, tmp_path / "o2")
    assert man["splits"]["train"] == 2 and man["splits"]["test"] == 2
    xcad = tmp_path / "XCAD"
    for k in range(3):
        _img(xcad / "test" / "images" / f"{k:03d}.png", k, mode="L")
        _mask(xcad / "test" / "masks" / f"{k:03d}.png", k)
    _img(xcad / "train" / "trainA" / "999.png", 9)  # unpaired: ignored
    assert prepare_dataset("xcad", xcad, tmp_path / "o3")["n_samples"] == 3


def test_errors(tmp_path):
    with pytest.raises(KeyError, match="unknown data set"):
        prepare_dataset("nope", tmp_path, tmp_path / "o")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no DRIVE samples"):
        prepare_dataset("drive", tmp_path / "empty", tmp_path / "o")
    src = tmp_path / "FIVES"
    _img(src / "train" / "Original" / "1_A.png", 0)
    (src / "train" / "Ground truth").mkdir(parents=True)
    Image.new("L", (5, 5)).save(src / "train" / "Ground truth" / "1_A.png")
    with pytest.raises(ValueError, match="Ground truth/1_A.png: mask size"):
        prepare_dataset("fives", src, tmp_path / "o")


def test_cli(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("prep", REPO_ROOT / "tools" / "prepare_dataset.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    (tmp_path / "empty").mkdir()
    assert mod.main(["drive", str(tmp_path / "empty"), str(tmp_path / "o")]) == 2
    assert "no DRIVE samples" in capsys.readouterr().err
