"""The benchmark: the project's training step, lever by lever, beside the two references.

One run, one preset, one device. ``run_benchmark`` builds ``Sa2VAVesselModel('preset:NAME')`` (random
weights at the published shape, drawn on the device, bf16 on GPU), then times, on the same batches
and from the same initial weights:

* ``plain``: the plain transformers + peft composition (``references.plain_forward``), reference (b);
* ``project``: the project's model as the shipped config builds it, then one lever at a time,
  cumulative (``LADDER``);
* ``official``: the official recipe's settings on a second model, reference (a);
* optionally extra micro-batch sizes (plain and the fastest configuration) and DeepSpeed ZeRO-2.

Each configuration: a fresh AdamW (the config's lr/betas/weight decay), ``warmup`` untimed steps,
``steps`` timed steps between two CUDA events; samples/s = batch * steps / time. Every
configuration starts from the same trainable weights; its first step's losses (batch 0, LoRA B
still zero, so dropout cannot change them) are compared with the plain path's.
"""

from __future__ import annotations

import gc
import json
import math
import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from ..models import vessel_model as vm
from ..models.lora import DEFAULT_TARGETS
from ..models.speed import SpeedSwitches
from . import flops as F
from .references import make_official, plain_forward
from .synthetic import make_batch
from .timing import StageTimer

LORA = dict(r=128, alpha=256, dropout=0.05, target_modules=list(DEFAULT_TARGETS))
ADAMW = dict(lr=4e-5, betas=(0.9, 0.999), weight_decay=0.05)  # configs/vessel_lora.py
CLIP = 1.0
# |fast - plain| <= LOSS_RTOL * |plain| + LOSS_ATOL for every loss part at the same weights and batch
LOSS_RTOL, LOSS_ATOL = 2e-2, 2e-3


@dataclass
class Levers:
    """The model's speed switches (models/speed.py) plus the optimizer choice."""

    gradient_checkpointing: bool = True
    fused_adamw: bool = False
    sam2_side_stream: bool = False
    compile_llm_layers: bool = False
    compile_frozen_encoders: bool = False
    cuda_graph_llm_layers: bool = False
    light_token_rows: bool = False
    causal_mask_for_right_padding: bool = False
    indexed_image_splice: bool = False
    frozen_cache: bool = False  # sam2_feature_cache_size + vision_feature_cache

    def replace(self, **kw) -> 'Levers':
        return Levers(**{**self.__dict__, **kw})

    def switches(self, cache_size: int) -> SpeedSwitches:
        return SpeedSwitches(
            gradient_checkpointing=self.gradient_checkpointing,
            sam2_side_stream=self.sam2_side_stream,
            compile_llm_layers=self.compile_llm_layers,
            compile_frozen_encoders=self.compile_frozen_encoders,
            cuda_graph_llm_layers=self.cuda_graph_llm_layers,
            light_token_rows=self.light_token_rows,
            causal_mask_for_right_padding=self.causal_mask_for_right_padding,
            indexed_image_splice=self.indexed_image_splice,
            sam2_feature_cache_size=cache_size if self.frozen_cache else 0,
            vision_feature_cache=self.frozen_cache,
        )


# name, levers, prediction written before measuring (see docs/PERFORMANCE.md)
LADDER = [
    ('project', Levers(), 'config defaults (grad ckpt on): about plain minus the full-vocab logits'),
    ('+no_grad_ckpt', dict(gradient_checkpointing=False), 'LLM fwd+bwd 4/3 -> 1 of forward passes: -25% LLM time'),
    ('+fused_adamw', dict(fused_adamw=True), 'optimizer a few ms -> ~1 ms'),
    ('+sam2_side_stream', dict(sam2_side_stream=True), 'overlap: up to min(SAM2 enc, LLM fwd) saved where units idle'),
    ('+compile_llm_layers', dict(compile_llm_layers=True), '1.2-1.3x on LLM fwd+bwd (issue: 1.28x)'),
    (
        '+compile_frozen_encoders',
        dict(compile_frozen_encoders=True),
        'Hiera/ViT elementwise ops fused: 1.2-1.4x on the SAM2 encoder and ViT forward',
    ),
    (
        '+light_token_rows',
        dict(light_token_rows=True),
        'no (vocab x hidden) merged copies: ~-1 GiB peak at 8B (lm_head copy kept for backward), time ~same',
    ),
    (
        '+causal_mask_for_right_padding',
        dict(causal_mask_for_right_padding=True),
        'SDPA causal kernel instead of the masked one, no host read of the mask: a few ms per step',
    ),
    (
        '+indexed_image_splice',
        dict(indexed_image_splice=True),
        "no host read in the splice's backward: ~0 here (this step syncs per stage), the runner's step gains",
    ),
    (
        '+cuda_graph_llm_layers',
        dict(cuda_graph_llm_layers=True),
        'one graph replay per compiled layer: the LLM host time (2x its kernels at b8) -> its kernels',
    ),
    ('+frozen_cache', dict(frozen_cache=True), 'SAM2 encoder + ViT time -> ~0 from epoch 2'),
]


