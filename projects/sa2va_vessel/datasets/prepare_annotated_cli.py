"""Command line of the annotated sources (``tools/prepare_dataset.py labelme|coco|arcade ...``).

  prepare_dataset.py labelme SRC OUT [--labels vessel,artery] [--ignore-labels catheter] [--line-width 3]
  prepare_dataset.py coco SRC_JSON IMAGES OUT [--categories a,b] [--per-category]
  prepare_dataset.py arcade SRC OUT [--categories 1,2,5] [--per-category]
common: [--on-error fail|skip] [--group-regex RX | --groups groups.csv] [--val-fraction 0.25]
        [--seed 0] [--no-sheet]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from .grouping import GroupingError
from .prepare_annotated import find_arcade, find_coco, find_labelme, prepare_annotated
from .readers import DataReadError

ANNOTATED_SOURCES = ('labelme', 'coco', 'arcade')


def _names(text: Optional[str]) -> Optional[List[str]]:
    return None if text is None else [t.strip() for t in text.split(',') if t.strip()]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog='prepare_dataset.py', description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        '--on-error',
        choices=('fail', 'skip'),
        default='fail',
        help='bad shape/sample: stop with its named error (default), or skip, count and report it',
    )
    common.add_argument(
        '--group-regex',
        default=None,
        help=r'regex with named groups patient[, video][, frame], e.g. '
        r"'^(?P<patient>P\d+)_(?P<video>V\d+)_f(?P<frame>\d+)'",
    )
    common.add_argument('--groups', type=Path, default=None, help='CSV with columns name,patient[,video][,frame]')
    common.add_argument('--val-fraction', type=float, default=0.25)
    common.add_argument('--seed', type=int, default=0)
    common.add_argument('--no-sheet', action='store_true', help='do not write OUT/contact_sheet.png')
    sub = p.add_subparsers(dest='source', required=True)
    lm = sub.add_parser('labelme', parents=[common], help='a folder of images + LabelMe JSON')
    lm.add_argument('src', type=Path)
    lm.add_argument('out', type=Path)
    lm.add_argument('--labels', default=None, help='comma-separated labels that are vessel (default: every label)')
    lm.add_argument('--ignore-labels', default='', help='comma-separated labels to leave out without an error')
    lm.add_argument('--line-width', type=int, default=3, help='px width of line/linestrip shapes')
    co = sub.add_parser('coco', parents=[common], help='a COCO instances file and its images folder')
    co.add_argument('src_json', type=Path)
    co.add_argument('images', type=Path)
    co.add_argument('out', type=Path)
    ar = sub.add_parser('arcade', parents=[common], help='an ARCADE download (syntax/{train,val,test})')
    ar.add_argument('src', type=Path)
    ar.add_argument('out', type=Path)
    for q in (co, ar):
        q.add_argument(
            '--categories',
            default=None,
            help="comma-separated category names (default: all; ARCADE: all SYNTAX segments, not 'stenosis')",
        )
        q.add_argument(
            '--per-category', action='store_true', help='also write segments/<category>/<stem>.png per category present'
        )
    return p


def annotated_main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    try:
        if args.source == 'labelme':
            found = find_labelme(
                args.src, _names(args.labels), _names(args.ignore_labels) or (), args.line_width, args.on_error
            )
        elif args.source == 'coco':
            found = find_coco(args.src_json, args.images, _names(args.categories), args.per_category, args.on_error)
        else:
            found = find_arcade(args.src, _names(args.categories), args.per_category, args.on_error)
        options = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        manifest = prepare_annotated(
            found,
            args.out,
            args.on_error,
            args.group_regex,
            args.groups,
            args.val_fraction,
            args.seed,
            options,
            sheet=not args.no_sheet,
        )
    except (FileNotFoundError, ValueError, DataReadError, GroupingError) as exc:
        print(f'error: {type(exc).__name__}: {exc}', file=sys.stderr)
        return 2
    print((Path(args.out) / 'prepare_report.txt').read_text(), end='')
    print(
        f'-> {args.out} ({manifest["n_samples"]} samples; manifest.json, prepare_report.txt'
        + ('' if args.no_sheet else ', contact_sheet.png')
        + ')'
    )
    return 0
