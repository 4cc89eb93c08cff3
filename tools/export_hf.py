"""Export a trained checkpoint: python tools/export_hf.py CONFIG CHECKPOINT OUT_DIR [--dtype bf16|fp32]
[--adapter-only] [--model-path BASE] [--cfg-options k=v ...].

Without --adapter-only: an official Sa2VA checkpoint directory (LoRA and token rows merged, official
names, sharded safetensors, config.json, tokenizer). With it: a peft adapter folder plus the other
trained modules. See docs/EXPORT.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from mmengine.config import DictAction

    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='the training config the checkpoint was trained with')
    parser.add_argument(
        'checkpoint',
        help='iter_N.pth (plain runner), a DeepSpeed checkpoint directory, or a work dir (its last_checkpoint)',
    )
    parser.add_argument('out_dir')
    parser.add_argument(
        '--dtype',
        choices=['bf16', 'fp32'],
        default='bf16',
        help='dtype of the exported weights (default bf16; merging always runs in fp32)',
    )
    parser.add_argument(
        '--adapter-only',
        action='store_true',
        help='write a peft adapter + the other trained modules instead of merged weights',
    )
    parser.add_argument(
        '--model-path', default=None, help="base checkpoint directory (default: the config's model.model_path)"
    )
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    from projects.sa2va_vessel.models.checkpoint import CheckpointError
    from projects.sa2va_vessel.models.export import (
        EXPORT_DTYPES,
        build_model_from_config,
        deployment_settings,
        export_adapter,
        export_full,
        load_training_checkpoint,
        resolve_checkpoint,
    )

    try:
        checkpoint = resolve_checkpoint(args.checkpoint)
        model = build_model_from_config(args.config, model_path=args.model_path, cfg_options=args.cfg_options)
        meta = load_training_checkpoint(model, checkpoint)
    except CheckpointError as err:
        print(f'error: {err}', file=sys.stderr)
        raise SystemExit(1)
    provenance = dict(
        config=str(Path(args.config).resolve()), checkpoint=str(checkpoint.resolve()), iteration=meta.get('iter')
    )
    dtype = EXPORT_DTYPES[args.dtype]
    if args.adapter_only:
        report = export_adapter(model, args.out_dir, dtype=dtype, provenance=provenance)
    else:
        from mmengine.config import Config

        cfg = Config.fromfile(args.config)
        if args.cfg_options:
            cfg.merge_from_dict(args.cfg_options)
        cfg.model.model_path = model.model_path
        report = export_full(
            model, args.out_dir, dtype=dtype, provenance=provenance, settings=deployment_settings(cfg, checkpoint)
        )
    print(report.summary())
    return report


if __name__ == '__main__':
    main()
