"""The original's warm-up and step schedule, and the optimiser groups it drives."""

import pytest
import torch

from vireid.model import build_model
from vireid.train.schedule import Schedule, make_optimizer, make_scheduler


@pytest.mark.parametrize("epoch, factor", [(0, 0.1), (4, 0.5), (9, 1.0), (10, 1.0), (19, 1.0),
                                           (20, 0.1), (49, 0.1), (50, 0.01), (80, 0.01)])
def test_factor(epoch, factor):
    assert Schedule().factor(epoch) == pytest.approx(factor)


def test_scheduler_drives_both_learning_rates():
    model = build_model(4, "resnet18", pretrained="none")
    optimizer = make_optimizer(model.param_groups(0.1))
    assert optimizer.defaults["nesterov"] and optimizer.defaults["momentum"] == 0.9
    assert optimizer.defaults["weight_decay"] == 5e-4
    scheduler = make_scheduler(optimizer, Schedule())
    seen = []
    for _ in range(52):
        seen.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    assert seen[0] == pytest.approx([0.001, 0.01, 0.01])
    assert seen[15] == pytest.approx([0.01, 0.1, 0.1])
    assert seen[30] == pytest.approx([0.001, 0.01, 0.01])
    assert seen[51] == pytest.approx([0.0001, 0.001, 0.001])
    state = scheduler.state_dict()
    again = make_scheduler(make_optimizer(model.param_groups(0.1)), Schedule())
    again.load_state_dict(state)
    assert again.last_epoch == 52
    torch.testing.assert_close(torch.tensor(again.get_last_lr()),
                               torch.tensor(scheduler.get_last_lr()))