# Exact switches outside `fast` unless a config turns them on (the end-to-end mode adds them)
EXTRA_FAST_SWITCHES = ('cuda_graph_llm_layers',)


def apply_levers(model, lv: Levers, cache_size: int) -> None:
    """Set the model's switches in place, through its public ``set_speed_switches``."""
    model.set_speed_switches(lv.switches(cache_size))


def instrument(model, timer: StageTimer) -> None:
    s = model.sa2va
    # the vision stage: InternVL's ViT + mlp1 (the model's), the Qwen-VL tower + merger(s) (the modules')
    timer.wrap(s if model.is_qwen else model, 'image_embeddings', 'vision')
    timer.wrap(s, 'llm_last_hidden', 'llm_fwd', llm=True)
    timer.wrap(model, 'sam2_features', 'sam2_encoder')
    timer.wrap(s, 'sam2_decoder_inputs', 'decoder')
    timer.wrap(s, 'decode_masks', 'decoder')
    timer.wrap(vm, 'mask_losses', 'loss')
    timer.wrap(model, 'llm_loss', 'loss')


def build_model(preset: str, device: str, dtype: str, **kw):
    model = vm.Sa2VAVesselModel(
        model_path=f'preset:{preset}', dtype=dtype, lora=LORA, device=device, gradient_checkpointing=True, **kw
    )
    return model.to(device).train()


def _sync(device):
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def _free(device):
    gc.collect()
    if device.startswith('cuda'):
        torch.cuda.empty_cache()


@dataclass
class Result:
    name: str
    batch_size: int
    samples_per_s: float
    tokens_per_s: float
    step_ms: float
    breakdown_ms: dict
    peak_alloc_gib: float | None
    peak_reserved_gib: float | None
    first_losses: dict
    last_loss: float
    mfu: float | None = None
    prediction: str = ''
    extra: dict = field(default_factory=dict)


def time_config(
    name,
    step_fn,
    params,
    batches,
    device,
    timer,
    warmup,
    steps,
    fused=False,
    prediction='',
    optimizer=None,
    backward=None,
    opt_step=None,
) -> Result:
    """Run ``warmup`` + ``steps`` training steps of ``step_fn`` (batch -> loss dict); time the last ``steps``."""
    cuda = device.startswith('cuda')
    kw = dict(ADAMW, fused=True) if fused else dict(ADAMW)
    if optimizer is None:
        optimizer = torch.optim.AdamW(params, **kw)
    backward = backward or (lambda loss: loss.backward())

    def default_opt_step():
        torch.nn.utils.clip_grad_norm_(params, CLIP)
        optimizer.step()  # noqa: F821 (deleted after the last call, to free memory)
        optimizer.zero_grad(set_to_none=True)  # noqa: F821 (deleted after the last call, to free memory)

    opt_step = opt_step or default_opt_step
    _sync(device)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    timer.reset()
    first, start = {}, None
    for i in range(warmup + steps):
        batch = batches[i % len(batches)]
        if i == warmup:
            _sync(device)
            timer.active = True
            start = timer.now()
        timer.mark('step_start')
        losses = step_fn(batch)
        loss = sum(losses.values())
        if i == 0:
            first = {k: float(v.detach()) for k, v in losses.items()}
        timer.mark('bwd_start')
        backward(loss)
        timer.mark('bwd_end')
        opt_step()
        timer.mark('opt_end')
    end = timer.now()
    _sync(device)  # elapsed_time needs both events completed
    total_ms = timer.elapsed_ms(start, end) if cuda else (end - start) * 1e3
    timer.active = False
    breakdown = timer.summary()
    last = float(loss.detach())
    bs = batches[0]['data']['input_ids'].shape[0]
    tokens = sum(b['meta']['real_tokens'] for b in batches) / len(batches)
    step_ms = total_ms / steps
    res = Result(
        name=name,
        batch_size=bs,
        samples_per_s=round(bs * 1e3 / step_ms, 3),
        tokens_per_s=round(tokens * 1e3 / step_ms, 1),
        step_ms=round(step_ms, 3),
        breakdown_ms=breakdown,
        peak_alloc_gib=round(torch.cuda.max_memory_allocated() / 2**30, 3) if cuda else None,
        peak_reserved_gib=round(torch.cuda.max_memory_reserved() / 2**30, 3) if cuda else None,
        first_losses=first,
        last_loss=last,
        prediction=prediction,
    )
    if not math.isfinite(last):
        raise RuntimeError(f'{name}: non-finite loss {last}')
    del optimizer
    _free(device)
    return res


