"""World model structure (causality, AdaLN-zero, size, rollout) and a short learning run."""

import numpy as np
import pytest
import torch

from lewm_ros.model.config import ModelConfig, preset
from lewm_ros.model.predictor import AdaLNBlock
from lewm_ros.model.world_model import WorldModel
from lewm_ros.sim.moving_square import moving_square_clips

from .tiny import randomise_modulation, tiny_config


def test_paper_preset_has_the_official_parameter_count():
    count = sum(p.numel() for p in WorldModel(preset('paper')).parameters())
    assert count == 18_034_478  # the official LeWM at A = 2


def test_official_block_is_the_identity_at_initialisation_and_has_the_official_size():
    torch.manual_seed(0)
    official = AdaLNBlock(192, 16, 64, 2048, 0.1, official=True).eval()
    assert sum(p.numel() for p in official.parameters()) == 1_798_400
    assert sum(p.numel() for p in AdaLNBlock(192, 16, 64, 2048, 0.1).parameters()) == 1_800_704
    x, cond = torch.randn(2, 3, 192), torch.randn(2, 3, 192)
    torch.testing.assert_close(official(x, cond), x)
    torch.nn.init.normal_(official.modulation[1].weight, std=0.1)
    assert not torch.allclose(official(x, cond), x)  # the action is learned in through the modulation


def test_hf_init_of_the_paper_encoder():
    torch.manual_seed(0)
    encoder = WorldModel(preset('paper')).encoder
    qkv = encoder.blocks[0].attn.qkv
    assert abs(qkv.weight.std().item() - 0.02) < 1e-3 and qkv.weight.abs().max() <= 2.0
    assert not qkv.bias.any() and abs(encoder.pos.std().item() - 0.02) < 1e-3 and encoder.cls.abs().sum() > 0
    assert abs(WorldModel(preset('paper')).predictor.pos.std().item() - 1.0) < 0.1  # official: randn


def test_predictor_is_causal():
    torch.manual_seed(0)
    model = WorldModel(tiny_config())
    randomise_modulation(model)
    model.eval()
    emb, actions = torch.randn(4, 3, 32), torch.randn(4, 3, 10)
    base = model.predict(emb, actions)
    emb2, actions2 = emb.clone(), actions.clone()
    emb2[:, 2] += 5.0
    actions2[:, 2] -= 3.0
    changed = model.predict(emb2, actions2)
    torch.testing.assert_close(changed[:, :2], base[:, :2])
    assert (changed[:, 2] - base[:, 2]).abs().max() > 1e-3, 'the last step must see its own inputs'


def test_actions_have_no_effect_at_initialisation_and_do_after_training_starts():
    torch.manual_seed(0)
    model = WorldModel(tiny_config()).eval()
    emb = torch.randn(4, 3, 32)
    a, b = torch.randn(4, 3, 10), torch.randn(4, 3, 10)
    torch.testing.assert_close(model.predict(emb, a), model.predict(emb, b), rtol=0, atol=0)
    randomise_modulation(model)
    assert (model.predict(emb, a) - model.predict(emb, b)).abs().max() > 1e-3


def test_residual_predictor_copies_its_input_at_initialisation_and_learns_a_change():
    torch.manual_seed(0)
    cfg = tiny_config()
    cfg.predictor.residual = True
    model = WorldModel(cfg)
    randomise_modulation(model)
    emb, actions = torch.randn(4, 3, 32), torch.randn(4, 3, 10)
    torch.testing.assert_close(model.eval().predict(emb, actions), emb, rtol=0, atol=0)
    model.train()
    target = emb + 0.5  # a constant change: one gradient step must move the prediction towards it
    loss = torch.nn.functional.mse_loss(model.predict(emb, actions), target)
    loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert torch.nn.functional.mse_loss(model.predict(emb, actions), target) < loss


def test_rollout_matches_step_by_step_prediction():
    torch.manual_seed(0)
    model = WorldModel(tiny_config())
    randomise_modulation(model)
    model.eval()
    history, past, candidates = torch.randn(1, 3, 32), torch.randn(1, 2, 10), torch.randn(5, 4, 10)
    actions = torch.cat([past.expand(5, -1, -1), candidates], dim=1)  # (5, 6, 10)
    rolled = model.rollout(history, actions)
    assert rolled.shape == (5, 4, 32)
    context, acts = history.expand(5, -1, -1), actions[:, :3]
    for h in range(4):
        next_emb = model.predict(context, acts)[:, -1]
        torch.testing.assert_close(rolled[:, h], next_emb)
        context = torch.cat([context[:, 1:], next_emb[:, None]], dim=1)
        acts = actions[:, h + 1 : h + 4]


def test_encode_rejects_wrong_dtype_and_size():
    model = WorldModel(tiny_config())
    with pytest.raises(ValueError, match='uint8 RGB frames'):
        model.encode(torch.zeros(2, 16, 16, 3))
    with pytest.raises(ValueError, match='uint8 RGB frames'):
        model.encode(torch.zeros(2, 32, 32, 3, dtype=torch.uint8))


def test_small_model_learns_moving_squares_without_collapse():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = WorldModel(preset('small'))
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-3)
    pred_losses = []
    for step in range(100):
        terms = model.loss(moving_square_clips(rng, 32), step=step)
        optimiser.zero_grad()
        terms['total'].backward()
        optimiser.step()
        pred_losses.append(terms['pred'].item())
    assert np.mean(pred_losses[-10:]) < 0.5 * np.mean(pred_losses[:10]), pred_losses[::10]
    model.eval()
    with torch.no_grad():
        emb = model.encode(moving_square_clips(rng, 256)['frames'][:, 0])
    assert emb.std(dim=0).min() > 0.1, 'an embedding dimension collapsed'


@pytest.mark.parametrize('kind', ['vit', 'cnn'])
def test_flops_from_the_config_match_pytorchs_counter(kind):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from lewm_ros.model.config import EncoderConfig, PredictorConfig
    from lewm_ros.model.flops import training_step_flops

    encoder = (EncoderConfig(kind='vit', image_size=56, patch_size=14, depth=2, width=64, heads=2, mlp_dim=128)
               if kind == 'vit' else EncoderConfig(kind='cnn', image_size=32, width=32, channels=(8, 16)))
    cfg = ModelConfig(encoder=encoder, predictor=PredictorConfig(depth=2, heads=4, head_dim=16, mlp_dim=128),
                      embed_dim=32, projector_hidden=64)
    model = WorldModel(cfg)
    frames = torch.randint(0, 255, (4, cfg.history + 1, cfg.image_size, cfg.image_size, 3), dtype=torch.uint8)
    clip = {'frames': frames, 'actions': torch.randn(4, cfg.history + 1, cfg.action_block_dim)}
    with FlopCounterMode(display=False) as counter, sdpa_kernel(SDPBackend.MATH):  # math: attention counted too
        model.loss(clip, step=0)['total'].backward()
    assert training_step_flops(cfg, 4) == pytest.approx(counter.get_total_flops(), rel=0.02)
