"""Checkpoints round-trip exactly and refuse pickles, corruption and foreign architectures."""

import json
import pickle

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from lewm_ros.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from lewm_ros.model.config import preset
from lewm_ros.model.world_model import WorldModel

from .tiny import tiny_config


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = WorldModel(tiny_config())
    model.train()
    model.loss({'frames': torch.randint(0, 256, (8, 4, 16, 16, 3), dtype=torch.uint8),
                'actions': torch.randn(8, 4, 10)})  # moves the BatchNorm running statistics
    model.eval()
    path = save_checkpoint(tmp_path / 'model.safetensors', model, [0.5, -1.0], [2.0, 0.25],
                           metadata={'step': 42, 'data': {'episodes': 3}})
    return model, path


def test_round_trip_reproduces_embeddings_exactly(saved):
    model, path = saved
    ckpt = load_checkpoint(path)
    frames = torch.randint(0, 256, (5, 16, 16, 3), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(ckpt.model.encode(frames), model.encode(frames), rtol=0, atol=0)
    assert ckpt.config == model.cfg
    np.testing.assert_array_equal(ckpt.action_mean, [0.5, -1.0])
    np.testing.assert_array_equal(ckpt.action_std, [2.0, 0.25])
    assert ckpt.metadata == {'step': 42, 'data': {'episodes': 3}}
    assert not ckpt.model.training


def test_missing_file_is_named(tmp_path):
    with pytest.raises(CheckpointError, match=r'nope\.safetensors.*no such file'):
        load_checkpoint(tmp_path / 'nope.safetensors')


def test_pickles_are_refused_without_being_unpickled(tmp_path, saved):
    model, _ = saved
    torch_file = tmp_path / 'model.pt'
    torch.save(model.state_dict(), torch_file)

    class Boom:
        def __reduce__(self):
            return (pytest.fail, ('the checkpoint loader unpickled a file',))

    raw_pickle = tmp_path / 'evil.ckpt'
    raw_pickle.write_bytes(pickle.dumps(Boom()))
    for path in (torch_file, raw_pickle):
        with pytest.raises(CheckpointError, match='pickle'):
            load_checkpoint(path)


def test_a_header_length_that_looks_like_pickle_magic_still_loads(tmp_path, saved):
    model, _ = saved
    # safetensors files start with their header length; 128 mod 256 makes the first byte 0x80
    for padding in range(300):
        path = save_checkpoint(tmp_path / 'odd.safetensors', model, [0, 0], [1, 1], metadata={'note': 'x' * padding})
        if path.read_bytes()[0] == 0x80:
            break
    else:
        pytest.fail('no padding produced a 0x80 first byte')
    assert load_checkpoint(path).metadata == {'note': 'x' * padding}


def test_truncated_and_garbage_files_are_refused(tmp_path, saved):
    _, path = saved
    data = path.read_bytes()
    truncated = tmp_path / 'truncated.safetensors'
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / 'garbage.safetensors'
    garbage.write_bytes(b'\x07' * 64)
    for bad in (truncated, garbage):
        with pytest.raises(CheckpointError, match=bad.name):
            load_checkpoint(bad)


def test_weights_of_another_architecture_are_refused(tmp_path, saved):
    _, path = saved
    # A lewm_ros header claiming a wider model than the weights it carries.
    with safe_open(str(path), framework='pt') as f:
        header = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    other = tiny_config()
    other.embed_dim = 48
    header['config'] = json.dumps(other.to_dict())
    forged = tmp_path / 'forged.safetensors'
    save_file(tensors, str(forged), metadata=header)
    with pytest.raises(CheckpointError, match='do not match the architecture'):
        load_checkpoint(forged)

    foreign = tmp_path / 'foreign.safetensors'
    save_file({'weight': torch.zeros(3)}, str(foreign))
    with pytest.raises(CheckpointError, match='not a lewm_ros checkpoint'):
        load_checkpoint(foreign)


def test_the_action_prior_round_trips_and_old_checkpoints_have_none(tmp_path):
    from lewm_ros.model.prior import ActionPrior, PriorConfig

    torch.manual_seed(0)
    model = WorldModel(preset('small')).eval()
    cfg = model.cfg
    prior = ActionPrior(PriorConfig(horizon=4, hidden=32), cfg.embed_dim, cfg.history, cfg.action_block_dim).eval()
    torch.nn.init.normal_(prior.head.weight, std=0.1)
    path = save_checkpoint(tmp_path / 'with_prior.safetensors', model, [0, 0], [1, 1], prior=prior)
    loaded = load_checkpoint(path)
    history, goal = torch.randn(2, 2, cfg.embed_dim), torch.randn(2, cfg.embed_dim)
    for ours, theirs in zip(prior(history, goal), loaded.prior(history, goal), strict=True):
        torch.testing.assert_close(ours, theirs)
    assert loaded.prior.cfg == PriorConfig(horizon=4, hidden=32)
    plain = load_checkpoint(save_checkpoint(tmp_path / 'plain.safetensors', model, [0, 0], [1, 1]))
    assert plain.prior is None


def test_the_frame_decoder_round_trips_beside_the_prior_and_a_malformed_one_is_named(tmp_path):
    from lewm_ros.model.decoder import DecoderConfig, FrameDecoder

    torch.manual_seed(0)
    model = WorldModel(preset('small')).eval()
    cfg = model.cfg
    decoder = FrameDecoder(DecoderConfig((16, 8, 8, 8)), cfg.embed_dim, cfg.image_size).eval()
    decoder.start_at(torch.randn(10, cfg.embed_dim), torch.rand(cfg.image_size, cfg.image_size, 3))
    path = save_checkpoint(tmp_path / 'with_decoder.safetensors', model, [0, 0], [1, 1], decoder=decoder)
    loaded = load_checkpoint(path)
    emb = torch.randn(3, cfg.embed_dim)
    torch.testing.assert_close(loaded.decoder(emb), decoder(emb))
    assert loaded.decoder.frames(emb).shape == (3, cfg.image_size, cfg.image_size, 3) and loaded.prior is None
    assert load_checkpoint(save_checkpoint(tmp_path / 'plain.safetensors', model, [0, 0], [1, 1])).decoder is None

    with safe_open(str(path), framework='pt') as f:
        header = {**f.metadata(), 'decoder_config': json.dumps({'channels': [16, 8, 8]})}  # one stage short
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    forged = tmp_path / 'forged.safetensors'
    save_file(tensors, str(forged), metadata=header)
    with pytest.raises(CheckpointError, match='malformed frame decoder'):
        load_checkpoint(forged)
