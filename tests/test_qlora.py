"""A 4-bit frozen LLM base (quantize_base, models/quantize.py) on the tiny random Sa2VA, on the CPU.

bitsandbytes 0.50's CPU backend quantizes to nf4/fp4 and runs ``Linear4bit`` forward and backward,
so everything here runs in CI when bitsandbytes is installed (the ``qlora`` extra); without it the
tests that need it skip, and the missing-package error is tested either way.
"""

from __future__ import annotations

import builtins
import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from projects.sa2va_vessel.models.lora import DEFAULT_TARGETS
from projects.sa2va_vessel.models.vessel_model import Sa2VAVesselModel

SEG_ID = 995  # the tiny tokenizer's [SEG]


def _bitsandbytes_on_cpu():
    """bitsandbytes, or a skip saying why it cannot quantize on this machine's CPU."""
    bnb = pytest.importorskip('bitsandbytes', reason="bitsandbytes not installed (pip install -e '.[qlora]')")
    try:
        packed, state = bnb.functional.quantize_4bit(torch.randn(64, 64), quant_type='nf4')
        bnb.functional.dequantize_4bit(packed, state)
    except Exception as err:  # no CPU kernels in this build
        pytest.skip(f'bitsandbytes {bnb.__version__} cannot quantize on the CPU: {type(err).__name__}: {err}')
    return bnb


def _model(checkpoint: Path, **kwargs) -> Sa2VAVesselModel:
    torch.manual_seed(0)
    options = dict(
        dtype='float32',
        lora=dict(r=8, alpha=16, dropout=0.0),
        gradient_checkpointing=False,
        sam2_feature_cache_size=16,
        quantize_base='nf4',
    )
    options.update(kwargs)
    return Sa2VAVesselModel(str(checkpoint), **options)


def _batch(data_root: Path, checkpoint: Path, n: int, split: str = 'train') -> dict:
    from projects.sa2va_vessel.datasets.collate import vessel_collate
    from projects.sa2va_vessel.datasets.vessel_dataset import VesselSegDataset

    dataset = VesselSegDataset(str(data_root), split, str(checkpoint), max_dynamic_patch=1, random_question=False)
    return vessel_collate([dataset[i] for i in range(n)])


def _projections(model: Sa2VAVesselModel) -> dict[str, torch.nn.Module]:
    return {
        name: module
        for name, module in model.sa2va.language_model.named_modules()
        if '.layers.' in name and name.rpartition('.')[2] in DEFAULT_TARGETS
    }


