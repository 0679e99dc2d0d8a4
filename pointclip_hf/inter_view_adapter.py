"""The inter-view adapter of few-shot PointCLIP: where the CLIP features of all views become one global feature and
are redistributed to the views (`class Adapter` of the official `trainers/fewshot.py`)."""

import torch
from torch import nn

# Official parameter names (the `Adapter` of ZrrSkywalker/PointCLIP) -> ours.
REFERENCE_ADAPTER_KEYS = {
    "fusion_ratio": "view_fusion_weights",
    "global_f.0.bn.": "view_norm.",
    "global_f.3.": "global_proj.",
    "global_f.4.": "global_norm.",
    "view_f.0.": "view_mlp_in.",
    "view_f.2.": "view_mlp_out.",
}


class InterViewAdapter(nn.Module):
    """
    Fuses the `V` view features of a cloud into one global feature, maps it back to `V` adapted view features, and mixes
    them with the inputs: `out = ratio * view_mlp(global(x * fusion)) + (1 - ratio) * x`.

    Args:
        num_views: `V`.
        embed_dim: `C`, the width of CLIP's image embedding.
        ratio: weight of the adapted features in the residual mix (0.6 in PointCLIP).
        init: initial per-view fusion weight (0.5).
        dropout: dropout probability at both places of the global branch (0.075).
    """

    def __init__(self, num_views: int, embed_dim: int, ratio: float = 0.6, init: float = 0.5, dropout: float = 0.075):
        super().__init__()
        self.num_views = num_views
        self.embed_dim = embed_dim
        self.ratio = ratio
        self.init = init
        self.view_fusion_weights = nn.Parameter(torch.full((num_views,), float(init)))
        self.view_norm = nn.BatchNorm1d(embed_dim)  # statistics shared by all views
        self.view_dropout = nn.Dropout(dropout)
        self.global_proj = nn.Linear(num_views * embed_dim, embed_dim)
        self.global_norm = nn.BatchNorm1d(embed_dim)
        self.global_dropout = nn.Dropout(dropout)
        self.view_mlp_in = nn.Linear(embed_dim, embed_dim)
        self.view_mlp_out = nn.Linear(embed_dim, num_views * embed_dim)

    def forward(self, view_features: torch.Tensor) -> torch.Tensor:
        """`view_features` `[batch, views, C]` -> adapted view features `[batch, views, C]`."""
        batch, views, width = view_features.shape
        if (views, width) != (self.num_views, self.embed_dim):
            raise ValueError(
                f"The adapter expects {self.num_views} views of width {self.embed_dim}, got {views} of width {width}."
            )
        if self.training and batch < 2:
            raise ValueError("Training the adapter needs at least 2 clouds per batch (its BatchNorm needs statistics).")
        fused = view_features * self.view_fusion_weights[None, :, None]
        fused = self.view_norm(fused.reshape(batch * views, width)).reshape(batch, views * width)
        global_feature = self.global_proj(self.view_dropout(fused))
        global_feature = self.global_dropout(torch.relu(self.global_norm(global_feature)))
        adapted = torch.relu(self.view_mlp_out(torch.relu(self.view_mlp_in(global_feature))))
        mixed = self.ratio * adapted + (1.0 - self.ratio) * view_features.reshape(batch, views * width)
        return mixed.reshape(batch, views, width)


def convert_reference_adapter(state_dict: dict) -> dict:
    """
    Map an adapter state dict saved by the official PointCLIP code (`fusion_ratio`, `global_f.*`, `view_f.*`, as in
    `adapter/model-best.pth.tar["state_dict"]`) to the names of [`InterViewAdapter`]. Keys may carry a module prefix
    such as `adapter.` or `module.`. Raises if a key is not an adapter parameter.
    """
    converted = {}
    for key, value in state_dict.items():
        name = key.split("adapter.", 1)[-1].removeprefix("module.")
        for reference, ours in REFERENCE_ADAPTER_KEYS.items():
            if name == reference or (reference.endswith(".") and name.startswith(reference)):
                converted[ours + name[len(reference):]] = value
                break
        else:
            raise ValueError(f"{key!r} is not a parameter of the reference PointCLIP adapter.")
    return converted
