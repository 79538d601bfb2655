"""Property tests of the identity sampler: a pure function of (seed, epoch, step, rank)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vireid.errors import VireidError
from vireid.loader.sampler import IdentitySampler
from vireid.records import LabeledSamples, TrainView


def make_view(classes: int, per_class_vis: int, per_class_ir: int, seed: int = 0) -> TrainView:
    rng = np.random.default_rng(seed)
    vis_labels = np.repeat(np.arange(classes), rng.integers(1, per_class_vis + 1, classes))
    ir_labels = np.repeat(np.arange(classes), rng.integers(1, per_class_ir + 1, classes))
    vis = LabeledSamples(tuple(range(len(vis_labels))), tuple(int(v) for v in vis_labels))
    offset = len(vis_labels)
    ir = LabeledSamples(tuple(range(offset, offset + len(ir_labels))),
                        tuple(int(v) for v in ir_labels))
    return TrainView("train", vis, ir)


def label_of(view: TrainView):
    table = dict(zip(view.visible.samples, view.visible.labels))
    table.update(zip(view.infrared.samples, view.infrared.labels))
    return table


@settings(max_examples=40, deadline=None)
@given(classes=st.integers(4, 30), p=st.integers(1, 4), k=st.integers(1, 5),
       seed=st.integers(0, 2**31), epoch=st.integers(0, 100), step=st.integers(0, 1000))
def test_shape_alignment_and_labels(classes, p, k, seed, epoch, step):
    view = make_view(classes, 6, 4, seed % 7)
    sampler = IdentitySampler.from_view(view, batch_ids=p, num_pos=k, seed=seed)
    drawn = sampler.step(epoch, step % sampler.steps_per_epoch)
    assert drawn.visible.shape == drawn.infrared.shape == drawn.labels.shape == (p * k,)
    labels = label_of(view)
    assert [labels[i] for i in drawn.visible] == list(drawn.labels)
    assert [labels[i] for i in drawn.infrared] == list(drawn.labels)
    blocks = drawn.labels.reshape(p, k)
    assert (blocks == blocks[:, :1]).all()  # block i of K is one identity
    assert len(set(blocks[:, 0])) == p  # identities without replacement within a step
    assert set(drawn.visible) <= set(view.visible.samples)
    assert set(drawn.infrared) <= set(view.infrared.samples)


def test_steps_per_epoch_is_the_originals():
    view = make_view(10, 9, 3)
    sampler = IdentitySampler.from_view(view, batch_ids=2, num_pos=3)
    n = max(len(view.visible.samples), len(view.infrared.samples))
    assert sampler.steps_per_epoch == n // 6 + 1


def test_every_identity_appears_over_an_epoch():
    view = make_view(40, 20, 20, seed=3)
    sampler = IdentitySampler.from_view(view, batch_ids=8, num_pos=4, seed=11)
    seen = set()
    for step in range(sampler.steps_per_epoch):
        seen |= set(sampler.step(5, step).labels.tolist())
    assert seen == set(range(40))


def test_pure_function_of_seed_epoch_step():
    view = make_view(20, 30, 30)
    a = IdentitySampler.from_view(view, seed=3)
    b = IdentitySampler.from_view(view, seed=3)
    first = a.step(2, 7)
    np.testing.assert_array_equal(first.visible, b.step(2, 7).visible)
    a.step(9, 9)  # no hidden state: drawing something else in between changes nothing
    np.testing.assert_array_equal(first.infrared, a.step(2, 7).infrared)
    assert not np.array_equal(first.visible, a.step(2, 8).visible)
    assert not np.array_equal(first.visible, a.step(3, 7).visible)
    other = IdentitySampler.from_view(view, seed=4).step(2, 7)
    assert not np.array_equal(first.visible, other.visible)


@pytest.mark.parametrize("world_size", [2, 4])
def test_ranks_split_the_single_process_draw(world_size):
    view = make_view(30, 8, 8)
    sampler = IdentitySampler.from_view(view, batch_ids=8, num_pos=4, seed=1)
    for step in range(5):
        whole = sampler.step(0, step)
        parts = [sampler.step(0, step, rank, world_size) for rank in range(world_size)]
        ids = [set(p.labels.tolist()) for p in parts]
        for i in range(world_size):
            for j in range(i + 1, world_size):
                assert not ids[i] & ids[j]
        np.testing.assert_array_equal(np.concatenate([p.visible for p in parts]), whole.visible)
        np.testing.assert_array_equal(np.concatenate([p.infrared for p in parts]),
                                      whole.infrared)


@pytest.mark.parametrize("order", ["epoch", "original"])
def test_both_identity_orders_are_valid_and_differ(order):
    view = make_view(12, 6, 6)
    sampler = IdentitySampler.from_view(view, batch_ids=3, num_pos=2, seed=2, order=order)
    for step in range(sampler.steps_per_epoch):
        assert len(set(sampler.step(1, step).labels.tolist())) == 3
    other = "original" if order == "epoch" else "epoch"
    twin = IdentitySampler.from_view(view, batch_ids=3, num_pos=2, seed=2, order=other)
    assert any(not np.array_equal(sampler.step(1, s).labels, twin.step(1, s).labels)
               for s in range(sampler.steps_per_epoch))


def test_epoch_order_covers_every_identity_without_repeats_in_a_step():
    from vireid.loader.sampler import epoch_order

    order = epoch_order(seed=1, epoch=0, classes=7, batch_ids=3, steps=9)
    assert order.shape == (9, 3)
    assert all(len(set(row)) == 3 for row in order.tolist())
    draws = order.ravel().tolist()
    assert sorted(draws[:7]) == list(range(7))  # the first pass shows every identity
    counts = np.bincount(draws, minlength=7)
    assert counts.min() >= len(draws) // 7 - 1  # every later pass shows every identity too


def test_split_must_divide_identities():
    sampler = IdentitySampler.from_view(make_view(30, 4, 4), batch_ids=6, num_pos=2)
    with pytest.raises(VireidError, match="cannot be split over 4"):
        sampler.step(0, 0, 0, 4)


def test_without_replacement_option():
    view = make_view(10, 12, 12, seed=5)
    labels = label_of(view)
    smallest = min(np.bincount([labels[s] for s in part.samples]).min()
                   for part in (view.visible, view.infrared))
    sampler = IdentitySampler.from_view(view, batch_ids=4, num_pos=smallest, replace=False)
    for step in range(sampler.steps_per_epoch):
        for block in sampler.step(0, step).visible.reshape(4, smallest):
            assert len(set(block)) == smallest


def test_without_replacement_an_identity_with_too_few_images_is_refused():
    """Formerly the draw fell back to replacement without a word."""
    view = make_view(10, 12, 12, seed=5)
    labels = label_of(view)
    smallest = min(np.bincount([labels[s] for s in part.samples]).min()
                   for part in (view.visible, view.infrared))
    with pytest.raises(VireidError, match=rf"without replacement, but label \d+ has "
                                          rf"{smallest} (visible|infrared) images"):
        IdentitySampler.from_view(view, batch_ids=4, num_pos=smallest + 1, replace=False)


def test_labels_must_cover_both_modalities():
    view = make_view(5, 3, 3)
    broken = TrainView("train", view.visible,
                       LabeledSamples(view.infrared.samples[:1], view.infrared.labels[:1]))
    with pytest.raises(VireidError, match="visible and infrared"):
        IdentitySampler.from_view(broken, batch_ids=1)


@pytest.mark.parametrize("views", [None, "channel"])
@pytest.mark.parametrize("world_size", [2, 4])
def test_rank_plans_are_shares_of_the_single_process_plan(world_size, views):
    """Every group (visible, CAJ's second visible view, infrared) is split the same way: the
    ranks' samples and augmentation parameters, group by group, put back together are the
    single-process plan's."""
    from vireid.loader.plan import plan_step, visible_views

    view = make_view(30, 8, 8)
    sampler = IdentitySampler.from_view(view, batch_ids=8, num_pos=4, seed=1)
    groups = visible_views(views) + 1
    for step in range(3):
        whole = plan_step(sampler, 0, step, augment=True, height=64, width=32, views=views)
        parts = [plan_step(sampler, 0, step, augment=True, height=64, width=32, rank=rank,
                           world_size=world_size, views=views) for rank in range(world_size)]

        def regroup(values):  # [rank][group][i] → [group][rank][i], flattened
            return np.concatenate([np.split(np.asarray(v), groups)[g] for g in range(groups)
                                   for v in values])

        np.testing.assert_array_equal(regroup([p.samples for p in parts]), whole.samples)
        for name in ("top", "left", "flip", "erase") + (("mix",) if views else ()):
            np.testing.assert_array_equal(
                regroup([getattr(p.params, name) for p in parts]), getattr(whole.params, name))
        assert all(p.visible_views == groups - 1 for p in parts)