def losses_match(a: dict, ref: dict) -> tuple[bool, dict]:
    diffs = {k: abs(a[k] - ref[k]) for k in ref}
    ok = all(diffs[k] <= LOSS_RTOL * abs(ref[k]) + LOSS_ATOL for k in ref)
    return ok, {k: round(v, 6) for k, v in diffs.items()}


def versions(device: str) -> dict:
    import peft
    import transformers

    out = {
        'torch': torch.__version__,
        'transformers': transformers.__version__,
        'peft': peft.__version__,
        'python': platform.python_version(),
    }
    if device.startswith('cuda'):
        out.update(cuda=torch.version.cuda, gpu=torch.cuda.get_device_name(), driver=_nvidia_smi_driver())
    else:
        out.update(cpu=platform.processor() or platform.machine(), threads=torch.get_num_threads())
    try:
        out['commit'] = (
            subprocess.run(
                ['git', 'rev-parse', '--short', 'HEAD'],
                capture_output=True,
                text=True,
                cwd=Path(__file__).parent,
                timeout=10,
            ).stdout.strip()
            or None
        )
    except Exception:  # noqa: BLE001 (no git on the device copy)
        out['commit'] = None
    out['commit'] = os.environ.get('BENCH_COMMIT', out['commit'])
    return out


def _nvidia_smi_driver():
    try:
        return subprocess.run(
            ['nvidia-smi', '--query-gpu=driver_version', '--format=csv,noheader'],
            capture_output=True,
            text=True,
            timeout=20,
        ).stdout.strip()
    except Exception:  # noqa: BLE001
        return None


