"""Small units of the monitoring: error-map colours, the curve chart, the update norm."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import torch
from mmengine.logging import MessageHub

from projects.sa2va_vessel.engine.monitor_hooks import UpdateNormHook, threshold_key_of
from projects.sa2va_vessel.evaluation import visualize as V
from tests.toy_model import ToySegModel


def test_error_map_colours_and_fov():
    gt = np.array([[1, 1, 0, 0]], bool)
    pred = np.array([[1, 0, 1, 0]], bool)
    fov = np.array([[1, 1, 1, 0]], bool)
    out = V.error_map(pred, gt, fov)
    assert [tuple(c) for c in out[0]] == [V.TP_COLOUR, V.FN_COLOUR, V.FP_COLOUR, V.OUT_OF_FOV]


def test_overlay_panel_layout_and_threshold():
    gt = np.zeros((40, 60), bool)
    gt[10:12] = True
    prob = np.where(gt, 0.7, 0.2).astype(np.float32)
    panel = V.overlay_panel(None, gt, prob, threshold=0.5, max_side=None, gap=4)
    assert panel.shape == (40, 4 * 60 + 3 * 4, 3) and panel.dtype == np.uint8
    errors = panel[:, 3 * 64 :]
    assert (errors[10:12] == 255).all() and (errors[:10] == 0).all()  # all TP, rest TN
    small = V.overlay_panel(None, gt, prob, max_side=30)
    assert small.shape[0] == 20


def test_curve_chart_draws():
    curve = {'thresholds': [0.1, 0.5, 0.9], 'global_dice': [0.2, 0.6, 0.1], 'mean_dice': [0.3, float('nan'), 0.2]}
    img = V.draw_curve(curve, threshold=0.5, best_threshold=0.5, size=(200, 150))
    assert img.shape == (150, 200, 3) and (img != 255).any()


def test_threshold_key_of_selection_metric():
    assert threshold_key_of('vessel/best_dice') == 'vessel/best_thr'
    assert threshold_key_of('vessel/best_dice_mean') == 'vessel/best_thr_mean'
    assert threshold_key_of('vessel/global_dice') == 'vessel/threshold'


def test_update_norm_is_distance_from_start():
    model = ToySegModel()
    hub = MessageHub.get_instance('update_norm_unit')
    runner = SimpleNamespace(model=model, hooks=[], message_hub=hub, iter=0, max_iters=100)
    hook = UpdateNormHook(interval=1)
    hook.before_train(runner)
    with torch.no_grad():
        model.lora_B.weight.add_(3.0)  # 16 entries: ||delta|| = 12
        model.mask_decoder.bias.add_(torch.tensor([4.0]))  # ||delta|| = 4
    hook.after_train_iter(runner, 0)
    assert math.isclose(hub.get_scalar('train/update_norm/lora').current(), 12.0, rel_tol=1e-6)
    assert math.isclose(hub.get_scalar('train/update_norm/mask_decoder').current(), 4.0, rel_tol=1e-6)
    assert hub.get_scalar('train/update_norm/text_hidden_fcs').current() == 0.0


def test_unit_gradient_norms_equal_each_units_own_norm():
    """The probe's fused per-unit norms (one kernel per dtype, summed per unit) equal
    torch's norm of each unit's gradients taken on its own, mixed dtypes included."""
    from collections import OrderedDict

    import torch
    from torch import nn
    from torch.nn.utils import get_total_norm

    from projects.sa2va_vessel.engine.guard_probe import ParamProbe

    gen = torch.Generator().manual_seed(0)
    units = OrderedDict()
    for u, dtype in enumerate((torch.float32, torch.bfloat16, torch.float32)):
        params = []
        for k in range(u + 2):
            p = nn.Parameter(torch.zeros(3 + k, 5, dtype=dtype))
            p.grad = torch.randn(p.shape, generator=gen).to(dtype) * (u + 1)
            params.append((f'u{u}.p{k}', p))
        units[f'unit{u}'] = params
    units['no_grad'] = [('n.p', nn.Parameter(torch.zeros(2)))]
    norms, _ = ParamProbe(units).grad_norms()
    for name, params in units.items():
        grads = [p.grad for _, p in params if p.grad is not None]
        if not grads:
            assert norms[name] is None
            continue
        expected = float(get_total_norm([g.float() for g in grads]))
        assert abs(norms[name] - expected) <= 1e-5 * expected, name
