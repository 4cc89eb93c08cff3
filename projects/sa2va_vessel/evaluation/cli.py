"""Command lines of ``tools/test.py`` and ``tools/predict.py`` (the logic lives in
``offline.py`` and ``predict.py``)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Optional, Sequence


def _load_config(path: str, options: Optional[dict]) -> object:
    from mmengine.config import Config

    cfg = Config.fromfile(path)
    if options:
        cfg.merge_from_dict(options)
    return cfg


def test_main(argv: Optional[Sequence[str]] = None) -> dict:
    from mmengine.config import DictAction

    parser = argparse.ArgumentParser(
        description='Evaluate a checkpoint (or an exported model directory) on a split: per-image '
        'CSV, summary JSON, threshold curve PNG and overlay PNGs, in teacher-forced '
        'and generation mode.'
    )
    parser.add_argument('config', help='training config (data, model, metric)')
    parser.add_argument(
        'checkpoint',
        help='iter_N.pth / best_*.pth file, DeepSpeed checkpoint '
        'directory, or exported official-layout model directory',
    )
    parser.add_argument(
        '--split', default='val', help='split name (splits/<split>.txt), e.g. val or test (default: val)'
    )
    parser.add_argument('--out', help='output directory (default: no files, summary printed)')
    parser.add_argument('--mode', choices=['teacher', 'generate', 'both'], default='both')
    parser.add_argument(
        '--threshold',
        type=float,
        help="operating threshold (default: the one in best_checkpoint.json beside the checkpoint, else the config's)",
    )
    parser.add_argument('--max-new-tokens', type=int, default=32, help='generation mode: longest answer (default 32)')
    parser.add_argument('--num-overlays', type=int, default=8, help='overlay PNGs per mode (default 8)')
    parser.add_argument(
        '--allow-test-sweep',
        action='store_true',
        help='on a test split, also report the sweep-best threshold and Dice, '
        'labelled *_optimistic (refused by default: it picks the threshold on the '
        'images it scores)',
    )
    parser.add_argument(
        '--n-boot', type=int, default=2000, help='bootstrap resamples of the 95%% intervals (default 2000)'
    )
    parser.add_argument('--seed', type=int, default=0, help='bootstrap seed (default 0)')
    parser.add_argument('--device', help='cuda / cpu (default: cuda when available)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE')
    video = parser.add_argument_group(
        'video (--video: whole sequences of the split, SAM2 memory; '
        'per-frame and per-sequence Dice, temporal consistency)'
    )
    video.add_argument('--video', action='store_true', help='evaluate the split as videos')
    video.add_argument('--key-frames', type=int, default=5, help='conditioning frames (default 5)')
    video.add_argument('--key-spacing', choices=['first', 'even'], default='first')
    video.add_argument('--no-memory', action='store_true', help='decode every frame on its own')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    from .offline import evaluate

    cfg = _load_config(args.config, args.cfg_options)
    if args.video:
        from .video_metrics import evaluate_videos

        summary = evaluate_videos(
            cfg,
            args.checkpoint,
            split=args.split,
            out_dir=args.out,
            threshold=args.threshold,
            n_cond=args.key_frames,
            spacing=args.key_spacing,
            propagation='independent' if args.no_memory else 'memory',
            device=args.device,
        )
        print(json.dumps(summary['summary'], indent=2))
        return summary
    modes = ('teacher', 'generate') if args.mode == 'both' else (args.mode,)
    summary = evaluate(
        cfg,
        args.checkpoint,
        split=args.split,
        out_dir=args.out,
        modes=modes,
        threshold=args.threshold,
        max_new_tokens=args.max_new_tokens,
        num_overlays=args.num_overlays,
        device=args.device,
        allow_test_sweep=args.allow_test_sweep,
        n_boot=args.n_boot,
        seed=args.seed,
    )
    shown = (
        'n_images',
        'threshold',
        'global_dice',
        'mean_dice',
        'global_cldice',
        'mean_hd95',
        'mean_betti0_error',
        'global_roc_auc',
        'best_thr',
        'best_dice',
        'n_missing_seg',
        'missing_seg_rate',
    )
    brief = {
        mode: {k: v for k, v in res['metrics'].items() if k.split('/')[-1].removesuffix('_optimistic') in shown}
        for mode, res in summary['modes'].items()
    }
    for res in summary['modes'].values():
        for note in res['notes']:
            if 'sweep' in note:
                print(f'note: {note}', file=sys.stderr)
    print(json.dumps(brief, indent=2))
    return summary


def predict_main(argv: Optional[Sequence[str]] = None) -> None:
    from mmengine.config import DictAction

    parser = argparse.ArgumentParser(
        description='Predict vessel probability maps and binary masks for a folder of images.'
    )
    parser.add_argument(
        'checkpoint', help='training checkpoint (.pth file / DeepSpeed dir) or exported official-layout model directory'
    )
    parser.add_argument('input_dir', help='folder of images (png, jpg, tif, ...)')
    parser.add_argument('out_dir', help='writes prob/<stem>.png|npy and mask/<stem>.png')
    parser.add_argument(
        '--threshold',
        type=float,
        help='binary mask threshold (default: the one in best_checkpoint.json beside the checkpoint, else 0.5)',
    )
    parser.add_argument(
        '--config',
        help='training config (default: the one saved in the checkpoint; not needed for an exported directory)',
    )
    parser.add_argument(
        '--window',
        type=int,
        help='images with a side longer than this are '
        'predicted in windows of this size (default: the training crop size of '
        'the config or export, else 1024)',
    )
    parser.add_argument('--overlap', type=float, default=0.25, help='window overlap fraction (default 0.25)')
    parser.add_argument(
        '--prob-format',
        choices=['png16', 'npy'],
        default='png16',
        help='probability maps as 16-bit PNG (p*65535) or float32 .npy',
    )
    parser.add_argument('--mode', choices=['teacher', 'generate'], default='teacher')
    parser.add_argument(
        '--max-dynamic-patch',
        type=int,
        help="InternVL tiles per window (default: the config's dataset setting, else the checkpoint's)",
    )
    parser.add_argument('--device', help='cuda / cpu (default: cuda when available)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE')
    video = parser.add_argument_group(
        'video (--video: INPUT_DIR is one sequence, a folder of frames or a '
        'video file; SAM2 memory propagates the mask)'
    )
    video.add_argument('--video', action='store_true', help='segment INPUT_DIR as one video')
    video.add_argument(
        '--key-frames',
        type=int,
        default=5,
        help='conditioning frames given to the LLM and prompted with [SEG] (default 5, as the official code)',
    )
    video.add_argument(
        '--key-spacing',
        choices=['first', 'even'],
        default='first',
        help="'first': frames 0..n-1 (official); 'even': evenly spaced over the video",
    )
    video.add_argument(
        '--no-memory',
        action='store_true',
        help='decode every frame on its own with the [SEG] embedding instead of propagating with SAM2 memory',
    )
    video.add_argument('--fps', type=float, default=8.0, help='overlay.gif frame rate (default 8)')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    from .predict import predict_folder

    if args.config:
        cfg = _load_config(args.config, args.cfg_options)
    else:
        from .inference import checkpoint_kind, config_from_checkpoint

        cfg = None if checkpoint_kind(args.checkpoint) == 'export' else config_from_checkpoint(args.checkpoint)
        if cfg is None and checkpoint_kind(args.checkpoint) != 'export':
            sys.exit(f'{args.checkpoint}: no config saved in the checkpoint; pass --config')
    if args.video:
        from .video_predict import predict_video

        predict_video(
            cfg,
            args.checkpoint,
            args.input_dir,
            args.out_dir,
            threshold=args.threshold,
            prob_format=args.prob_format,
            n_cond=args.key_frames,
            spacing=args.key_spacing,
            propagation='independent' if args.no_memory else 'memory',
            fps=args.fps,
            device=args.device,
        )
        return
    predict_folder(
        cfg,
        args.checkpoint,
        args.input_dir,
        args.out_dir,
        threshold=args.threshold,
        window=args.window,
        overlap=args.overlap,
        prob_format=args.prob_format,
        mode=args.mode,
        max_dynamic_patch=args.max_dynamic_patch,
        device=args.device,
    )
