"""The training model: Sa2VA + LoRA with a teacher-forced ``[SEG]`` path that gradients reach.

There is no ``generate()`` anywhere here. Training and prediction both run one teacher-forced
forward pass and read the hidden state at the ``[SEG]`` token's position; only ``mode='predict'``
runs under ``torch.no_grad()``. Frozen parts (vision tower, SAM2 image encoder) run without grad
because nothing of theirs trains, not to hide anything.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from torch import nn
from torch.profiler import record_function

from ..datasets.batch_layout import BatchLayout, batch_layout, label_rows, layouts_equal
from ..datasets.conversation import IGNORE_INDEX
from ..datasets.fast_tokenizer import load_fast_tokenizer
from ..registry import MODELS
from .checkpoint import build_preset, load_sa2va
from .feature_cache import FrozenFeatureCache
from .lora import DEFAULT_TARGETS, LoraSettings, add_lora, set_light_token_rows
from .losses import mask_losses, point_sampled_mask_losses
from .peft_names import TOKEN_DELTA, is_lora
from .presets import PRESET_PREFIX, preset_token_id
from .quantize import check_quant_type, import_bitsandbytes, linear4bit_layers, logical_numel, quantize_llm_linears
from .sa2va import mask_logits_to_size
from .speed import SpeedSwitches, set_compiled

logger = logging.getLogger(__name__)

SEG_TOKEN = '[SEG]'
IMG_CONTEXT_TOKEN = '<IMG_CONTEXT>'
QWEN_IMAGE_PAD = '<|image_pad|>'
TRAINABLE_GROUPS = ('lora', 'token_rows', 'text_hidden_fcs', 'mask_decoder', 'projector')
# Off unless asked for: the whole embed_tokens / lm_head matrices (the official recipe's
# modules_to_save; docs/RECIPE.md). Exclusive with token_rows, which trains only their [SEG] rows.
OPTIONAL_GROUPS = ('embeddings',)
MASK_LOSSES = ('dense', 'points')
# Mask-decoder parts that no mask loss reaches: the IoU and object-score heads only feed the
# (non-differentiable) best-mask choice, and mask token 0 is the single-mask output that
# multimask mode discards. They stay frozen so every trainable tensor gets a gradient each step.
DECODER_FROZEN = ('iou_prediction_head.', 'pred_obj_score_head.', 'output_hypernetworks_mlps.0.')

DTYPES = {'float32': torch.float32, 'bfloat16': torch.bfloat16, 'float16': torch.float16, None: None}


NON_BLOCKING_PREPROCESSOR = dict(type='BaseDataPreprocessor', non_blocking=True)


@dataclass
class SegMaskOutput:
    """What ``Sa2VAVesselModel.seg_masks`` returns (N = number of [SEG] tokens in the batch)."""

    hidden: torch.Tensor  # (B, L, hidden) LLM last hidden state, after the final norm
    seg_per_sample: torch.Tensor  # (B,) int64, [SEG] tokens per sample
    language_embeds: torch.Tensor  # (N, C_sam) text_hidden_fcs at each [SEG], row-major order
    mask_logits: torch.Tensor  # (N, 256, 256) best-IoU mask logits
    multimask_logits: torch.Tensor  # (N, 3, 256, 256) the three multimask outputs
    iou_pred: torch.Tensor  # (N, 3) predicted IoU of each
    best_index: torch.Tensor  # (N,) argmax of iou_pred
    object_score_logits: torch.Tensor  # (N,)
    sam_token: torch.Tensor  # (N, C_sam) the best mask's decoder output token (video object pointer)
    layout: BatchLayout | None = None  # the batch's token layout (where the [SEG] and label rows are)


@MODELS.register_module()
class Sa2VAVesselModel(BaseModel):
    """Sa2VA for vessel segmentation: ``forward(data, data_samples, mode)`` per docs/ARCHITECTURE.md."""

    def __init__(
        self,
        model_path: str,
        dtype: str | None = None,
        lora: dict | None = None,
        trainable: dict | None = None,
        trainable_tokens: tuple[str, ...] = (SEG_TOKEN,),
        llm_loss_weight: float = 1.0,
        mask_loss_weight: float = 2.0,
        dice_loss_weight: float = 0.5,
        loss_resolution: int = 1024,
        mask_loss: str = 'dense',
        point_loss: dict | None = None,
        gradient_checkpointing: bool = True,
        attn_implementation: str = 'sdpa',
        sam2_feature_cache_size: int = 0,
        vision_feature_cache: bool = False,
        sam2_side_stream: bool = False,
        compile_llm_layers: bool = False,
        compile_frozen_encoders: bool = False,
        cuda_graph_llm_layers: bool = False,
        light_token_rows: bool = False,
        causal_mask_for_right_padding: bool = False,
        indexed_image_splice: bool = False,
        trainable_dtype: str | None = None,
        quantize_base: str | None = None,
        device: str | None = None,
        vocab_size: int | None = None,
        seed: int = 0,
        data_preprocessor: dict | None = None,
        init_cfg: dict | None = None,
    ) -> None:
        # non_blocking: the batch (pinned by the loader) goes to the GPU without a synchronisation
        # per tensor; mmengine's default copies blocking, which drains the GPU's queue every step
        super().__init__(data_preprocessor=data_preprocessor or dict(NON_BLOCKING_PREPROCESSOR), init_cfg=init_cfg)
        self.model_path = str(model_path)
        if quantize_base is not None:  # fail before a long load, not after it
            check_quant_type(quantize_base)
            import_bitsandbytes()
        self.quantize_base = quantize_base
        is_preset = self.model_path.startswith(PRESET_PREFIX)
        if is_preset:
            # random weights at a published shape, drawn on `device` (benchmarks; no files); with
            # quantize_base, one decoder layer at a time, each quantized as soon as it is drawn, so
            # the whole bf16 LLM never sits on the GPU (15 GiB at 8B, 29 GiB at 14B)
            self.sa2va, self.load_report = build_preset(
                self.model_path[len(PRESET_PREFIX) :],
                dtype=DTYPES[dtype] or torch.bfloat16,
                device=device,
                vocab_size=vocab_size,
                attn_implementation=attn_implementation,
                seed=seed,
                quantize_base=quantize_base,
            )
            vocab, family = self.sa2va.arch.llm.vocab_size, self.sa2va.arch.family
            token_id = lambda token: preset_token_id(token, vocab, family)  # noqa: E731
        else:
            self.sa2va, self.load_report = load_sa2va(
                model_path, dtype=DTYPES[dtype], attn_implementation=attn_implementation
            )
            tokenizer = load_fast_tokenizer(model_path)
            token_id = lambda token: self._token_id(tokenizer, token)  # noqa: E731
        self.seg_token_id = token_id(SEG_TOKEN)
        self._batch_ids_checked = False
        # the image placeholder the vision embeddings replace: <IMG_CONTEXT> (InternVL) or the
        # config's image_token_id, <|image_pad|> (Qwen-VL families)
        self.is_qwen = self.sa2va.arch.is_qwen
        self.img_context_id = token_id(QWEN_IMAGE_PAD if self.is_qwen else IMG_CONTEXT_TOKEN)
        if self.is_qwen and self.img_context_id != self.sa2va.image_token_id:
            raise ValueError(
                f'{model_path}: the tokenizer gives {QWEN_IMAGE_PAD} id {self.img_context_id}, '
                f'config.json image_token_id is {self.sa2va.image_token_id}'
            )
        if self.is_qwen and vision_feature_cache:
            raise ValueError(
                'vision_feature_cache is not available for the Qwen-VL families yet (their '
                'vision tower runs on variable-size patch grids); switch it off'
            )
        self.trainable_token_ids = [token_id(t) for t in trainable_tokens]
        self.llm_loss_weight = llm_loss_weight
        self.mask_loss_weight = mask_loss_weight
        self.dice_loss_weight = dice_loss_weight
        self.loss_resolution = loss_resolution
        if mask_loss not in MASK_LOSSES:
            raise ValueError(f'mask_loss must be one of {MASK_LOSSES}, got {mask_loss!r}')
        # 'points': the official point-sampled loss at the decoder's size (num_points,
        # oversample_ratio, importance_sample_ratio from point_loss); loss_resolution unused
        self.mask_loss = mask_loss
        self.point_loss = dict(point_loss or {})
        self._said_no_keys = False
        self._side_stream: torch.cuda.Stream | None = None
        if loss_resolution < 512 and mask_loss == 'dense':
            logger.warning('loss_resolution=%d: vessels 1-2 px wide vanish below about 512 px', loss_resolution)

        switches = {name: True for name in TRAINABLE_GROUPS}
        switches.update({name: False for name in OPTIONAL_GROUPS})
        unknown = set(trainable or {}) - set(switches)
        if unknown:
            raise ValueError(f'trainable: unknown groups {sorted(unknown)}; known: {tuple(switches)}')
        switches.update(trainable or {})
        if switches['embeddings'] and switches['token_rows']:
            raise ValueError(
                "trainable: 'embeddings' (whole embed_tokens/lm_head) and 'token_rows' "
                '(their [SEG] rows) exclude each other; switch token_rows off'
            )
        self.switches = switches
        lora_cfg = dict(lora or {})
        settings = LoraSettings(
            r=lora_cfg.get('r', 128),
            alpha=lora_cfg.get('alpha', 256),
            dropout=lora_cfg.get('dropout', 0.05),
            target_modules=tuple(lora_cfg.get('target_modules', DEFAULT_TARGETS)),
            token_ids=self.trainable_token_ids,
        )
        if quantize_base is not None:
            # QLoRA: the frozen projections become 4-bit before LoRA wraps them (models/quantize.py);
            # a preset is built that way already
            lm = self.sa2va.language_model
            if not is_preset:
                quantize_llm_linears(lm, quant_type=quantize_base, compute_dtype=lm.model.norm.weight.dtype)
            logger.info(
                'quantize_base=%s: %d LLM projections are bitsandbytes Linear4bit',
                quantize_base,
                len(linear4bit_layers(lm)),
            )
        self._set_trainable(settings)
        if trainable_dtype is not None:
            # e.g. fp32 trainables over a bf16 frozen base: AdamW's small updates are not rounded
            # away, and forward runs under bf16 autocast (see `forward`)
            for p in self.parameters():
                if p.requires_grad:
                    p.data = p.data.to(DTYPES[trainable_dtype])
        self.speed = SpeedSwitches()
        self.set_speed_switches(
            SpeedSwitches(
                gradient_checkpointing=gradient_checkpointing,
                sam2_side_stream=sam2_side_stream,
                compile_llm_layers=compile_llm_layers,
                compile_frozen_encoders=compile_frozen_encoders,
                cuda_graph_llm_layers=cuda_graph_llm_layers,
                light_token_rows=light_token_rows,
                causal_mask_for_right_padding=causal_mask_for_right_padding,
                indexed_image_splice=indexed_image_splice,
                sam2_feature_cache_size=sam2_feature_cache_size,
                vision_feature_cache=vision_feature_cache,
            )
        )
        logger.info('\n' + self.parameter_table())

    def set_speed_switches(self, switches: SpeedSwitches) -> None:
        """Apply ``switches`` (models/speed.py) in place; any switch can be turned back off."""
        lm = self.sa2va.language_model
        if switches.gradient_checkpointing:
            lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={'use_reentrant': False})
        elif lm.is_gradient_checkpointing:
            lm.gradient_checkpointing_disable()
        self.speed = switches
        self._apply_compile()
        set_light_token_rows(lm, switches.light_token_rows)
        self.sam2_cache = FrozenFeatureCache(switches.sam2_feature_cache_size)
        self.vision_cache = FrozenFeatureCache(switches.sam2_feature_cache_size if switches.vision_feature_cache else 0)

    def _apply_compile(self) -> None:
        # compiled graphs serve the training step only (see SpeedSwitches): eval mode runs eager
        options = self.speed.llm_layer_compile_options()
        for layer in self.sa2va.language_model.model.layers:  # the layers share one compiled graph
            set_compiled(layer, self.speed.compile_llm_layers and self.training, options)
        for encoder in (self.sa2va.vision_tower, self.sa2va.sam2.vision_encoder):
            set_compiled(encoder, self.speed.compile_frozen_encoders and self.training)

    def train(self, mode: bool = True) -> 'Sa2VAVesselModel':
        """``nn.Module.train``; also switches the compiled modules on (training) or off (eval)."""
        super().train(mode)
        if hasattr(self, 'speed'):  # nn.Module.__init__ paths call train() before the switches exist
            self._apply_compile()
        return self

    def init_weights(self) -> None:
        """mmengine's weight init (the runner calls it before training)."""
        if self.quantize_base is None:
            return super().init_weights()
        # mmengine's bookkeeping takes every parameter's mean, which packed 4-bit (uint8) weights
        # do not have; every weight is already built or loaded, so there is nothing to initialise
        if self.init_cfg:
            raise ValueError(f'init_cfg={self.init_cfg!r} cannot be combined with quantize_base')
        self._is_init = True

    @property
    def replays_cuda_graphs(self) -> bool:
        """Whether this training step replays the decoder layers as CUDA graphs (models/speed.py)."""
        return self.training and self.speed.compile_llm_layers and self.speed.cuda_graph_llm_layers

    def begin_training_step(self) -> None:
        """Tell the CUDA-graph trees a new training step begins (every ``loss`` calls this first).

        The previous step's graph outputs are dead (its backward ran), so the trees may reuse their
        memory and replay on the fast path. Unmarked, they cannot tell: they warn of "pending,
        uninvoked backwards" and check the memory pool at every replay.
        """
        if self.replays_cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()

    @property
    def sam2_side_stream(self) -> bool:
        return self.speed.sam2_side_stream

    @staticmethod
    def _token_id(tokenizer: Any, token: str) -> int:
        token_id = tokenizer.convert_tokens_to_ids(token)
        if token_id is None or token_id == tokenizer.unk_token_id or not isinstance(token_id, int):
            raise ValueError(f'the tokenizer of this checkpoint has no {token!r} token')
        return token_id

    # ---- which weights train ---------------------------------------------------------------
    def _set_trainable(self, settings: LoraSettings) -> None:
        for p in self.sa2va.parameters():
            p.requires_grad_(False)
        add_lora(
            self.sa2va.language_model, settings, lora=self.switches['lora'], token_rows=self.switches['token_rows']
        )
        if self.switches['embeddings']:
            self.sa2va.language_model.get_input_embeddings().weight.requires_grad_(True)
            self.sa2va.language_model.lm_head.weight.requires_grad_(True)  # the same tensor when tied
        if self.switches['text_hidden_fcs']:
            self.sa2va.text_hidden_fcs.requires_grad_(True)
        if self.switches['projector'] and self.is_qwen:  # the merger(s) of the Qwen-VL vision tower
            for _, p in self.sa2va.projector_parameters():
                p.requires_grad_(True)
        elif self.switches['projector']:
            self.sa2va.mlp1.requires_grad_(True)
        if self.switches['mask_decoder']:
            for name, p in self.sa2va.sam2.mask_decoder.named_parameters():
                p.requires_grad_(not name.startswith(DECODER_FROZEN))

    def trainable_groups(self) -> dict[str, list[tuple[str, nn.Parameter]]]:
        """Named trainable groups, each only when switched on (the gradient guard reads these)."""
        groups: dict[str, list[tuple[str, nn.Parameter]]] = {g: [] for g in self.switches if self.switches[g]}
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            groups[self._group_of(name)].append((name, p))
        return groups

    @staticmethod
    def _group_of(name: str) -> str:
        if is_lora(name):
            return 'lora'
        if TOKEN_DELTA in name:
            return 'token_rows'
        if name.endswith(('.embed_tokens.weight', '.lm_head.weight')):
            return 'embeddings'
        if '.text_hidden_fcs.' in name:
            return 'text_hidden_fcs'
        if '.sam2.mask_decoder.' in name:
            return 'mask_decoder'
        if '.mlp1.' in name or '.visual.merger.' in name or '.visual.deepstack_merger_list.' in name:
            return 'projector'
        raise RuntimeError(f'trainable parameter {name} belongs to no known group')

    def parameter_table(self) -> str:
        """Module groups, trainable or frozen, parameter counts."""
        if self.is_qwen:
            modules = {
                f'vision tower + merger(s) ({type(self.sa2va.visual).__name__})': self.sa2va.visual,
                f'LLM ({type(self.sa2va.language_model.model).__name__})': self.sa2va.language_model,
            }
        else:
            modules = {
                'vision tower (InternViT)': self.sa2va.vision_model,
                'projector (mlp1)': self.sa2va.mlp1,
                'LLM (Qwen2)': self.sa2va.language_model,
            }
        modules.update(
            {
                'SAM2 image encoder': self.sa2va.sam2.vision_encoder,
                'SAM2 prompt encoder': self.sa2va.sam2.prompt_encoder,
                'SAM2 mask decoder': self.sa2va.sam2.mask_decoder,
                'text_hidden_fcs': self.sa2va.text_hidden_fcs,
            }
        )
        rows = [('module', 'trainable', 'frozen', 'dtype')]
        for label, module in modules.items():
            params = list(module.parameters())
            train = sum(p.numel() for p in params if p.requires_grad)
            frozen = sum(logical_numel(p) for p in params if not p.requires_grad)
            dtypes = sorted({getattr(p, 'quant_type', None) or str(p.dtype).replace('torch.', '') for p in params})
            rows.append((label, f'{train:,}', f'{frozen:,}', '/'.join(dtypes)))
        rows.append(
            (
                'total',
                f'{sum(p.numel() for p in self.parameters() if p.requires_grad):,}',
                f'{sum(logical_numel(p) for p in self.parameters() if not p.requires_grad):,}',
                '',
            )
        )
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = [
            '  '.join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows
        ]
        groups = ', '.join(f'{g} ({sum(p.numel() for _, p in ps):,})' for g, ps in self.trainable_groups().items())
        return '\n'.join(lines[:1] + ['-' * len(lines[0])] + lines[1:] + [f'trainable groups: {groups}'])

    # ---- forward ---------------------------------------------------------------------------
    def forward(self, data: dict, data_samples: list | None = None, mode: str = 'loss') -> Any:
        if not self._batch_ids_checked:  # once: it synchronises with the device
            self.check_batch_ids(data['input_ids'], expect_seg=mode == 'loss')
            self.check_batch_layout(data)
            self._batch_ids_checked = True
        with self.autocast_context(data):
            if mode == 'loss':
                return self.loss(data, data_samples)
            if mode == 'predict':
                with torch.no_grad():
                    return self.predict(data, data_samples)
        raise ValueError(f"mode must be 'loss' or 'predict', got {mode!r}")

    def check_batch_ids(self, input_ids: torch.Tensor, expect_seg: bool) -> None:
        """Raise ValueError when the batch's token ids are not this model's: the data set's tokenizer
        is another checkpoint's (on a GPU the embedding lookup would abort the process without a
        Python traceback)."""
        rows = self.sa2va.language_model.get_input_embeddings().weight.shape[0]
        top = int(input_ids.max())
        fix = (
            "the data set's tokenizer (train_dataloader.dataset.model_path) is not the one of "
            f'model.model_path={self.model_path!r}: point both at the same checkpoint'
        )
        if top >= rows:
            raise ValueError(f'the batch has token id {top}, but the model has {rows} embedding rows: {fix}')
        if expect_seg and not bool((input_ids == self.seg_token_id).any()):
            raise ValueError(f"no sample of the batch holds the model's [SEG] id {self.seg_token_id}: {fix}")

    def batch_layout(self, data: dict) -> BatchLayout:
        """Where the batch's [SEG], label and image tokens are: the collate's, found on the host
        (``data['layout']``), else found here on the device, which synchronises."""
        layout = data.get('layout')
        return self._layout_on_device(data) if layout is None else layout

    def _layout_on_device(self, data: dict) -> BatchLayout:
        input_ids, labels = data['input_ids'], data.get('labels')
        labels = torch.full_like(input_ids, IGNORE_INDEX) if labels is None else labels
        return batch_layout(input_ids, labels, self.seg_token_id, self.img_context_id, data.get('attention_mask'))

    def check_batch_layout(self, data: dict) -> None:
        """Raise ValueError when the collate's layout, found with the data set's token ids, is not
        the one this model's [SEG] and image ids give (once: it synchronises with the device)."""
        given = data.get('layout')
        if given is None:
            return
        own = self._layout_on_device(data)
        if not layouts_equal(own, given):
            raise ValueError(
                "the batch's data['layout'] (vessel_collate, from the items' seg_token_id / "
                "image_token_id) is not the model's: the data set's tokenizer "
                '(train_dataloader.dataset.model_path) is not the one of model.model_path='
                f'{self.model_path!r} ([SEG] per sample: data {list(given.seg_per_sample)}, model '
                f'{list(own.seg_per_sample)}; image slots: data {given.n_image_slots}, model '
                f'{own.n_image_slots})'
            )

    def autocast_context(self, data: dict) -> Any:
        """Autocast to the base's bf16/fp16 when trainables are kept in fp32 over it; else a no-op.

        Everything that runs the model outside ``forward`` (generation) must enter it too: an fp32
        ``text_hidden_fcs`` cannot take the bf16 hidden state of the base otherwise. Read at
        every call: DeepSpeed's bf16 mode casts the whole module to bf16 after it was built, and
        then no autocast is needed (nor wanted: it would change what runs).
        """
        frozen = self.sa2va.language_model.model.norm.weight.dtype
        trainable = next((p.dtype for p in self.parameters() if p.requires_grad), frozen)
        ids = data.get('input_ids') if isinstance(data, dict) else None
        mixed = (
            isinstance(ids, torch.Tensor) and frozen in (torch.bfloat16, torch.float16) and trainable == torch.float32
        )
        return torch.autocast(ids.device.type, dtype=frozen) if mixed else contextlib.nullcontext()

    @staticmethod
    def _cache_keys(data_samples: list | None, n: int) -> list | None:
        keys = [s.get('frozen_feature_key') if isinstance(s, dict) else None for s in (data_samples or [])]
        return keys if len(keys) == n and None not in keys else None

    def image_embeddings(
        self, pixel_values: torch.Tensor, input_ids: torch.Tensor, data_samples: list | None = None
    ) -> torch.Tensor:
        """Projected image embeddings (T, tokens_per_tile, hidden): frozen ViT (no grad), trainable mlp1."""
        keys = self._cache_keys(data_samples, input_ids.shape[0]) if self.vision_cache.enabled else None
        with torch.no_grad():  # the vision tower is frozen
            if keys is None:
                features = self.sa2va.vision_features(pixel_values)
            else:
                features = self._cached_vision_features(pixel_values, input_ids, keys)
        return self.sa2va.mlp1(features.to(self.sa2va.mlp1.linear_1.weight.dtype))

    def _cached_vision_features(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, keys: list) -> torch.Tensor:
        tiles = ((input_ids == self.img_context_id).sum(1) // self.sa2va.arch.num_image_tokens).tolist()
        first = [sum(tiles[:i]) for i in range(len(tiles))]
        missing = [i for i, k in enumerate(keys) if k not in self.vision_cache]
        if missing:
            index = torch.cat([torch.arange(first[i], first[i] + tiles[i]) for i in missing]).to(pixel_values.device)
            fresh = torch.split(self.sa2va.vision_features(pixel_values[index]), [tiles[i] for i in missing])
            for i, f in zip(missing, fresh):
                self.vision_cache.put(keys[i], [f])
        return torch.cat([self.vision_cache.get(k)[0] for k in keys])

    def sam2_features(self, g_pixel_values: torch.Tensor, data_samples: list | None = None) -> list[torch.Tensor]:
        """The frozen SAM2 backbone's FPN levels (B, C, 256/128/64, ...), from the cache where allowed."""
        keys = self._cache_keys(data_samples, g_pixel_values.shape[0])
        if self.sam2_cache.enabled and keys is None and self.training and not self._said_no_keys:
            # augmented samples carry no key (the runner normally switches the cache off first)
            logger.info(
                'frozen-feature cache unused for these training samples: they carry no '
                'frozen_feature_key (a transform changed them)'
            )
            self._said_no_keys = True
        if not self.sam2_cache.enabled or keys is None:
            with torch.no_grad():  # the SAM2 image encoder is frozen
                return self.sa2va.sam2_backbone(g_pixel_values)
        missing = [i for i, k in enumerate(keys) if k not in self.sam2_cache]
        if missing:
            with torch.no_grad():
                fresh = self.sa2va.sam2_backbone(g_pixel_values[missing])
            for j, i in enumerate(missing):
                self.sam2_cache.put(keys[i], [level[j] for level in fresh])
        per_sample = [self.sam2_cache.get(k) for k in keys]
        return [torch.stack([levels[lv] for levels in per_sample]) for lv in range(len(per_sample[0]))]

    def _side_stream_for(self, g_pixel_values: torch.Tensor) -> torch.cuda.Stream | None:
        if not (self.sam2_side_stream and g_pixel_values.is_cuda):
            return None
        if self._side_stream is None or self._side_stream.device != g_pixel_values.device:
            self._side_stream = torch.cuda.Stream(device=g_pixel_values.device)
        return self._side_stream

    def seg_masks(self, data: dict, data_samples: list | None = None) -> SegMaskOutput:
        """Teacher-forced pass: the LLM's last hidden states and one decoded mask per [SEG]."""
        input_ids, g_pixel_values = data['input_ids'], data['g_pixel_values']
        layout = self.batch_layout(data)
        if 0 in layout.seg_per_sample:
            raise ValueError(f'every sample needs a [SEG] token; counts per sample: {list(layout.seg_per_sample)}')
        side = self._side_stream_for(g_pixel_values)
        if side is not None:
            # the frozen SAM2 encoder runs on its own stream, overlapped with the ViT and the LLM
            side.wait_stream(torch.cuda.current_stream(g_pixel_values.device))
            g_pixel_values.record_stream(side)
            with torch.cuda.stream(side), record_function('sa2va/sam2_encoder'):
                fpn = self.sam2_features(g_pixel_values, data_samples)
        # record_function: named ranges for torch.profiler (tools/benchmark.py --profile); ~1 us each otherwise
        if self.is_qwen:
            with record_function('sa2va/vision_and_llm'):
                hidden = self._qwen_last_hidden(data)
        else:
            with record_function('sa2va/vision'):
                image_embeds = self.image_embeddings(data['pixel_values'], input_ids, data_samples)
            with record_function('sa2va/llm'):
                inputs_embeds = self.sa2va.splice_image_embeddings(
                    input_ids,
                    image_embeds,
                    self.img_context_id,
                    n_slots=layout.n_image_slots,
                    image_index=layout.image_index if self.speed.indexed_image_splice else None,
                )
                hidden = self.sa2va.llm_last_hidden(
                    inputs_embeds, self.llm_attention_mask(data, layout), data['position_ids']
                )

        # (N_seg, C) in row-major order, gathered by index: hidden[is_seg] would read N_seg from the GPU
        seg_hidden = hidden.reshape(-1, hidden.shape[-1]).index_select(0, layout.seg_index)
        language_embeds = self.sa2va.text_hidden_fcs(seg_hidden)

        if side is None:
            with record_function('sa2va/sam2_encoder'):
                fpn = self.sam2_features(g_pixel_values, data_samples)
        else:
            main = torch.cuda.current_stream(g_pixel_values.device)
            main.wait_stream(side)
            for level in fpn:
                level.record_stream(main)
        with record_function('sa2va/mask_decoder'):
            image_embed, high_res = self.sa2va.sam2_decoder_inputs(fpn)
            # one decoder call per [SEG]: repeat each sample's image features for its [SEG] count
            repeat, n_seg = layout.seg_counts.to(image_embed.device), sum(layout.seg_per_sample)
            image_embed = image_embed.repeat_interleave(repeat, dim=0, output_size=n_seg)
            high_res = [h.repeat_interleave(repeat, dim=0, output_size=n_seg) for h in high_res]
            decoded = self.sa2va.decode_masks(image_embed, high_res, language_embeds)
        return SegMaskOutput(
            hidden=hidden, seg_per_sample=layout.seg_counts, language_embeds=language_embeds, layout=layout, **decoded
        )

    def llm_attention_mask(self, data: dict, layout: BatchLayout) -> torch.Tensor | None:
        """The padding mask the InternVL LLM gets: none for a right-padded batch when the
        ``causal_mask_for_right_padding`` switch is on. Causal attention already keeps each real
        token from the pads after it, so every real position's hidden state is the same; without a
        mask SDPA takes its causal kernel and transformers reads nothing back from the GPU to
        decide whether the mask can be skipped. Pad positions differ, and nothing reads them."""
        if self.speed.causal_mask_for_right_padding and layout.right_padded:
            return None
        return data['attention_mask']

    def _qwen_last_hidden(self, data: dict) -> torch.Tensor:
        """Qwen-VL families: vision tower + merger(s), splice, M-RoPE ids, LLM (models/sa2va_qwen.py)."""
        if 'image_grid_thw' not in data:
            raise KeyError('a Qwen-VL Sa2VA batch needs image_grid_thw (VesselSegDataset + vessel_collate give it)')
        # the frozen tower builds no graph; only the merger(s) do, when the projector group trains
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.switches['projector']):
            image = self.sa2va.image_embeddings(data['pixel_values'], data['image_grid_thw'])
        return self.sa2va.last_hidden_from_inputs(
            data['input_ids'],
            data['pixel_values'],
            data['image_grid_thw'],
            data['attention_mask'],
            data.get('position_ids'),
            image_embeds=image,
        )

    def llm_loss(self, hidden: torch.Tensor, labels: torch.Tensor, layout: BatchLayout | None = None) -> torch.Tensor:
        """Next-token cross-entropy on answer tokens; logits only where a label exists. With the
        batch's ``layout`` the rows are gathered by index, without reading a count from the GPU."""
        index, target = label_rows(labels) if layout is None else (layout.label_index, layout.label_target)
        if index.numel() == 0:
            return hidden.sum() * 0.0
        rows = hidden.reshape(-1, hidden.shape[-1]).index_select(0, index)
        # Qwen3-VL's [SEG] state is pre-norm; the logits read the final norm's output
        logits = self.sa2va.language_model.lm_head(self.sa2va.logits_hidden(rows))
        return F.cross_entropy(logits.float(), target)

    def loss(self, data: dict, data_samples: list | None = None) -> dict[str, torch.Tensor]:
        self.begin_training_step()
        out = self.seg_masks(data, data_samples)
        with record_function('sa2va/losses'):
            return self._losses(out, data)

    def _losses(self, out: SegMaskOutput, data: dict) -> dict[str, torch.Tensor]:
        if self.mask_loss == 'points':
            losses = point_sampled_mask_losses(
                out.mask_logits, data['masks'], self.mask_loss_weight, self.dice_loss_weight, **self.point_loss
            )
        else:
            losses = mask_losses(
                out.mask_logits, data['masks'], self.loss_resolution, self.mask_loss_weight, self.dice_loss_weight
            )
        losses['loss_llm'] = self.llm_loss_weight * self.llm_loss(out.hidden, data['labels'], out.layout)
        return losses

    def predict(self, data: dict, data_samples: list | None = None) -> list[dict[str, torch.Tensor]]:
        """Mask probabilities at each image's original resolution, one (S, H, W) tensor per sample."""
        out = self.seg_masks(data, data_samples)
        per_sample = torch.split(out.mask_logits, out.seg_per_sample.tolist())
        results = []
        for i, logits in enumerate(per_sample):
            if data_samples and isinstance(data_samples[i], dict) and 'ori_size' in data_samples[i]:
                size = tuple(data_samples[i]['ori_size'])
            else:
                size = tuple(data['masks'][i].shape[-2:])
            results.append({'prob': mask_logits_to_size(logits, size).sigmoid().cpu()})
        return results
