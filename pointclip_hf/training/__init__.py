"""Few-shot training of PointCLIP's inter-view adapter (PointCLIP V1 few-shot recipe: the official
`trainers/fewshot.py` and `configs/trainers/PointCLIP_FS/*.yaml`).

`build_few_shot_model(clip, label_names)` makes a PointCLIP with a fresh adapter; `train_adapter(model, train,
validation)` trains only that adapter, with the reference recipe ([`TrainingConfig`]) by default.

- `config`: `TrainingConfig` (the recipe) and `TrainingResult`;
- `schedule`: the Dassl-exact learning-rate schedule;
- `augmentation`: random per-cloud scale and shift;
- `few_shot_model`: `build_few_shot_model`;
- `checkpoints`: resumable checkpoints and the `best/` model folder;
- `trainer_loop`: `train_adapter`.
"""

from .augmentation import augment_point_clouds
from .config import TrainingConfig, TrainingResult
from .few_shot_model import build_few_shot_model
from .schedule import learning_rate_at, learning_rate_schedule
from .trainer_loop import train_adapter

__all__ = [
    "TrainingConfig",
    "TrainingResult",
    "augment_point_clouds",
    "build_few_shot_model",
    "learning_rate_at",
    "learning_rate_schedule",
    "train_adapter",
]
