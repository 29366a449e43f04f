"""The shared training loop: interrupted runs resume exactly where they stopped, finished ones are kept."""

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
import torch

from amg.core.checkpoints import checkpoint_done, is_finished, load_checkpoint
from amg.core.training import batch_rng, run_training, seed_everything


@dataclass
class TinyConfig:
    SCHEDULE: ClassVar[tuple[str, ...]] = ("steps",)
    steps: int = 12
    seed: int = 3
    eval_every: int = 100
    save_every: int = 5


def _train(path, cfg, stop_at=None, steps_run=None, extra_layer=False):
    seed_everything(cfg.seed)
    layers = [torch.nn.Linear(4, 8), torch.nn.Dropout(0.2), torch.nn.Linear(8, 1)]
    model = torch.nn.Sequential(*layers, *([torch.nn.Identity(), torch.nn.Linear(1, 1)] if extra_layer else []))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    target = torch.tensor([[1.0], [-1.0]])

    def step_fn(step):
        if step == stop_at:
            raise KeyboardInterrupt
        if steps_run is not None:
            steps_run.append(step)
        rng = batch_rng(cfg.seed, step)
        x = torch.from_numpy(rng.standard_normal((2, 4)).astype(np.float32))
        loss = ((model(x) - target) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return {"loss": float(loss.detach())}

    run_training(
        path=path,
        model=model,
        optimizer=optimizer,
        config=cfg,
        step_fn=step_fn,
        log_dir=path.parent / "logs",
        progress="test",
    )
    return model


def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path):
    cfg = TinyConfig()
    reference = _train(tmp_path / "reference.pt", cfg)
    path = tmp_path / "interrupted.pt"
    with pytest.raises(KeyboardInterrupt):
        _train(path, cfg, stop_at=7)
    state = load_checkpoint(path)
    assert state["step"] == 5 and not state["finished"] and not is_finished(path)
    resumed = _train(path, cfg)
    assert is_finished(path) and load_checkpoint(path)["step"] == cfg.steps
    for a, b in zip(reference.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b)
    assert any((tmp_path / "logs").glob("events.out.tfevents*"))


def test_a_checkpoint_of_another_config_is_not_resumed(tmp_path):
    path = tmp_path / "m.pt"
    with pytest.raises(KeyboardInterrupt):
        _train(path, TinyConfig(), stop_at=7)
    _train(path, TinyConfig(seed=4))
    assert load_checkpoint(path)["config"]["seed"] == 4 and is_finished(path)


def test_more_steps_extend_a_finished_training_and_a_model_change_starts_again(tmp_path):
    path = tmp_path / "m.pt"
    _train(path, TinyConfig(steps=12))
    assert checkpoint_done(path, TinyConfig(steps=12)) and checkpoint_done(path, TinyConfig(steps=8))
    assert not checkpoint_done(path, TinyConfig(steps=20))  # a schedule change: more to train
    assert not checkpoint_done(path, TinyConfig(seed=4))  # a model change: all to train
    steps = []
    _train(path, TinyConfig(steps=20), steps_run=steps)
    assert steps == list(range(12, 20))  # only the extra steps
    assert load_checkpoint(path)["step"] == 20 and checkpoint_done(path, TinyConfig(steps=20))
    again = []
    _train(path, TinyConfig(steps=20, seed=4), steps_run=again)
    assert again == list(range(20))


def test_a_checkpoint_without_a_network_this_version_trains_starts_again(tmp_path):
    """A finished training extended (more steps) by a version that trains one more network (the same config
    fields: the new one's default) starts again instead of failing to load the weights it does not have."""
    path = tmp_path / "m.pt"
    _train(path, TinyConfig(steps=8))
    steps = []
    _train(path, TinyConfig(steps=10), steps_run=steps, extra_layer=True)
    assert steps == list(range(10))
    assert "4.weight" in load_checkpoint(path)["model"] and is_finished(path)
