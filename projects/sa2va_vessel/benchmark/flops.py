"""Model FLOPs of one training sample (the useful work; recomputation and waste not counted).

A matrix product of (m x k) by (k x n) is 2*m*k*n FLOPs. Per sample, with T tiles, n real LLM
tokens, n_lab labelled positions and S [SEG] tokens:

* ViT (frozen, forward only, no grad): T * [L_v * (2*n_v*(4*d_v^2 + 2*d_v*f_v) + 4*n_v^2*d_v)
  + 2*n_v*(3*14*14)*d_v], n_v = 1025 patch tokens + CLS.
* projector mlp1 (trainable: forward + input grad + weight grad = 3x forward):
  3 * 2*(256*T)*(4*d_v*d + d*d).
* Qwen-VL families instead: the vision tower (frozen, forward only) is counted with the FLOP
  counter on one image of the batch's patch grid (Qwen2.5-VL's windowed attention makes a closed
  form error-prone, as for SAM2), minus its merger(s); the merger(s) (trainable, 3x forward; Qwen3-VL
  has one per DeepStack level besides the main one) in closed form: per merged token
  2*(h*h + h*d), h = d_v * merge^2.
* LLM (frozen base with LoRA): per layer the base projections hold
  P = d*(d + 2*d_kv) + d*d + 3*d*f weights; forward 2*n*P, backward input grads 2*n*P (frozen
  weights get no weight grads); LoRA (r*(in+out) weights per adapted projection, P_lora per layer)
  trains: 6*n*P_lora; attention (QK^T and AV, counted full, not halved for causality) 4*n^2*d
  forward, twice that backward: 12*n^2*d. Sum over L layers.
* lm_head at the labelled positions only: 4*n_lab*d*V (forward + input grad).
* text_hidden_fcs (trainable): 3 * 2*S*(d*d + d*256).
* SAM2 image encoder (frozen, forward only) and mask decoder incl. conv_s0/s1 (trainable,
  3x forward per [SEG]): counted once with ``torch.utils.flop_counter.FlopCounterMode`` on the
  model itself (Hiera's windowed attention and q-pooling make a closed form error-prone).

MFU = FLOPs per sample x samples/s / peak, peak = 790e12 (dense bf16 matrix rate measured on an
H200 of this workplace: docs/PERFORMANCE.md).
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

PEAK_FLOPS = {'cuda': 790e12, 'cpu': None}


def vit_flops(arch, tiles: int) -> float:
    v = arch.vision
    d, f, L = v.hidden_size, v.intermediate_size, v.num_hidden_layers
    p = v.patch_size[0] if isinstance(v.patch_size, (tuple, list)) else v.patch_size
    n = (arch.force_image_size // p) ** 2 + 1
    per_tile = L * (2 * n * (4 * d * d + 2 * d * f) + 4 * n * n * d) + 2 * n * (3 * p * p) * d
    return float(tiles * per_tile)


def projector_flops(arch, tiles: int) -> float:
    dv, d = arch.vision.hidden_size, arch.llm.hidden_size
    return float(3 * 2 * arch.num_image_tokens * tiles * (4 * dv * d + d * d))


def merger_flops(arch, n_patches: int) -> float:
    """Forward FLOPs of the Qwen-VL merger(s) for ``n_patches`` patches (module docstring)."""
    v = arch.vision
    h = v.hidden_size * v.spatial_merge_size**2
    n_mergers = 1 + len(getattr(v, 'deepstack_visual_indexes', None) or [])
    return float(n_mergers * 2 * (n_patches // v.spatial_merge_size**2) * (h * h + h * v.out_hidden_size))


def qwen_vision_flops(model, grid_thw: list[int], device) -> tuple[float, float]:
    """(vision tower forward without the merger(s), merger(s) forward) for one image of ``grid_thw``."""
    s = model.sa2va
    n = int(grid_thw[0] * grid_thw[1] * grid_thw[2])
    v = s.arch.vision
    dtype = s.visual.patch_embed.proj.weight.dtype
    pixels = torch.randn(n, 3 * v.temporal_patch_size * v.patch_size**2, device=device, dtype=dtype)
    grid = torch.tensor([list(grid_thw)], device=device)
    total = counted_flops(lambda: s.image_embeddings(pixels, grid))
    merger = merger_flops(s.arch, n)
    return total - merger, merger


def llm_flops(arch, n_tokens: int, n_labelled: int, lora_r: int, lora_targets: tuple[str, ...]) -> float:
    c = arch.llm
    d, f, L, V = c.hidden_size, c.intermediate_size, c.num_hidden_layers, c.vocab_size
    head_dim = getattr(c, 'head_dim', None) or d // c.num_attention_heads  # Qwen3: heads * head_dim != d
    d_q, d_kv = c.num_attention_heads * head_dim, c.num_key_value_heads * head_dim
    shapes = {
        'q_proj': (d, d_q),
        'k_proj': (d, d_kv),
        'v_proj': (d, d_kv),
        'o_proj': (d_q, d),
        'gate_proj': (d, f),
        'up_proj': (d, f),
        'down_proj': (f, d),
    }
    base = sum(i * o for i, o in shapes.values())
    lora = sum(lora_r * (i + o) for name, (i, o) in shapes.items() if name in lora_targets)
    per_layer = 4 * n_tokens * base + 6 * n_tokens * lora + 12 * n_tokens**2 * d_q
    return float(L * per_layer + 4 * n_labelled * d * V)


def fcs_flops(arch, n_seg: int) -> float:
    d = arch.llm.hidden_size
    return float(3 * 2 * n_seg * (d * d + d * arch.sam2_hidden_size))


def counted_flops(fn) -> float:
    """FLOPs torch's counter sees while ``fn()`` runs (no grad)."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        fn()
    return float(counter.get_total_flops())


