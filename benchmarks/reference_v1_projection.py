"""A line-by-line re-implementation of the official PointCLIP V1 projection (`trainers/mv_utils_zs.py` and
`mv_utils_fs.py`: `euler2mat`, `distribute`, `points2depth`, `PCViews.get_img`), on the caller's device, written
from `shared/spec/pointclip_reference.md` sections 2.1-2.2 and used only as the timing baseline of
`bench_projection.py` when no copy of the official file is given. `bench_projection.py` checks that it reproduces
the golden maps bit for bit before timing it.

It keeps the official code's work: the 4-D `repeat`s of the splat grid, the modulo-wrapped coordinates, the unused
`distance` and `true_coordinates` tensors and the full-size `scatter_add`s.
"""

import math

import torch

VIEWS = {
    "pointclip_v1": {
        "angles": [[k * math.pi / 2, 0, math.pi / 2] for k in range(4)]
        + [[0, -math.pi / 2, math.pi / 2], [0, math.pi / 2, math.pi / 2]],
        "trans": -1.6,
        "resolution": 128,
    },
    "pointclip_v1_fewshot": {
        "angles": [[k * math.pi / 2, 0, math.pi / 2] for k in range(4)]
        + [[5 * math.pi / 4, -math.pi / 4, math.pi / 2], [5 * math.pi / 4, math.pi / 4, math.pi / 2],
           [7 * math.pi / 4, -math.pi / 4, math.pi / 2], [7 * math.pi / 4, math.pi / 4, math.pi / 2]]
        + [[0, -math.pi / 2, math.pi / 2], [0, math.pi / 2, math.pi / 2]],
        "trans": -1.4,
        "resolution": 224,
    },
}  # fmt: skip


def euler2mat(angle):
    batch = angle.size(0)
    x, y, z = angle[:, 0], angle[:, 1], angle[:, 2]
    cosz, sinz = torch.cos(z), torch.sin(z)
    zeros = z.detach() * 0
    ones = zeros.detach() + 1
    zmat = torch.stack([cosz, -sinz, zeros, sinz, cosz, zeros, zeros, zeros, ones], dim=1).reshape(batch, 3, 3)
    cosy, siny = torch.cos(y), torch.sin(y)
    ymat = torch.stack([cosy, zeros, siny, zeros, ones, zeros, -siny, zeros, cosy], dim=1).reshape(batch, 3, 3)
    cosx, sinx = torch.cos(x), torch.sin(x)
    xmat = torch.stack([ones, zeros, zeros, zeros, cosx, -sinx, zeros, sinx, cosx], dim=1).reshape(batch, 3, 3)
    return xmat @ ymat @ zmat


def distribute(depth, _x, _y, size_x, size_y, image_height, image_width):
    batch, _ = depth.size()
    epsilon = torch.tensor([1e-12], requires_grad=False, device=depth.device)
    _i = torch.linspace(-size_x / 2, (size_x / 2) - 1, size_x, requires_grad=False, device=depth.device)
    _j = torch.linspace(-size_y / 2, (size_y / 2) - 1, size_y, requires_grad=False, device=depth.device)
    extended_x = _x.unsqueeze(2).repeat([1, 1, size_x]) + _i
    extended_y = _y.unsqueeze(2).repeat([1, 1, size_y]) + _j
    extended_x = extended_x.unsqueeze(3).repeat([1, 1, 1, size_y])
    extended_y = extended_y.unsqueeze(2).repeat([1, 1, size_x, 1])
    extended_x.ceil_()
    extended_y.ceil_()
    value = depth.unsqueeze(2).unsqueeze(3).repeat([1, 1, size_x, size_y])
    masked_points = (
        (extended_x >= 0) * (extended_x <= image_height - 1) * (extended_y >= 0) * (extended_y <= image_width - 1)
        * (value >= 0)
    )  # fmt: skip
    true_extended_x, true_extended_y = extended_x, extended_y
    extended_x = extended_x % image_height
    extended_y = extended_y % image_width
    distance = torch.abs((extended_x - _x.unsqueeze(2).unsqueeze(3)) * (extended_y - _y.unsqueeze(2).unsqueeze(3)))
    del distance  # computed and unused in the official code
    weight = masked_points.float() * (1 / (value + epsilon))
    weighted_value = value * weight
    weight = weight.view([batch, -1])
    weighted_value = weighted_value.view([batch, -1])
    coordinates = (extended_x.view([batch, -1]) * image_width) + extended_y.view([batch, -1])
    coord_max = image_height * image_width
    true_coordinates = (true_extended_x.view([batch, -1]) * image_width) + true_extended_y.view([batch, -1])
    true_coordinates[~masked_points.view([batch, -1])] = coord_max
    weight_scattered = torch.zeros([batch, image_width * image_height], device=depth.device).scatter_add(
        1, coordinates.long(), weight
    )
    weight_scattered += (weight_scattered == 0.0).float()
    weighed_value_scattered = torch.zeros([batch, image_width * image_height], device=depth.device).scatter_add(
        1, coordinates.long(), weighted_value
    )
    return weighed_value_scattered, weight_scattered


def points2depth(points, image_height, image_width, size_x=4, size_y=4):
    epsilon = 1e-12
    coord_x = points[:, :, 0] / (points[:, :, 2] + epsilon) * (image_width / image_height)
    coord_y = points[:, :, 1] / (points[:, :, 2] + epsilon)
    batch, _, _ = points.size()
    depth = points[:, :, 2]
    _x = ((coord_x + 1) * image_height) / 2
    _y = ((coord_y + 1) * image_width) / 2
    weighed_value_scattered, weight_scattered = distribute(
        depth=depth, _x=_x, _y=_y, size_x=size_x, size_y=size_y, image_height=image_height, image_width=image_width
    )
    return (weighed_value_scattered / weight_scattered).view([batch, image_height, image_width])


class PCViews:
    """`PCViews` of the official code for `style`, with `get_img(points [B, N, 3]) -> [B * V, H, W]`."""

    def __init__(self, style: str, device, points2depth=points2depth, euler2mat=euler2mat):
        views = VIEWS[style]
        self.resolution = views["resolution"]
        self.points2depth = points2depth
        self.rot_mat = euler2mat(torch.tensor(views["angles"]).float()).transpose(1, 2).to(device)
        self.translation = torch.tensor([[0, 0, views["trans"]]] * len(views["angles"])).float()
        self.translation = self.translation.unsqueeze(1).to(device)

    def get_img(self, points):
        batch = points.shape[0]
        num_views = self.translation.shape[0]
        points = torch.repeat_interleave(points, num_views, dim=0)
        points = torch.matmul(points, self.rot_mat.repeat(batch, 1, 1)) - self.translation.repeat(batch, 1, 1)
        return self.points2depth(points, self.resolution, self.resolution, size_x=1, size_y=1)