def run_benchmark(
    preset: str,
    device: str = 'cuda',
    batch_size: int = 32,
    image_hw=(512, 512),
    warmup: int = 3,
    steps: int = 8,
    extra_batch_sizes=(),
    ladder: bool = True,
    official: bool = True,
    fast: bool = True,
    frozen_cache: bool = False,
    deepspeed: bool = False,
    compile_ok: bool | None = None,
    fast_switches: Optional[dict] = None,
    log=print,
) -> dict:
    """``fast_switches``: Levers fields set on top of the fastest exact ones for the `fast` row (the
    end-to-end mode passes the switches its config turns on beyond those, e.g. CUDA graphs)."""
    cuda = device.startswith('cuda')
    dtype = 'bfloat16' if cuda else 'float32'
    compile_ok = cuda if compile_ok is None else compile_ok
    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = build_model(preset, device, dtype)
    log(f'built {preset} on {device} in {time.perf_counter() - t0:.1f}s')
    params = [p for p in model.parameters() if p.requires_grad]
    init = [p.detach().clone() for p in params]

    def restore():
        with torch.no_grad():
            for p, v in zip(params, init):  # noqa: F821 (deleted after the last call, to free memory)
                p.copy_(v)

    def batches_for(bs):
        return [make_batch(model, bs, image_hw, device, seed=k, key_prefix=f'bs{bs}_{k}') for k in range(2)]

    batches = batches_for(batch_size)
    meta = batches[0]['meta']
    sam2_counts = F.sam2_flops(model, device)
    vision_counts = F.qwen_vision_flops(model, meta['grid_thw'], device) if model.is_qwen else None
    fl = F.flops_per_sample(model, meta, batch_size, LORA['r'], DEFAULT_TARGETS, sam2_counts, vision_counts)
    peak = F.PEAK_FLOPS['cuda' if cuda else 'cpu']
    timer = StageTimer(cuda)
    results: list[Result] = []

    def finish(res: Result, cached: bool = False) -> Result:
        # with the frozen-feature cache warm, the ViT and SAM2 encoder do not run: MFU counts what runs
        executed = fl['total'] - (fl['vit'] + fl['sam2_encoder'] if cached else 0.0)
        res.extra['flops_per_sample_executed'] = executed
        res.mfu = round(executed * res.samples_per_s / peak, 4) if peak else None
        results.append(res)
        log(
            f'{res.name:>28} bs{res.batch_size:<3} {res.samples_per_s:9.2f} samples/s  {res.step_ms:9.1f} ms/step  '
            f'peak {res.peak_alloc_gib} GiB  mfu {res.mfu}  losses {res.first_losses}  breakdown {res.breakdown_ms}'
        )
        return res

    def plain(bs_batches, bs):
        restore()
        apply_levers(model, Levers(), 0)
        return finish(
            time_config(
                'plain',
                lambda b: plain_forward(model, b['data'], timer),
                params,
                bs_batches,
                device,
                timer,
                warmup,
                steps,
                prediction='reference (b)',
            )
        )

    failures = []

    def project(name, lv, bs_batches, prediction=''):
        restore()
        apply_levers(model, lv, cache_size=4 * batch_size)
        w = warmup + (3 if lv.compile_llm_layers or lv.compile_frozen_encoders else 0)
        try:
            return finish(
                time_config(
                    name,
                    lambda b: model.loss(b['data'], b['data_samples']),
                    params,
                    bs_batches,
                    device,
                    timer,
                    w,
                    steps,
                    fused=lv.fused_adamw,
                    prediction=prediction,
                ),
                cached=lv.frozen_cache,
            )
        except Exception as err:  # noqa: BLE001  (report it, keep measuring the others)
            timer.active = False
            failures.append(
                {
                    'name': name,
                    'batch_size': bs_batches[0]['data']['input_ids'].shape[0],
                    'error': f'{type(err).__name__}: {str(err)[:2000]}',
                }
            )
            log(f'{name}: FAILED {failures[-1]["error"][:500]}')
            _free(device)
            return None

    instrument(model, timer)
    plain(batches, batch_size)
    levers = Levers()
    best = levers
    if ladder:
        for name, change, prediction in LADDER:
            if not compile_ok and not isinstance(change, Levers) and any('compile' in k for k in change):
                continue
            levers = change if isinstance(change, Levers) else levers.replace(**change)
            project(name, levers, batches, prediction)
        best = levers
    else:
        best = Levers(
            gradient_checkpointing=False,
            fused_adamw=True,
            sam2_side_stream=cuda,
            compile_llm_layers=compile_ok,
            compile_frozen_encoders=compile_ok,
            light_token_rows=True,
            causal_mask_for_right_padding=True,
            frozen_cache=frozen_cache,
        ).replace(**(fast_switches or {}))
        if fast:
            project('fast+cache' if frozen_cache else 'fast', best, batches)
    no_cache = best.replace(frozen_cache=False)
    for bs in extra_batch_sizes:
        extra = batches_for(bs)
        plain(extra, bs)
        project('fast_no_cache', no_cache, extra)
        project('fast_no_cache_grad_ckpt', no_cache.replace(gradient_checkpointing=True), extra)
    if deepspeed and cuda:
        try:
            _deepspeed_run(model, params, restore, no_cache, batches, device, timer, warmup, steps, finish)
        except Exception as err:  # noqa: BLE001
            failures.append({'name': 'zero2', 'error': f'{type(err).__name__}: {str(err)[:2000]}'})
            log(f'zero2: FAILED {failures[-1]["error"][:500]}')
    timer.unwrap()
    apply_levers(model, Levers(), 0)
    del model, params, init
    _free(device)

    if official:
        model = build_model(preset, device, dtype, trainable=dict(token_rows=False))
        params = make_official(model)
        timer = StageTimer(cuda)
        instrument(model, timer)
        autocast = torch.autocast('cuda', dtype=torch.bfloat16) if cuda else None

        def official_step(b):
            if autocast is None:
                return plain_forward(model, b['data'], timer, mask_loss='points')
            with torch.autocast('cuda', dtype=torch.bfloat16):
                return plain_forward(model, b['data'], timer, mask_loss='points')

        try:
            finish(
                time_config(
                    'official', official_step, params, batches, device, timer, warmup, steps, prediction='reference (a)'
                )
            )
        except Exception as err:  # noqa: BLE001
            failures.append({'name': 'official', 'error': f'{type(err).__name__}: {str(err)[:2000]}'})
            log(f'official: FAILED {failures[-1]["error"][:500]}')
        timer.unwrap()
        del model, params
        _free(device)

    by_name = {(r.name, r.batch_size): r for r in results}
    report_rows = []
    for r in results:
        ref = by_name.get(('plain', r.batch_size))
        row = r.__dict__.copy()
        if ref is not None:
            row['speedup_vs_plain'] = round(r.samples_per_s / ref.samples_per_s, 3)
            if r.name not in ('official',):
                ok, diffs = losses_match(r.first_losses, ref.first_losses)
                row['loss_matches_plain'], row['loss_abs_diff'] = ok, diffs
        off = by_name.get(('official', r.batch_size))
        if off is not None:
            row['speedup_vs_official'] = round(r.samples_per_s / off.samples_per_s, 3)
        report_rows.append(row)
    return {
        'preset': preset,
        'device': device,
        'dtype': dtype,
        'batch_size': batch_size,
        'image_hw': list(image_hw),
        'n_tiles': meta['n_tiles'],
        'seq_len': meta['seq_len'],
        'tokens_per_sample': meta['real_tokens'] / batch_size,
        'padding_fraction': round(meta['padding_fraction'], 4),
        'warmup': warmup,
        'steps': steps,
        'flops_per_sample': fl,
        'peak_flops': peak,
        'loss_tolerance': {'rtol': LOSS_RTOL, 'atol': LOSS_ATOL},
        'versions': versions(device),
        'results': report_rows,
        'failures': failures,
    }