def sam2_flops(model, device) -> tuple[float, float]:
    """(image encoder forward per image, mask decoder forward per [SEG]) from the FLOP counter."""
    s = model.sa2va
    dtype = s.sam2.vision_encoder.neck.convs[0].weight.dtype
    g = torch.randn(1, 3, 1024, 1024, device=device, dtype=dtype)
    enc = counted_flops(lambda: s.sam2_backbone(g))
    with torch.no_grad():
        fpn = s.sam2_backbone(g)
    lang = torch.randn(1, s.arch.sam2_hidden_size, device=device, dtype=dtype)

    def decode():
        image_embed, high_res = s.sam2_decoder_inputs(fpn)
        s.decode_masks(image_embed, high_res, lang)

    return enc, counted_flops(decode)


def flops_per_sample(
    model,
    meta: dict,
    batch_size: int,
    lora_r: int,
    lora_targets: tuple[str, ...],
    sam2_counts: tuple[float, float],
    vision_counts: tuple[float, float] | None = None,
) -> dict[str, float]:
    """Model FLOPs of one training sample, by part (see module docstring); 'total' sums them.

    ``vision_counts``: ``qwen_vision_flops`` of the batch's grid (Qwen-VL families; InternVL's
    ViT and mlp1 are in closed form).
    """
    arch = model.sa2va.arch
    tiles, n = meta['n_tiles'], meta['real_tokens'] / batch_size
    n_lab = meta['answer_tokens'] / batch_size
    enc, dec = sam2_counts
    if arch.is_qwen:
        if vision_counts is None:
            raise ValueError(f'{arch.family}: pass vision_counts=qwen_vision_flops(model, grid, device)')
        vision = {'vit': vision_counts[0], 'projector': 3 * vision_counts[1]}
    else:
        vision = {'vit': vit_flops(arch, tiles), 'projector': projector_flops(arch, tiles)}
    parts = {
        **vision,
        'llm': llm_flops(arch, round(n), n_lab, lora_r, lora_targets),
        'text_hidden_fcs': fcs_flops(arch, 1),
        'sam2_encoder': enc,
        'sam2_decoder': 3 * dec,
    }
    parts['total'] = sum(parts.values())
    return parts