# ---- without bitsandbytes --------------------------------------------------------------------------
def test_missing_bitsandbytes_names_the_install(tiny_checkpoint, monkeypatch) -> None:
    real_import = builtins.__import__

    def no_bitsandbytes(name, *args, **kwargs):
        if name == 'bitsandbytes' or name.startswith('bitsandbytes.'):
            raise ImportError(f"No module named '{name}'")
        return real_import(name, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(builtins, '__import__', no_bitsandbytes)
        for name in [m for m in sys.modules if m == 'bitsandbytes' or m.startswith('bitsandbytes.')]:
            patch.delitem(sys.modules, name)
        with pytest.raises(ImportError, match=r"needs bitsandbytes.*pip install 'bitsandbytes.*\[qlora\]"):
            _model(tiny_checkpoint)


def test_unknown_quant_type_is_refused(tiny_checkpoint) -> None:
    with pytest.raises(ValueError, match=r"quantize_base must be one of \('nf4', 'fp4'\).*'int8'"):
        _model(tiny_checkpoint, quantize_base='int8')


# ---- the replacement --------------------------------------------------------------------------------
@pytest.mark.parametrize('quant_type', ['nf4', 'fp4'])
def test_llm_projections_become_4bit_under_lora(tiny_checkpoint, quant_type) -> None:
    bnb = _bitsandbytes_on_cpu()
    from peft.tuners.lora.bnb import Linear4bit as LoraLinear4bit

    from projects.sa2va_vessel.models.quantize import dequantized_weight, linear4bit_layers, storage_bytes

    plain = _model(tiny_checkpoint, dtype='bfloat16', quantize_base=None)
    model = _model(tiny_checkpoint, dtype='bfloat16', quantize_base=quant_type)
    layers = model.sa2va.arch.llm.num_hidden_layers
    projections = _projections(model)
    assert len(projections) == len(DEFAULT_TARGETS) * layers
    for name, module in projections.items():
        assert isinstance(module, LoraLinear4bit), f'{name}: {type(module)}'  # peft's 4-bit LoRA layer
        base = module.base_layer
        assert isinstance(base, bnb.nn.Linear4bit) and isinstance(base.weight, bnb.nn.Params4bit), name
        assert base.weight.dtype == torch.uint8 and base.weight.quant_type == quant_type, name
        assert base.compute_dtype == torch.bfloat16 and base.weight.quant_state.nested, name
        assert not base.weight.requires_grad
    # nothing else is quantized: embeddings, lm_head, norms, ViT, projector, SAM2
    assert set(linear4bit_layers(model.sa2va)) == {f'language_model.{n}.base_layer' for n in projections}
    others = [p for n, p in model.sa2va.named_parameters() if '.base_layer.weight' not in n or 'layers.' not in n]
    assert {p.dtype for p in others if not p.requires_grad} == {torch.bfloat16}

    # the 4-bit codes are a quarter of the bf16 bytes; with the statistics, a little more, plus each
    # layer's two constant code tables (16 + 256 float32), which only weigh at this tiny size
    plain_bytes = sum(m.weight.numel() * m.weight.element_size() for m in _projections(plain).values())
    codes = sum(m.base_layer.weight.numel() for m in projections.values())
    assert codes * 4 == plain_bytes
    four_bit = sum(storage_bytes(m.base_layer) for m in projections.values())
    assert plain_bytes / 4 < four_bit < 0.27 * plain_bytes + len(projections) * (16 + 256) * 4
    # ... and stand for the same weights, within 4-bit rounding
    for name, module in projections.items():
        w = _projections(plain)[name].base_layer.weight.float()
        error = (dequantized_weight(module.base_layer) - w).norm() / w.norm()
        assert 0 < error < 0.2, (name, float(error))

    # the same trainable tensors as without quantization
    assert [n for n, p in model.named_parameters() if p.requires_grad] == [
        n for n, p in plain.named_parameters() if p.requires_grad
    ]
    assert quant_type in model.parameter_table()


def test_bf16_step_through_the_4bit_base(tiny_checkpoint, synthetic_vessels) -> None:
    """Gradients reach LoRA through bf16 Linear4bit layers; the frozen 4-bit weights stay as they are.

    The model is the benchmark's QLoRA preset, drawn layer by layer and quantized as it is drawn
    (test_layerwise_preset.py checks that build; its token ids are the tiny tokenizer's).
    """
    _bitsandbytes_on_cpu()
    model = _model('preset:tiny', dtype='bfloat16', device='cpu')
    projections = _projections(model)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    batch = _batch(synthetic_vessels, tiny_checkpoint, 1)
    losses = model(batch['data'], batch['data_samples'], mode='loss')
    sum(losses.values()).backward()
    lora_b = [p for n, p in model.named_parameters() if 'lora_B' in n]  # B starts at 0, so A has no grad yet
    assert len(lora_b) == len(projections)
    assert all(p.grad is not None and float(p.grad.abs().max()) > 0 for p in lora_b)
    torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3).step()
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters() if p.requires_grad)
    assert {n: p for n, p in model.named_parameters() if n in frozen}.keys() == frozen.keys()
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)


def test_4bit_bytes_at_a_real_width() -> None:
    """At a width of 1024 (a small real projection) codes + statistics are ~26% of bf16."""
    _bitsandbytes_on_cpu()
    from projects.sa2va_vessel.models.quantize import quantize_llm_linears, storage_bytes

    class Layer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mlp = torch.nn.Module()
            self.mlp.up_proj = torch.nn.Linear(1024, 1024, bias=False, dtype=torch.bfloat16)

    llm = torch.nn.Module()
    llm.model = torch.nn.Module()
    llm.model.layers = torch.nn.ModuleList([Layer()])
    assert quantize_llm_linears(llm, 'nf4', quantize_now=True) == 1
    ratio = storage_bytes(llm.model.layers[0].mlp.up_proj) / (1024 * 1024 * 2)
    assert 0.25 < ratio < 0.27, ratio


