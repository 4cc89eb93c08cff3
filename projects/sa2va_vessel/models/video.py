"""Sa2VA on video: SAM2's memory carries the ``[SEG]`` mask from the conditioning frames to
every other frame, computing what the official ``predict_forward(video=...)`` computes.

The memory parts are transformers' Sam2Video modules (``Sam2VideoMemoryAttention``,
``Sam2VideoMemoryEncoder``, the object-pointer ``Sam2VideoFeedForward``), held by
``SAM2VideoMemory`` and filled from the 105 official memory tensors that ``load_sa2va`` keeps
aside (``name_map.MEMORY_RENAMES``). Everything else comes from ``Sa2VAModules``' stage methods.
``../shared/fixtures/golden_video/README.md`` lists the behaviours kept here:

- conditioning frames (the language-prompted ones, frames 0-4 officially) are each an initial
  conditioning frame: vision features + ``no_mem_embed``, sparse prompt [not-a-point x2,
  language], multimask, best IoU; no memory attention, no influence of earlier frames;
- their memories are encoded afterwards from the raw vision features and
  ``sigmoid(mask upsampled to 1024) * 20 - 10``; spatial memories are stored in bfloat16;
- every other frame, in order from the first conditioning frame: memory attention over all
  conditioning memories (temporal encoding index ``num_maskmem - 1``) and the last
  ``num_maskmem - 1`` propagated frames (frame t - r with index r - 1), plus object pointers of
  the conditioning frames at or before t and of the propagated frames t-1, t-2, ... (at most
  ``min(N, 16) - 1`` back), each pointer split into ``C / mem_dim`` tokens with zero position
  and no RoPE; decoded WITHOUT the language token; the object score never masks the logits.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Sam2VideoConfig
from transformers.models.sam2_video.modeling_sam2_video import (
    Sam2VideoFeedForward,
    Sam2VideoMemoryAttention,
    Sam2VideoMemoryEncoder,
    Sam2VideoRoPEAttention,
)

from .checkpoint import CheckpointError
from .configuration import SAM2_BACKBONE_STRIDE, SAM2_IMAGE_SIZE, Sa2VAArchitecture
from .name_map import MEMORY, memory_official_to_ours, memory_ours_to_official
from .sa2va import Sa2VAModules

logger = logging.getLogger(__name__)

# Fixed in the official Sa2VA SAM2 (sam2_tiny_config.json 'fixed_in_official_code').
NUM_MASKMEM = 7
MAX_OBJ_PTRS = 16
SIGMOID_SCALE, SIGMOID_BIAS = 20.0, -10.0
# The official predict_forward gives the first 5 frames to the LLM and prompts them.
OFFICIAL_COND_FRAMES = 5

# Memory modules of the SAM2-Hiera-L every Sa2VA release builds (sam2_hiera_l.yaml), in the
# vocabulary of sam2_config.json; a checkpoint's sam2_config.json overrides it.
HIERA_L_MEMORY: dict[str, Any] = {
    'memory_attention': {
        'd_model': 256,
        'num_layers': 4,
        'layer': {'dim_feedforward': 2048, 'dropout': 0.1, 'activation': 'relu'},
        'self_attention': {'rope_theta': 10000.0, 'num_heads': 1, 'downsample_rate': 1},
        'cross_attention': {'kv_in_dim': 64},
    },
    'memory_encoder': {
        'out_dim': 64,
        'in_dim': 256,
        'mask_downsampler': {'embed_dim': 256, 'kernel_size': 3, 'stride': 2, 'padding': 1, 'total_stride': 16},
        'fuser': {
            'num_layers': 2,
            'layer': {'dim': 256, 'kernel_size': 7, 'padding': 3, 'layer_scale_init_value': 1e-6},
        },
    },
}


def memory_config(arch: Sa2VAArchitecture, attn_implementation: str = 'sdpa') -> Sam2VideoConfig:
    """transformers' ``Sam2VideoConfig`` for the memory parts of this checkpoint's SAM2."""
    ma = arch.sam2_official.get('memory_attention', HIERA_L_MEMORY['memory_attention'])
    me = arch.sam2_official.get('memory_encoder', HIERA_L_MEMORY['memory_encoder'])
    layer, sa = ma['layer'], ma['self_attention']
    down, fuser = me['mask_downsampler'], me['fuser']
    side = SAM2_IMAGE_SIZE // SAM2_BACKBONE_STRIDE
    config = Sam2VideoConfig(
        num_maskmem=NUM_MASKMEM,
        image_size=SAM2_IMAGE_SIZE,
        sigmoid_scale_for_mem_enc=SIGMOID_SCALE,
        sigmoid_bias_for_mem_enc=SIGMOID_BIAS,
        enable_occlusion_spatial_embedding=False,
        max_object_pointers_in_encoder=MAX_OBJ_PTRS,
        enable_temporal_pos_encoding_for_object_pointers=False,
        memory_attention_hidden_size=ma['d_model'],
        memory_attention_num_layers=ma['num_layers'],
        memory_attention_num_attention_heads=sa.get('num_heads', 1),
        memory_attention_downsample_rate=sa.get('downsample_rate', 1),
        memory_attention_feed_forward_hidden_size=layer['dim_feedforward'],
        memory_attention_feed_forward_hidden_act=layer.get('activation', 'relu'),
        memory_attention_dropout=layer.get('dropout', 0.1),
        memory_attention_rope_theta=sa.get('rope_theta', 10000.0),
        # official RoPE replaces its configured feat_sizes by the actual 64x64 at the first call
        memory_attention_rope_feat_sizes=[side, side],
        memory_attention_rope_dropout=sa.get('dropout', 0.1),
        memory_encoder_hidden_size=me['in_dim'],
        memory_encoder_output_channels=me['out_dim'],
        mask_downsampler_embed_dim=down['embed_dim'],
        mask_downsampler_kernel_size=down['kernel_size'],
        mask_downsampler_stride=down['stride'],
        mask_downsampler_padding=down['padding'],
        mask_downsampler_total_stride=down['total_stride'],
        memory_fuser_num_layers=fuser['num_layers'],
        memory_fuser_embed_dim=fuser['layer']['dim'],
        memory_fuser_intermediate_dim=4 * fuser['layer']['dim'],
        memory_fuser_kernel_size=fuser['layer']['kernel_size'],
        memory_fuser_padding=fuser['layer']['padding'],
        memory_fuser_layer_scale_init_value=fuser['layer'].get('layer_scale_init_value', 1e-6),
    )
    config._attn_implementation = attn_implementation
    config.kv_in_dim = ma.get('cross_attention', {}).get('kv_in_dim', me['out_dim'])
    return config


class SAM2VideoMemory(nn.Module):
    """SAM2's video-memory weights as transformers modules (parameter names under ``memory.``)."""

    def __init__(self, config: Sam2VideoConfig, hidden_size: int) -> None:
        super().__init__()
        self.config = config
        self.mem_dim = config.memory_encoder_output_channels
        self.hidden_size = hidden_size
        self.memory_attention = Sam2VideoMemoryAttention(config)
        # transformers hard-codes the cross-attention key/value width to 64 (Hiera-L's mem_dim)
        for layer in self.memory_attention.layers:
            layer.cross_attn_image = Sam2VideoRoPEAttention(config, kv_in_dim=config.kv_in_dim, rope_k_repeat=True)
        self.memory_encoder = Sam2VideoMemoryEncoder(config)
        self.object_pointer_proj = Sam2VideoFeedForward(hidden_size, hidden_size, hidden_size, 3)
        self.memory_temporal_positional_encoding = nn.Parameter(torch.zeros(config.num_maskmem, 1, 1, self.mem_dim))
        self.no_object_pointer = nn.Parameter(torch.zeros(1, hidden_size))
        self.no_memory_positional_encoding = nn.Parameter(torch.zeros(1, 1, hidden_size))
        # used by SAM2 only for mask prompts, which Sa2VA never gives; kept so exports round-trip
        self.mask_downsample = nn.Conv2d(1, 1, kernel_size=4, stride=4)

    @property
    def dtype(self) -> torch.dtype:
        return self.no_object_pointer.dtype

    def object_pointer(self, sam_token: torch.Tensor, object_score_logits: torch.Tensor) -> torch.Tensor:
        """(N, C) pointer from the best mask's output token; ``no_obj_ptr`` where the score <= 0."""
        ptr = self.object_pointer_proj(sam_token.to(self.dtype))
        present = (object_score_logits > 0).to(ptr.dtype)[:, None]
        return present * ptr + (1 - present) * self.no_object_pointer

    def encode(
        self, vision_features: torch.Tensor, mask_logits: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Memory of one frame: (features (HW, N, mem) bfloat16, position (HW, N, mem), features fp).

        ``vision_features`` (N, C, 64, 64) raw (no ``no_mem_embed``), ``mask_logits`` (N, 256, 256).
        """
        high = F.interpolate(
            mask_logits[:, None].float(), size=(SAM2_IMAGE_SIZE, SAM2_IMAGE_SIZE), mode='bilinear', align_corners=False
        )
        mask_for_mem = torch.sigmoid(high) * SIGMOID_SCALE + SIGMOID_BIAS
        feats, pos = self.memory_encoder(vision_features.to(self.dtype), mask_for_mem.to(self.dtype))
        # stored in bfloat16 as the official code does, also in float32 runs
        return (
            feats.to(torch.bfloat16).flatten(2).permute(2, 0, 1),
            pos.to(feats.dtype).flatten(2).permute(2, 0, 1),
            feats,
        )


def memory_from_passthrough(
    arch: Sa2VAArchitecture, passthrough: dict[str, torch.Tensor], dtype: torch.dtype, attn_implementation: str = 'sdpa'
) -> SAM2VideoMemory:
    """``SAM2VideoMemory`` filled from the official memory tensors ``load_sa2va`` kept aside.

    Every tensor must have exactly one place and every place a tensor, with equal shapes.
    """
    memory = SAM2VideoMemory(memory_config(arch, attn_implementation), arch.sam2_hidden_size).to(dtype)
    expected = {MEMORY + k: v for k, v in memory.state_dict().items()}
    filled, problems = set(), []
    for key, tensor in passthrough.items():
        ours = memory_official_to_ours(key)
        if ours is None or ours not in expected:
            problems.append(f'{key}: no place in the video memory ({ours})')
        elif tuple(tensor.shape) != tuple(expected[ours].shape):
            problems.append(f'{key}: checkpoint {tuple(tensor.shape)} vs memory {tuple(expected[ours].shape)}')
        else:
            expected[ours].copy_(tensor.to(dtype))
            filled.add(ours)
    missing = sorted(set(expected) - filled)
    if missing:
        problems.append(f'{len(missing)} memory tensors missing from the checkpoint: {missing[:10]}')
    if problems:
        raise CheckpointError(f'{arch.path}: the SAM2 video-memory tensors do not fit:\n  ' + '\n  '.join(problems))
    memory.requires_grad_(False)
    return memory


def memory_official_state(memory: SAM2VideoMemory) -> dict[str, torch.Tensor]:
    """The memory's weights under official names (the inverse of ``memory_from_passthrough``)."""
    out = {}
    for name, tensor in memory.state_dict().items():
        official = memory_ours_to_official(MEMORY + name)
        if official is None:
            raise KeyError(f'no official name for memory tensor {name}')
        out[official] = tensor.detach()
    return out


# ------------------------------------------------------------------------------ frame choice
def conditioning_frames(num_frames: int, n_cond: int = OFFICIAL_COND_FRAMES, spacing: str = 'first') -> list[int]:
    """Which frames the LLM sees and the language embedding prompts.

    ``'first'``: frames 0 .. n-1 (the official choice); ``'even'``: n frames evenly spaced over the
    video, first and last included (propagation then never runs more than a gap from a key frame).
    """
    if num_frames < 1:
        raise ValueError('a video needs at least one frame')
    n = min(n_cond, num_frames)
    if spacing == 'first':
        return list(range(n))
    if spacing == 'even':
        if n == 1:
            return [0]
        return sorted({round(i * (num_frames - 1) / (n - 1)) for i in range(n)})
    raise ValueError(f"spacing must be 'first' or 'even', got {spacing!r}")


# ------------------------------------------------------------------------------ propagation
@dataclass
class FrameState:
    """What SAM2 keeps of one decoded frame."""

    mask_logits: torch.Tensor  # (N, 256, 256)
    object_pointer: torch.Tensor  # (N, C)
    object_score_logits: torch.Tensor  # (N,)
    iou_pred: torch.Tensor  # (N, 3)
    vision_features: torch.Tensor  # (N, C, 64, 64), raw
    maskmem_features: Optional[torch.Tensor] = None  # (HW, N, mem) bfloat16
    maskmem_pos_enc: Optional[torch.Tensor] = None  # (HW, N, mem)


@dataclass
class VideoResult:
    mask_logits: torch.Tensor  # (T, N, 256, 256), frame order
    cond_frames: list[int]
    states: dict[int, FrameState] = field(repr=False, default_factory=dict)


FrameSource = Callable[[int], torch.Tensor]


class VideoPropagator:
    """Runs the official video segmentation of ``Sa2VAModules`` + ``SAM2VideoMemory``.

    ``frames(t)`` returns frame t's SAM2 input (1, 3, 1024, 1024), so a long video is read one
    frame at a time. ``propagation='memory'`` is the official path; ``'independent'`` decodes
    every frame on its own with the language embedding (SAM2 memory off, the training path).
    ``trace`` (a dict) receives stage tensors of each frame for inspection and tests.
    """

    def __init__(self, sa2va: Sa2VAModules, memory: SAM2VideoMemory) -> None:
        self.sa2va = sa2va
        self.memory = memory

    def _features(self, g_pixel_values: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        """(raw 64x64 vision features, high-res features through conv_s0/s1, their sine position)."""
        fpn = self.sa2va.sam2_backbone(g_pixel_values)
        _, high_res = self.sa2va.sam2_decoder_inputs(fpn)
        neck = self.sa2va.sam2.vision_encoder.neck
        pos = neck.position_encoding(fpn[2].shape, fpn[2].device, fpn[2].dtype).to(fpn[2].dtype)
        return fpn[2], high_res, pos

    def _decode(
        self,
        image_embed: torch.Tensor,
        high_res: list[torch.Tensor],
        vision: torch.Tensor,
        language_embeds: Optional[torch.Tensor],
        n: int,
    ) -> FrameState:
        if language_embeds is not None:
            decoded = self.sa2va.decode_masks(image_embed, high_res, language_embeds)
        else:
            decoded = self.sa2va.decode_with_prompt(image_embed, high_res, self.sa2va.not_a_point_tokens(n))
        ptr = self.memory.object_pointer(decoded['sam_token'], decoded['object_score_logits'])
        return FrameState(
            mask_logits=decoded['mask_logits'],
            object_pointer=ptr,
            object_score_logits=decoded['object_score_logits'],
            iou_pred=decoded['iou_pred'],
            vision_features=vision,
        )

    def memory_inputs(
        self, t: int, states: dict[int, FrameState], cond: Sequence[int], num_frames: int
    ) -> tuple[torch.Tensor, torch.Tensor, int, dict[str, Any]]:
        """(memory (M, N, mem), memory position (M, N, mem), number of pointer tokens, layout)."""
        tpos = self.memory.memory_temporal_positional_encoding
        blocks, block_pos, layout = [], [], {'blocks': [], 'pointers': []}
        n_mem = tpos.shape[0]
        for f in cond:  # all conditioning frames, even later ones, with t_pos 0 -> index n_mem - 1
            blocks.append(states[f].maskmem_features)
            block_pos.append(states[f].maskmem_pos_enc + tpos[n_mem - 1])
            layout['blocks'].append((f, n_mem - 1))
        for r in range(n_mem - 1, 0, -1):  # propagated frames t-6 .. t-1, oldest first
            prev = t - r
            if prev in states and prev not in cond:
                blocks.append(states[prev].maskmem_features)
                block_pos.append(states[prev].maskmem_pos_enc + tpos[r - 1])
                layout['blocks'].append((prev, r - 1))
        pointers = [f for f in cond if f <= t]
        for d in range(1, min(num_frames, MAX_OBJ_PTRS)):
            prev = t - d
            if prev < 0:
                break
            if prev in states and prev not in cond:
                pointers.append(prev)
        layout['pointers'] = pointers
        dtype = self.memory.dtype
        spatial = torch.cat(blocks, dim=0).to(dtype)  # bf16-rounded values, compute dtype
        spatial_pos = torch.cat(block_pos, dim=0).to(dtype)
        ptr = torch.stack([states[f].object_pointer for f in pointers], dim=0).to(dtype)  # (P, N, C)
        p, n, c = ptr.shape
        split = c // self.memory.mem_dim
        # each C-dim pointer becomes C/mem_dim consecutive tokens; zero position, no RoPE
        ptr = ptr.reshape(p, n, split, self.memory.mem_dim).permute(0, 2, 1, 3).flatten(0, 1)
        memory = torch.cat([spatial, ptr], dim=0)
        memory_pos = torch.cat([spatial_pos, torch.zeros_like(ptr)], dim=0)
        return memory, memory_pos, ptr.shape[0], layout

    def condition_on_memory(
        self, vision: torch.Tensor, pos: torch.Tensor, memory: torch.Tensor, memory_pos: torch.Tensor, n_ptr_tokens: int
    ) -> torch.Tensor:
        """Memory attention: (N, C, 64, 64) vision features -> the image embedding for the decoder."""
        n, c, h, w = vision.shape
        dtype = self.memory.dtype
        out = self.memory.memory_attention(
            current_vision_features=vision.to(dtype).flatten(2).permute(2, 0, 1),
            memory=memory,
            current_vision_position_embeddings=pos.to(dtype).flatten(2).permute(2, 0, 1),
            memory_posision_embeddings=memory_pos,
            num_object_pointer_tokens=n_ptr_tokens,
        )
        return out.reshape(n, h * w, c).permute(0, 2, 1).reshape(n, c, h, w)

    def run(
        self,
        frames: FrameSource,
        num_frames: int,
        language_embeds: torch.Tensor,
        cond_frames: Sequence[int],
        propagation: str = 'memory',
        trace: Optional[dict] = None,
        progress: bool = False,
    ) -> VideoResult:
        """Masks of every frame for ``language_embeds`` (N, C), one object per row."""
        if propagation not in ('memory', 'independent'):
            raise ValueError(f"propagation must be 'memory' or 'independent', got {propagation!r}")
        cond = sorted(set(int(f) for f in cond_frames))
        if not cond or cond[0] != 0 or cond[-1] >= num_frames:
            raise ValueError(
                f'conditioning frames {cond} must start at frame 0 and lie in the '
                f'{num_frames} frames (propagation runs forward from the first one)'
            )
        n = language_embeds.shape[0]
        states: dict[int, FrameState] = {}
        trace = trace if trace is not None else None

        def prompted(t: int) -> FrameState:
            vision, high_res, _ = self._features(frames(t))
            vision, high_res = vision.expand(n, -1, -1, -1), [h.expand(n, -1, -1, -1) for h in high_res]
            image_embed = vision + self.sa2va.sam2.no_memory_embedding.reshape(1, -1, 1, 1).to(vision.dtype)
            return self._decode(image_embed, high_res, vision, language_embeds, n)

        prompted_frames = cond if propagation == 'memory' else list(range(num_frames))
        order = range(num_frames)
        bar = _progress(order, progress, 'frames')
        # 1. every conditioning frame on its own (initial conditioning frames)
        for t in prompted_frames:
            states[t] = prompted(t)
            if bar is not None:
                bar.update(1)
        if propagation == 'memory':
            # 2. their memories (official propagate_in_video_preflight)
            for t in cond:
                s = states[t]
                s.maskmem_features, s.maskmem_pos_enc, fp = self.memory.encode(s.vision_features, s.mask_logits)
                if trace is not None:
                    trace.setdefault(t, {})['maskmem_features_fp32'] = fp
            # 3. the other frames in order, each conditioned on the memory bank
            for t in range(cond[0], num_frames):
                if t in cond:
                    continue
                vision, high_res, pos = self._features(frames(t))
                vision, high_res = vision.expand(n, -1, -1, -1), [h.expand(n, -1, -1, -1) for h in high_res]
                pos = pos.expand(n, -1, -1, -1)
                memory, memory_pos, n_ptr, layout = self.memory_inputs(t, states, cond, num_frames)
                pix = self.condition_on_memory(vision, pos, memory, memory_pos, n_ptr)
                state = self._decode(pix, high_res, vision, None, n)
                state.maskmem_features, state.maskmem_pos_enc, fp = self.memory.encode(vision, state.mask_logits)
                states[t] = state
                if trace is not None:
                    n_spatial = memory.shape[0] - n_ptr
                    trace.setdefault(t, {}).update(
                        pix_feat_with_mem=pix,
                        layout=layout,
                        n_tokens=memory.shape[0],
                        obj_ptr_tokens=memory[n_spatial:],
                        tpos_per_block=[
                            self.memory.memory_temporal_positional_encoding[i].reshape(-1) for _, i in layout['blocks']
                        ],
                        maskmem_features_fp32=fp,
                    )
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()
        logits = torch.stack([states[t].mask_logits for t in range(num_frames)])
        return VideoResult(mask_logits=logits, cond_frames=cond, states=states)


def _progress(order: range, enabled: bool, unit: str) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=len(order), unit=unit, desc='video')