def _deepspeed_run(model, params, restore, levers, batches, device, timer, warmup, steps, finish):
    """The fastest configuration (no cache) under DeepSpeed ZeRO-2 (bf16, one process)."""
    import deepspeed

    from ..engine.runner import init_distributed

    init_distributed('none', use_deepspeed=True)
    restore()
    apply_levers(model, levers, 0)
    ds_config = json.loads((Path(__file__).resolve().parents[3] / 'configs/deepspeed/deepspeed_zero2.json').read_text())
    ds_config.update(
        train_micro_batch_size_per_gpu=batches[0]['data']['input_ids'].shape[0],
        gradient_accumulation_steps=1,
        gradient_clipping=CLIP,
        bf16={'enabled': True},
        fp16={'enabled': False},
    )
    ds_config.pop('train_batch_size', None)
    opt = torch.optim.AdamW(params, **ADAMW)
    engine, optimizer, _, _ = deepspeed.initialize(
        model=model, optimizer=opt, config=ds_config, model_parameters=params
    )
    res = time_config(
        'zero2',
        lambda b: engine(b['data'], b['data_samples'], mode='loss'),
        params,
        batches,
        device,
        timer,
        warmup,
        steps,
        optimizer=optimizer,
        backward=engine.backward,
        opt_step=engine.step,
        prediction='ZeRO-2 on one GPU: fp32 master weights, same compute',
    )
    return finish(res)


def format_table(report: dict) -> str:
    lines = [
        f'{report["preset"]} on {report["versions"].get("gpu", report["device"])}, image {report["image_hw"]} '
        f'({report["n_tiles"]} tiles, {report["tokens_per_sample"]:.0f} tokens/sample), '
        f'{report["flops_per_sample"]["total"] / 1e12:.3f} TFLOP/sample',
        f'{"config":>26} {"bs":>3} {"samples/s":>10} {"ms/step":>9} {"peak GiB":>9} {"MFU":>6} '
        f'{"x plain":>8} {"x official":>10} loss=plain',
    ]
    for r in report['results']:
        mfu = f'{r["mfu"] * 100:.1f}%' if r.get('mfu') is not None else '-'
        lines.append(
            f'{r["name"]:>26} {r["batch_size"]:>3} {r["samples_per_s"]:>10.2f} {r["step_ms"]:>9.1f} '
            f'{str(r["peak_alloc_gib"]):>9} {mfu:>6} {str(r.get("speedup_vs_plain", "-")):>8} '
            f'{str(r.get("speedup_vs_official", "-")):>10} {r.get("loss_matches_plain", "-")}'
        )
    return '\n'.join(lines)