def test_tiny_preset_with_nf4() -> None:
    """model_path='preset:tiny' (the benchmark's path): quantized, then LoRA on top, runnable."""
    _bitsandbytes_on_cpu()
    from projects.sa2va_vessel.models.quantize import is_quantized

    model = Sa2VAVesselModel(
        'preset:tiny',
        dtype='float32',
        device='cpu',
        quantize_base='nf4',
        lora=dict(r=4, alpha=8, dropout=0.0),
        gradient_checkpointing=False,
    )
    projections = _projections(model)
    assert len(projections) == len(DEFAULT_TARGETS) * model.sa2va.arch.llm.num_hidden_layers
    assert all(is_quantized(m.base_layer.weight) for m in projections.values())
    model.init_weights()  # the runner calls it first; mmengine's version takes means of the uint8 weights
    assert model.is_init


def test_quantize_before_lora_and_once(tiny_checkpoint) -> None:
    _bitsandbytes_on_cpu()
    from projects.sa2va_vessel.models.quantize import quantize_llm_linears

    model = _model(tiny_checkpoint, quantize_base=None)
    with pytest.raises(TypeError, match=r'q_proj.*not a plain nn.Linear; quantize the base before LoRA'):
        quantize_llm_linears(model.sa2va.language_model)


def test_cpu_weights_wait_for_the_move(tiny_checkpoint) -> None:
    """quantize_now=False (what a CPU-loaded model gets when a GPU is present): the move quantizes."""
    _bitsandbytes_on_cpu()
    from projects.sa2va_vessel.models.checkpoint import load_sa2va
    from projects.sa2va_vessel.models.quantize import dequantized_weight, is_quantized, quantize_llm_linears

    llm = load_sa2va(tiny_checkpoint, dtype=torch.bfloat16)[0].language_model
    original = llm.model.layers[0].mlp.down_proj.weight.detach().clone()
    assert quantize_llm_linears(llm, 'nf4', quantize_now=False) == len(DEFAULT_TARGETS) * len(llm.model.layers)
    down = llm.model.layers[0].mlp.down_proj
    assert not is_quantized(down.weight) and torch.equal(down.weight.data, original)
    waiting = dequantized_weight(down)  # quantizes a copy: the weight the model will compute with
    llm.to('cpu')  # the runner's move (to the GPU there): Params4bit quantizes now
    assert is_quantized(down.weight) and down.weight.dtype == torch.uint8
    assert torch.equal(dequantized_weight(down), waiting)
    assert not torch.equal(waiting, original.float())


# ---- learning ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_tiny_model_with_nf4_base_learns(tiny_checkpoint, synthetic_vessels) -> None:
    """The learning check with a 4-bit base: Dice on the trained images rises from ~0.05 to > 0.5."""
    _bitsandbytes_on_cpu()
    from projects.sa2va_vessel.evaluation.metrics import binary_metrics

    model = _model(tiny_checkpoint)
    assert len(_projections(model)) > 0
    batch = _batch(synthetic_vessels, tiny_checkpoint, 2)

    def dice() -> float:
        probs = model(batch['data'], batch['data_samples'], mode='predict')
        scores = [
            binary_metrics(p['prob'][0].numpy(), s['mask'][0])['dice'] for p, s in zip(probs, batch['data_samples'])
        ]
        return sum(scores) / len(scores)

    before = dice()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3, weight_decay=0.0)
    for _ in range(LEARN_STEPS):
        losses = model(batch['data'], batch['data_samples'], mode='loss')
        sum(losses.values()).backward()
        optimizer.step()
        optimizer.zero_grad()
    after = dice()
    assert before < 0.2 and after > 0.5, f'Dice {before:.3f} -> {after:.3f} after {LEARN_STEPS} steps'


# measured (nf4, 2 images, lr 5e-3): Dice 0.05 at the start, 0.54 after 80 steps, 0.68 after 100
LEARN_STEPS = 100


# ---- export -----------------------------------------------------------------------------------------
CONFIG = """
custom_imports = dict(imports=['projects.sa2va_vessel.models'], allow_failed_imports=False)
model = dict(type='Sa2VAVesselModel', model_path={base!r}, dtype='float32', quantize_base='nf4',
             lora=dict(r=4, alpha=8, dropout=0.0), gradient_checkpointing=False)
"""


