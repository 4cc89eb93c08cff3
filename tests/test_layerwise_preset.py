"""The QLoRA preset drawn part by part (models/layerwise_init.py, checkpoint.build_preset(quantize_base=...)).

On the GPU it keeps at most one bf16 decoder layer of the LLM on the device; here, on the CPU, the
same code runs and is checked for what it builds: the normal build's parameters, every one drawn
(NaN-filled storage that no init reached is an error), the projections 4-bit, seeded, trainable.
"""

from __future__ import annotations

import weakref

import pytest
import torch
from torch import nn

from projects.sa2va_vessel.models.checkpoint import build_preset
from projects.sa2va_vessel.models.layerwise_init import check_initialised, materialise_by_parts, parameters_on_meta
from projects.sa2va_vessel.models.lora import DEFAULT_TARGETS
from projects.sa2va_vessel.models.quantize import (
    is_linear4bit,
    is_quantized,
    quantize_layer_linears,
    quantize_llm_linears,
)

from .test_qlora import _bitsandbytes_on_cpu


def _layout(module: nn.Module) -> dict[str, tuple]:
    """Name -> (shape, dtype, requires_grad) of every parameter and buffer, and the state-dict keys.

    bnb's packed quant-state metadata (``quant_state.bitsandbytes__nf4``) is a JSON string whose
    length depends on the values, so only its presence is compared.
    """
    out = {f'param {n}': (tuple(p.shape), p.dtype, p.requires_grad) for n, p in module.named_parameters()}
    out.update({f'buffer {n}': (tuple(b.shape), b.dtype) for n, b in module.named_buffers()})
    out.update(
        {
            f'state {k}': (tuple(v.shape), v.dtype) if 'bitsandbytes__' not in k else ()
            for k, v in module.state_dict().items()
        }
    )
    return out


@pytest.mark.parametrize('preset', ['tiny', 'tiny-qwen2_5_vl', 'tiny-qwen3_vl'])
def test_layerwise_build_matches_the_normal_build(preset) -> None:
    _bitsandbytes_on_cpu()
    fast, report = build_preset(preset, torch.bfloat16, 'cpu', quantize_base='nf4')
    slow, slow_report = build_preset(preset, torch.bfloat16, 'cpu')
    quantize_llm_linears(slow.language_model, 'nf4', compute_dtype=torch.bfloat16)
    assert _layout(fast) == _layout(slow)
    assert report.n_parameters == slow_report.n_parameters  # 4-bit weights count what they stand for
    for name, buffer in slow.named_buffers():  # rotary inv_freq etc.: computed, not drawn
        if 'positional_embedding' not in name:  # SAM2's random Fourier matrix: drawn at a later point here
            assert torch.equal(fast.get_buffer(name), buffer), name

    llm = fast.language_model
    projections = {n: m for n, m in llm.named_modules() if '.layers.' in n and n.rpartition('.')[2] in DEFAULT_TARGETS}
    assert len(projections) == len(DEFAULT_TARGETS) * len(llm.model.layers)
    assert all(is_linear4bit(m) and is_quantized(m.weight) for m in projections.values())
    assert llm.is_loaded_in_4bit
    check_initialised(fast, preset)  # no meta, no NaN left
    # transformers' own init: N(0, initializer_range) weights, zero biases, unit norms
    std = fast.arch.llm.initializer_range
    for weight in (llm.model.embed_tokens.weight, llm.lm_head.weight):
        assert abs(float(weight.float().std()) - std) < 0.1 * std
    assert all(float(m.bias.abs().max()) == 0 for m in projections.values() if m.bias is not None)
    norms = [m.weight for n, m in llm.named_modules() if n.endswith('norm')]
    assert norms and all(bool((w == 1).all()) for w in norms)
    # modules outside the transformers models keep PyTorch's default init, as in a normal build
    fc = fast.text_hidden_fcs[0].weight
    bound = fc.shape[1] ** -0.5
    assert float(fc.abs().max()) <= bound and float(fc.float().std()) > 0.5 * bound / 3**0.5


