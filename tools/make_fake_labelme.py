"""Write a fake LabelMe folder (angiography-like frames + JSON) with some files in another frame.

    python tools/make_fake_labelme.py OUT [--patients 2] [--videos 2] [--frames 3] [--size 512]
                                      [--foreign-size 800] [--foreign-every 2] [--lying-every 0] [--seed 0]

Frames are P<pp>_V<v>_f<fff>.png. Every --foreign-every-th file is annotated in a
--foreign-size frame with a header saying so (prepare rescales it); every --lying-every-th has
those coordinates under a header claiming the real size (shapes sit off the vessels).
The docs picture docs/contact_sheet_example.png was made with:

    python tools/make_fake_labelme.py demo_work/fake_labelme --lying-every 4
    python tools/prepare_dataset.py labelme demo_work/fake_labelme demo_work/fake_prepared \\
        --group-regex '^(?P<patient>P\\d+)_(?P<video>V\\d+)_f(?P<frame>\\d+)' --on-error skip
    python tools/check_dataset.py demo_work/fake_prepared --sheet docs/contact_sheet_example.png \\
        --sheet-thumb 150 --sheet-columns 6
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from projects.sa2va_vessel.datasets.synthetic_labelme import write_fake_labelme  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('out', type=Path)
    p.add_argument('--patients', type=int, default=2)
    p.add_argument('--videos', type=int, default=2)
    p.add_argument('--frames', type=int, default=3)
    p.add_argument('--size', type=int, default=512)
    p.add_argument('--foreign-size', type=int, default=800)
    p.add_argument('--foreign-every', type=int, default=2)
    p.add_argument('--lying-every', type=int, default=0)
    p.add_argument('--seed', type=int, default=0)
    a = p.parse_args(argv)
    truths = write_fake_labelme(
        a.out, a.patients, a.videos, a.frames, a.size, a.foreign_size, a.foreign_every, a.lying_every, a.seed
    )
    print(f'{len(truths)} LabelMe files -> {a.out}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