def test_export_merges_into_the_dequantized_base(tiny_checkpoint, synthetic_vessels, tmp_path) -> None:
    """The merged export is the 4-bit model as trained: W = dequant(W4) + scale * B @ A."""
    _bitsandbytes_on_cpu()
    from projects.sa2va_vessel.models.export import build_model_from_config, export_adapter, export_full
    from projects.sa2va_vessel.models.quantize import dequantized_weight
    from projects.sa2va_vessel.models.training_checkpoint import load_adapter_export, load_training_checkpoint

    config = tmp_path / 'cfg.py'
    config.write_text(CONFIG.format(base=str(tiny_checkpoint)))
    trained = build_model_from_config(config)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # "training": every trainable tensor moved, LoRA B included
        for name, p in trained.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen) * (0.05 if 'lora_B' in name else 0.02))
    batch = _batch(synthetic_vessels, tiny_checkpoint, 1, split='val')
    prob = torch.cat([o['prob'] for o in trained(batch['data'], batch['data_samples'], mode='predict')])

    # a training checkpoint (trainable tensors + bnb's statistics, as TrainableCheckpointHook keeps them)
    frozen = {n for n, p in trained.named_parameters(remove_duplicate=False) if not p.requires_grad}
    ckpt = tmp_path / 'iter_1.pth'
    torch.save(
        {
            'meta': {'trainable_only': True},
            'state_dict': {k: v for k, v in trained.state_dict().items() if k not in frozen},
        },
        ckpt,
    )
    model = build_model_from_config(config)
    load_training_checkpoint(model, ckpt)
    # the saved 4-bit statistics are checked against the base the model was built from
    state = torch.load(ckpt, weights_only=False)
    stat = 'sa2va.language_model.model.layers.0.mlp.up_proj.base_layer.weight.absmax'
    state['state_dict'][stat] = state['state_dict'][stat] + 1
    torch.save(state, tmp_path / 'other_base.pth')
    with pytest.raises(
        RuntimeError,
        match=r"up_proj.base_layer.weight: the checkpoint's 4-bit statistics "
        r"\['absmax'\] differ",
    ):
        load_training_checkpoint(build_model_from_config(config), tmp_path / 'other_base.pth')

    out = tmp_path / 'full'
    report = export_full(model, out, dtype=torch.float32)
    assert report.n_lora_merged == len(_projections(model))
    exported = load_file(out / 'model.safetensors')
    base = load_file(tiny_checkpoint / 'model.safetensors')
    key = 'language_model.model.layers.1.mlp.up_proj.weight'
    layer = model.sa2va.language_model.model.layers[1].mlp.up_proj
    delta = 2.0 * layer.lora_B['default'].weight @ layer.lora_A['default'].weight
    assert torch.allclose(exported[key], dequantized_weight(layer.base_layer) + delta, atol=1e-7, rtol=0)
    assert not torch.allclose(exported[key], base[key] + delta, atol=1e-4)  # not the original base
    assert set(exported) == set(base)
    assert 'nf4' in json.loads((out / 'export_info.json').read_text())['base_quantization']

    # the export as a plain (unquantized) model predicts what the 4-bit model predicted
    plain = Sa2VAVesselModel(
        str(out), dtype='float32', lora=dict(r=4, alpha=8, dropout=0.0), gradient_checkpointing=False
    ).eval()
    again = torch.cat([o['prob'] for o in plain(batch['data'], batch['data_samples'], mode='predict')])
    assert float((again - prob).abs().max()) < 1e-4

    # the adapter export loads back onto a fresh 4-bit model: the same predictions
    export_adapter(model, tmp_path / 'adapter', dtype=torch.float32)
    fresh = build_model_from_config(config)
    load_adapter_export(fresh, tmp_path / 'adapter')
    reloaded = torch.cat([o['prob'] for o in fresh(batch['data'], batch['data_samples'], mode='predict')])
    assert torch.equal(reloaded, prob)


def test_a_cpu_validation_leaves_the_4bit_statistics_as_quantized(tiny_checkpoint, synthetic_vessels) -> None:
    """bitsandbytes repacks 4-bit weights for its AVX512-BF16 kernel at the first CPU forward in
    eval mode, and its unpacking for saving changes the statistics: a checkpoint saved after a CPU
    validation would no longer match its base. The model keeps that repacking off."""
    _bitsandbytes_on_cpu()
    model = _model(tiny_checkpoint).eval()
    layers = [m for m in model.modules() if type(m).__name__ == 'Linear4bit']
    assert layers and all(getattr(m, 'support_avx512bf16_for_cpu', False) is False for m in layers)
    stats = {k: v.clone() for k, v in model.state_dict().items() if '.weight.' in k and 'base_layer' in k}
    batch = _batch(synthetic_vessels, tiny_checkpoint, 1, split='val')
    with torch.no_grad():
        model(batch['data'], batch['data_samples'], mode='predict')
    after = model.state_dict()
    assert stats and all(torch.equal(v, after[k]) for k, v in stats.items())