def test_layerwise_build_is_seeded() -> None:
    _bitsandbytes_on_cpu()
    first, again, other = (
        build_preset('tiny', torch.bfloat16, 'cpu', quantize_base='nf4', seed=seed)[0].state_dict()
        for seed in (3, 3, 4)
    )
    assert first.keys() == again.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    for key in (
        'language_model.model.layers.1.mlp.up_proj.weight',
        'sam2.mask_decoder.iou_token.weight',
        'mlp1.linear_1.weight',
    ):
        assert not torch.equal(first[key], other[key]), key


def test_one_decoder_layer_at_a_time() -> None:
    """When a layer is handed on (to be quantized), the later layers have no storage yet and the
    earlier ones' bf16 weights are freed."""
    _bitsandbytes_on_cpu()
    from projects.sa2va_vessel.models.checkpoint import build_modules
    from projects.sa2va_vessel.models.configuration import architecture_from_config
    from projects.sa2va_vessel.models.presets import official_config, preset_vocab_size

    config, sam2 = official_config('tiny', vocab_size=preset_vocab_size('tiny'), dtype='bfloat16')
    arch = architecture_from_config(config, sam2, 'preset:tiny')
    with parameters_on_meta():
        modules = build_modules(arch, torch.bfloat16, init_weights=False)
    layers = modules.language_model.model.layers
    # parameters an init fills are on meta; those the constructor fills (RMSNorm's ones) are real
    assert all(m.weight.is_meta for m in layers.modules() if isinstance(m, nn.Linear))
    assert modules.language_model.model.norm.weight.device.type == 'cpu'
    assert not any(b.is_meta for b in modules.buffers())
    seen, drawn = [], []

    def after_layer(layer: nn.Module) -> None:
        i = list(layers).index(layer)
        seen.append(i)
        assert not any(p.is_meta for done in layers[: i + 1] for p in done.parameters())
        assert all(m.weight.is_meta for later in layers[i + 1 :] for m in later.modules() if isinstance(m, nn.Linear))
        assert not any(p.is_meta for p in modules.sam2.parameters())  # the rest came first
        # the earlier layers' full-precision weights are gone once they were quantized
        assert all(ref() is None for ref in drawn), f'layer {i}: a quantized layer still holds its bf16 weight'
        drawn.extend(weakref.ref(m.weight) for m in layer.modules() if isinstance(m, nn.Linear))
        quantize_layer_linears(layer, 'nf4', compute_dtype=torch.bfloat16)

    materialise_by_parts(modules, layers, 'cpu', after_layer=after_layer)
    assert seen == list(range(len(layers)))
    assert drawn and all(ref() is None for ref in drawn)
    check_initialised(modules, 'tiny')


def test_a_parameter_no_init_reaches_is_an_error() -> None:
    class Bare(nn.Module):  # a parameter filled by nobody: no reset_parameters, no transformers init
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.empty(4))
            self.proj = nn.Linear(4, 4)

    with parameters_on_meta():
        module = nn.Sequential(Bare())
    assert module[0].scale.is_meta and module[0].proj.weight.is_meta
    materialise_by_parts(module, nn.ModuleList(), 'cpu')
    assert bool(torch.isfinite(module[0].proj.weight).all())  # PyTorch's default init reached it
    with pytest.raises(RuntimeError, match=r"1 hold NaN/inf \(no init reached them\) \['0.scale'\]"):
        check_initialised(module, 'bare')


def test_tied_embeddings_stay_one_tensor(monkeypatch) -> None:
    """A preset with tie_word_embeddings (Sa2VA-1B/4B): lm_head is embed_tokens after the layerwise build."""
    _bitsandbytes_on_cpu()
    from projects.sa2va_vessel.models import presets

    vit, llm, sam2, _ = presets.PRESETS['tiny']
    monkeypatch.setitem(presets.PRESETS, 'tiny-tied', (vit, llm, sam2, True))
    modules, _ = build_preset('tiny-tied', torch.bfloat16, 'cpu', vocab_size=1000, quantize_base='nf4')
    lm = modules.language_model
    assert lm.lm_head.weight is lm.model.embed_tokens.weight
    assert abs(float(lm.lm_head.weight.float().std()) - 0.02) < 0.002
    assert 'language_model.lm_head.weight' not in dict(modules.named_parameters())  # counted once
