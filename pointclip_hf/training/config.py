"""The few-shot training recipe (`TrainingConfig`, PointCLIP's settings by default) and what a run returns."""

import dataclasses
from dataclasses import dataclass, field

from ..argument_checks import check_counts, check_settings

# Settings that earlier versions wrote to `training_result.json` and checkpoints but that never changed a run: dropped
# when such a file is read back.
RETIRED_SETTINGS = ("num_workers",)

# The real-valued settings: name, the test a valid value passes (NaN fails them all) and the rule it states.
_REAL_SETTINGS = (
    ("learning_rate", lambda value: value > 0, "positive"),
    ("warmup_lr", lambda value: value > 0, "positive"),
    ("momentum", lambda value: 0 <= value < 1, "in [0, 1)"),
    ("weight_decay", lambda value: value >= 0, "non-negative"),
    ("label_smoothing", lambda value: 0 <= value < 1, "in [0, 1)"),
    ("scale_range", lambda value: len(value) == 2 and 0 < value[0] <= value[1], "(low, high) with 0 < low <= high"),
    ("shift_range", lambda value: value >= 0, "non-negative"),
)


@dataclass(frozen=True)
class TrainingConfig:
    """
    Hyper-parameters of `train_adapter`; the defaults are PointCLIP's few-shot recipe. Checked once, when made, and
    fixed from then on (change one with `dataclasses.replace(config, epochs=10)`, which checks again).
    JSON-serialisable with `to_dict()` / `from_dict()`.

    Args:
        epochs (`int`, *optional*, defaults to 250):
            Training epochs.
        batch_size (`int`, *optional*, defaults to 32):
            Clouds per step; `drop_last` applies when the training set holds at least this many.
        learning_rate (`float`, *optional*, defaults to 0.01):
            The SGD learning rate after warm-up, annealed by a cosine.
        momentum (`float`, *optional*, defaults to 0.9):
            SGD momentum.
        weight_decay (`float`, *optional*, defaults to 5e-4):
            SGD weight decay.
        warmup_epochs (`int`, *optional*, defaults to 1):
            Constant warm-up epochs.
        warmup_lr (`float`, *optional*, defaults to 1e-5):
            The warm-up learning rate.
        label_smoothing (`float`, *optional*, defaults to 0.2):
            DGCNN-style smoothing of the loss; written to the model's config.
        augment (`bool`, *optional*, defaults to `True`):
            Per-cloud random per-axis scale then shift.
        scale_range (`tuple[float, float]`, *optional*, defaults to `(2/3, 3/2)`):
            The augmentation's scale range.
        shift_range (`float`, *optional*, defaults to 0.2):
            The augmentation's shifts lie in `[-shift_range, shift_range]`.
        seed (`int`, *optional*, defaults to 2):
            Seeds shuffling, augmentation and dropout.
        cache_features (`bool`, *optional*):
            Compute the CLIP view features once and train the adapter on them. `None` (default): on when `augment`
            is off. Cannot be combined with augmentation.
        eval_every (`int`, *optional*, defaults to 1):
            Evaluate on the validation set after every this many epochs (and after the last one).
        device (`str`, *optional*):
            Where to train (`"cpu"`, `"cuda"`, ...); the model is moved there. Default: the model's device.
        progress (`bool`, *optional*, defaults to `True`):
            Show tqdm progress bars.
    """

    epochs: int = 250
    batch_size: int = 32
    learning_rate: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: int = 1
    warmup_lr: float = 1e-5
    label_smoothing: float = 0.2
    augment: bool = True
    scale_range: tuple[float, float] = (2 / 3, 3 / 2)
    shift_range: float = 0.2
    seed: int = 2
    cache_features: bool | None = None
    eval_every: int = 1
    device: str | None = None
    progress: bool = True

    def __post_init__(self):
        object.__setattr__(self, "scale_range", tuple(float(value) for value in self.scale_range))
        if self.device is not None:
            object.__setattr__(self, "device", str(self.device))
        self.validate()

    def validate(self) -> None:
        """Raise a `ValueError` naming the first invalid setting."""
        check_counts({name: getattr(self, name) for name in ("epochs", "batch_size", "eval_every")})
        check_counts({name: getattr(self, name) for name in ("warmup_epochs", "seed")}, minimum=0)
        invalid = [(name, rule) for name, accepts, rule in _REAL_SETTINGS if not accepts(getattr(self, name))]
        if invalid:
            name, rule = invalid[0]
            raise ValueError(f"{name} must be {rule}, got {getattr(self, name)}.")
        if self.augment and self.cache_features:
            raise ValueError(
                "cache_features=True cannot be combined with augment=True: augmented clouds must be rendered and "
                "encoded by CLIP again at every step. Set augment=False to train on cached features."
            )

    @property
    def use_feature_cache(self) -> bool:
        """Whether training runs on view features computed once (`cache_features`, by default `not augment`)."""
        return (not self.augment) if self.cache_features is None else self.cache_features

    def to_dict(self) -> dict:
        """A JSON-serialisable dict of all settings."""
        values = dataclasses.asdict(self)
        values["scale_range"] = list(self.scale_range)
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "TrainingConfig":
        """The config of a `to_dict()` dict (`RETIRED_SETTINGS` are dropped); unknown settings raise a
        `ValueError`."""
        values = {key: value for key, value in values.items() if key not in RETIRED_SETTINGS}
        check_settings(values, cls)
        return cls(**values)


@dataclass
class TrainingResult:
    """
    What `train_adapter` returns (and writes to `training_result.json`).

    Args:
        best_epoch (`int`, *optional*):
            The (1-based) epoch whose adapter the model holds after training.
        best_validation_accuracy (`float`, *optional*):
            Its validation accuracy (`None` without a validation set).
        history (`list[dict]`):
            One dict per completed epoch: `epoch`, `lr`, `train_loss`, `train_accuracy`, `seconds`, and after an
            evaluation `validation_loss` and `validation_accuracy`.
        output_dir (`str`, *optional*):
            Where the checkpoint, `best/` and `training_result.json` were written (`None` if nowhere).
        epochs_completed (`int`):
            Epochs trained so far (less than `config.epochs` when stopped by `stop_after_epoch`).
        finished (`bool`):
            Whether all `config.epochs` epochs are done.
    """

    best_epoch: int | None
    best_validation_accuracy: float | None
    history: list[dict] = field(default_factory=list)
    output_dir: str | None = None
    epochs_completed: int = 0
    finished: bool = False

    def to_dict(self) -> dict:
        """A JSON-serialisable dict of all fields."""
        return dataclasses.asdict(self)


__all__ = ["TrainingConfig", "TrainingResult"]
