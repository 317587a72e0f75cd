import math

import pytest
import torch

from img2img.losses import (
    PIXEL_LOSSES,
    charbonnier_loss,
    grid_loss,
    l1_loss,
    l2_loss,
    phase_deviation,
    total_variation,
)


def test_registry_names():
    assert PIXEL_LOSSES.names() == ["charbonnier", "l1", "l2"]


def test_l1_and_l2_by_hand():
    x = torch.tensor([0.0, 1.0, 2.0, 3.0])
    zero = torch.zeros(4)
    # |d| = 0, 1, 2, 3 -> mean 6 / 4 = 1.5; d^2 = 0, 1, 4, 9 -> mean 14 / 4 = 3.5
    assert float(l1_loss(x, zero)) == pytest.approx(1.5)
    assert float(l2_loss(x, zero)) == pytest.approx(3.5)


def test_charbonnier_by_hand():
    x = torch.tensor([0.0, 3.0, 4.0])
    zero = torch.zeros(3)
    eps = 1e-3
    # sqrt(0 + 1e-6) = 1e-3, sqrt(9 + 1e-6), sqrt(16 + 1e-6); mean of the three
    expected = (eps + math.sqrt(9 + eps**2) + math.sqrt(16 + eps**2)) / 3
    assert float(charbonnier_loss(x, zero)) == pytest.approx(expected, rel=1e-6)
    assert float(PIXEL_LOSSES.get("charbonnier")(x, zero)) == pytest.approx(expected, rel=1e-6)


def test_charbonnier_tends_to_l1_as_eps_shrinks():
    torch.manual_seed(0)
    x, y = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    assert float(charbonnier_loss(x, y, eps=1e-6)) == pytest.approx(float(l1_loss(x, y)), abs=1e-5)
    # With a large eps it is clearly not L1 any more: the bound L1 <= charbonnier <= L1 + eps.
    big = float(charbonnier_loss(x, y, eps=0.5))
    assert float(l1_loss(x, y)) + 0.05 < big <= float(l1_loss(x, y)) + 0.5


def test_charbonnier_gradient_is_finite_at_zero_difference():
    x = torch.zeros(4, requires_grad=True)
    charbonnier_loss(x, torch.zeros(4)).backward()
    assert torch.equal(x.grad, torch.zeros(4))


@pytest.mark.parametrize("name", PIXEL_LOSSES.names())
def test_shape_mismatch_raises(name):
    with pytest.raises(ValueError, match="same shape"):
        PIXEL_LOSSES.get(name)(torch.zeros(2, 3, 4, 4), torch.zeros(3, 4, 4))


def test_total_variation_on_ramps():
    i = torch.arange(5.0).view(1, 1, 5, 1)
    j = torch.arange(7.0).view(1, 1, 1, 7)
    # Rising 0.5 per column only: every horizontal difference is 0.5, vertical ones 0 -> 0.5.
    assert float(total_variation((0.5 * j).expand(2, 3, 5, 7))) == pytest.approx(0.5)
    # Adding 0.25 per row: vertical differences are 0.25 -> 0.5 + 0.25.
    assert float(total_variation(0.5 * j + 0.25 * i)) == pytest.approx(0.75)
    # A falling ramp counts the same (absolute differences), and a constant image scores 0.
    assert float(total_variation(-0.5 * j + 0 * i)) == pytest.approx(0.5)
    assert float(total_variation(torch.full((1, 3, 4, 4), 0.7))) == 0.0


def test_total_variation_checkerboard():
    # Neighbours of a 0/1 checkerboard always differ by 1 -> 1 + 1.
    board = (torch.arange(4).view(4, 1) + torch.arange(4).view(1, 4)) % 2
    assert float(total_variation(board.float().view(1, 1, 4, 4))) == pytest.approx(2.0)


def test_total_variation_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        total_variation(torch.zeros(3, 4, 4))
    with pytest.raises(ValueError, match=">= 2"):
        total_variation(torch.zeros(1, 3, 1, 4))


def test_phase_deviation_by_hand_over_whole_cells_only():
    x = torch.zeros(1, 1, 5, 5)
    x[..., 0:4:2, 0:4:2] = 4.0  # phase (0, 0) of the four whole 2x2 cells
    x[..., 4, :] = 100.0  # a partial row of cells: not counted
    deviation = phase_deviation(x, 2)
    assert deviation.shape == (1, 1, 2, 2)
    torch.testing.assert_close(deviation[0, 0], torch.tensor([[3.0, -1.0], [-1.0, -1.0]]))


def test_grid_loss_sees_a_fixed_pattern_in_the_error_and_not_texture():
    generator = torch.Generator().manual_seed(0)
    target = torch.rand(2, 3, 256, 256, generator=generator)
    pattern = torch.zeros(1, 1, 4, 4)
    pattern[..., 1, 2] = 0.05
    gridded = target + pattern.repeat(1, 1, 64, 64)
    # Texture errors average out over the 4,096 cells: what is left is noise of 0.05 / 64.
    textured = target + 0.05 * torch.randn(2, 3, 256, 256, generator=generator)
    # The pattern's deviation: 0.05 * 15/16 at one phase, -0.05/16 at the 15 others.
    assert float(grid_loss(gridded, target, 4)) == pytest.approx(0.05 * 30 / 16 / 16, rel=1e-4)
    assert float(grid_loss(textured, target, 4)) < 0.1 * float(grid_loss(gridded, target, 4))
    assert l1_loss(textured, target) > l1_loss(gridded, target)


def test_descending_grid_loss_removes_the_pattern_and_keeps_the_rest():
    target = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    pattern = torch.zeros(1, 3, 4, 4)
    pattern[..., 0, 0] = 0.1
    output = (target + pattern.repeat(1, 1, 8, 8) + 0.2).requires_grad_(True)
    optimizer = torch.optim.SGD([output], lr=60.0)
    schedule = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.93)
    for _ in range(100):
        optimizer.zero_grad()
        grid_loss(output, target, 4).backward()
        optimizer.step()
        schedule.step()
    assert float(grid_loss(output, target, 4)) < 0.003
    # A uniform offset repeats at every phase alike: not a grid, so it stays.
    assert float((output - target).mean()) == pytest.approx(0.2 + 0.1 / 16, abs=1e-3)
