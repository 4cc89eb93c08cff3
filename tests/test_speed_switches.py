"""Compiled modules serve the training step; evaluation runs the same weights eager."""

from __future__ import annotations

from projects.sa2va_vessel.models.speed import is_compiled, set_compiled
from projects.sa2va_vessel.models.vessel_model import Sa2VAVesselModel


def _compiled_modules(model: Sa2VAVesselModel) -> list:
    return list(model.sa2va.language_model.model.layers) + [model.sa2va.vision_tower, model.sa2va.sam2.vision_encoder]


def test_compiled_in_training_eager_in_eval():
    # torch.compile is lazy: nothing compiles until a call, so this is cheap on the CPU
    model = Sa2VAVesselModel(
        'preset:tiny',
        dtype='float32',
        compile_llm_layers=True,
        compile_frozen_encoders=True,
        gradient_checkpointing=False,
    )
    modules = _compiled_modules(model)
    assert model.training and all(is_compiled(m) for m in modules)
    graphs = [m._compiled_call_impl for m in modules]
    model.eval()
    assert not any(is_compiled(m) for m in modules)
    model.train()
    # the same compiled callables come back: their graphs are reused, nothing compiles again
    assert [m._compiled_call_impl for m in modules] == graphs
    model.set_speed_switches(model.speed.replace(compile_llm_layers=False))
    assert not any(is_compiled(m) for m in model.sa2va.language_model.model.layers)
    assert is_compiled(model.sa2va.vision_tower)


def test_cuda_graph_switch_reaches_the_compile_of_the_llm_layers_only(monkeypatch):
    import torch

    real_compile = torch.compile
    calls = []

    def recording_compile(fn, *args, **kwargs):
        calls.append(kwargs.get('options'))
        return real_compile(fn, *args, **kwargs)

    monkeypatch.setattr(torch, 'compile', recording_compile)
    model = Sa2VAVesselModel(
        'preset:tiny',
        dtype='float32',
        compile_llm_layers=True,
        compile_frozen_encoders=True,
        cuda_graph_llm_layers=True,
        gradient_checkpointing=False,
    )
    layers = list(model.sa2va.language_model.model.layers)
    # one compile per module: the layers with CUDA graphs, the two frozen encoders without
    assert calls == [{'triton.cudagraphs': True}] * len(layers) + [None, None]
    with_graphs = [m._compiled_call_impl for m in layers]
    model.set_speed_switches(model.speed.replace(cuda_graph_llm_layers=False))
    assert calls[-len(layers) :] == [None] * len(layers)
    without = [m._compiled_call_impl for m in layers]
    assert all(is_compiled(m) for m in layers) and all(a is not b for a, b in zip(with_graphs, without))
    n = len(calls)
    model.set_speed_switches(model.speed.replace(cuda_graph_llm_layers=True))
    # switching back reuses the graphs compiled with the option: nothing compiles again
    assert len(calls) == n and [m._compiled_call_impl for m in layers] == with_graphs


def test_each_training_step_with_cuda_graphs_marks_its_start(monkeypatch, tiny_checkpoint, synthetic_vessels):
    """The CUDA-graph trees learn that a step begins from cudagraph_mark_step_begin: with graphs on,
    every training loss marks it (else they warn of pending backwards and leave the fast path);
    without graphs, or in eval mode, nothing is marked."""
    import torch

    from projects.sa2va_vessel.datasets.collate import vessel_collate
    from projects.sa2va_vessel.datasets.vessel_dataset import VesselSegDataset

    marks = []
    monkeypatch.setattr(torch.compiler, 'cudagraph_mark_step_begin', lambda: marks.append(1))
    model = Sa2VAVesselModel(
        str(tiny_checkpoint), dtype='float32', lora=dict(r=4, alpha=8, dropout=0.0), gradient_checkpointing=False
    )
    dataset = VesselSegDataset(str(synthetic_vessels), 'train', str(tiny_checkpoint), max_dynamic_patch=1)
    batch = vessel_collate([dataset[0], dataset[1]])
    model.train()
    model.loss(batch['data'], batch['data_samples'])
    assert marks == []  # no graphs to replay
    # the graphs' switches on, the compiled layers kept eager (inductor would compile for minutes on
    # the CPU): what is checked is that each loss marks its step, once
    model.set_speed_switches(model.speed.replace(compile_llm_layers=True, cuda_graph_llm_layers=True))
    for layer in model.sa2va.language_model.model.layers:
        set_compiled(layer, False)
    model.loss(batch['data'], batch['data_samples'])
    model.loss(batch['data'], batch['data_samples'])
    assert marks == [1, 1]
    model.eval()
    model.begin_training_step()
    assert marks == [1, 1]  # eval runs eager: no graph, no mark
