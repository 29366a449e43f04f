"""The shared training loop: interrupted runs resume exactly where they stopped, finished ones are kept."""

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from amg.training import batch_rng, is_finished, load_checkpoint, run_training, seed_everything


@dataclass
class TinyConfig:
    steps: int = 12
    seed: int = 3


def _train(path, cfg, stop_at=None):
    seed_everything(cfg.seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.2), torch.nn.Linear(8, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    target = torch.tensor([[1.0], [-1.0]])

    def step_fn(step):
        if step == stop_at:
            raise KeyboardInterrupt
        rng = batch_rng(cfg.seed, step)
        x = torch.from_numpy(rng.standard_normal((2, 4)).astype(np.float32))
        loss = ((model(x) - target) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return {"loss": float(loss.detach())}

    run_training(path=path, model=model, optimizer=optimizer, config=cfg, total_steps=cfg.steps,
                 step_fn=step_fn, save_every=5, log_dir=path.parent / "logs")
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
