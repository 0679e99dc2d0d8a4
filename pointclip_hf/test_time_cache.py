"""The test-time cache (the TDA form, Karmanov et al., CVPR 2024; Point-Cache, CVPR 2025, for point clouds): caches
that grow from the stream of clouds being classified, in arrival order, with no labels and no training.

For each cloud, with `p = softmax(logits)`, entropy `H = -sum(p * log p)` and prediction `c = argmax(logits)`:

1. positive cache: the cloud's fused feature joins class `c`; a class holds at most `positive_shot_capacity`
   entries, and when it is full the entry with the highest entropy is replaced if the new one's is lower;
2. negative cache: the same with `negative_shot_capacity`, only for clouds whose normalised entropy
   `H / log2(K)` lies strictly between `entropy_lower` and `entropy_upper` (TDA divides the entropy in nats by
   `log2(K)`; kept as published), with the mask `mask_lower < p < mask_upper` as the entry's values;
3. then the cloud's logits: `logits + pos_alpha * A(pos) - neg_alpha * A(neg)`, `A = exp(-beta * (1 - f @ keys.T))
   @ values` with each cache's own beta (the cloud is in the cache when it is scored, as in TDA).

A result depends on the clouds that came before: this is outside the package's batch-invariance guarantee. For a
given order it is deterministic (the same clouds in the same order give the same bits, whatever the batch size), and
its state can be saved and restored (`state_dict`, `save`, `load`), which makes interrupted runs resumable.
"""

import dataclasses
import json
import math
from dataclasses import dataclass

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from .argument_checks import check_counts, check_numbers, check_settings
from .atomic_files import write_file_atomically
from .model.inter_view_adapter import affinity_logits

STATE_FORMAT = "pointclip-test-time-cache/1"


@dataclass
class TestTimeCacheConfig:
    """
    Settings of the test-time cache; the defaults are Point-Cache's ModelNet40 configuration (`configs/modelnet40.yaml`,
    TDA's form): positive cache 3 shots, alpha 2.0, beta 3.0; negative cache 2 shots, alpha 0.117, beta 1.0, entropy
    band (0.2, 0.5), mask (0.03, 1.0).

    Args:
        positive (`bool`, *optional*, defaults to `True`):
            Use the positive cache.
        positive_shot_capacity (`int`, *optional*, defaults to 3):
            Entries per class in the positive cache.
        positive_alpha (`float`, *optional*, defaults to 2.0), positive_beta (`float`, *optional*, defaults to 3.0):
            Its residual weight and affinity sharpness.
        negative (`bool`, *optional*, defaults to `True`):
            Use the negative cache.
        negative_shot_capacity (`int`, *optional*, defaults to 2):
            Entries per class in the negative cache.
        negative_alpha (`float`, *optional*, defaults to 0.117), negative_beta (`float`, *optional*, defaults to 1.0):
            Its weight (subtracted) and affinity sharpness.
        entropy_lower (`float`, *optional*, defaults to 0.2), entropy_upper (`float`, *optional*, defaults to 0.5):
            The band of normalised entropy a cloud must lie in (strictly) to enter the negative cache.
        mask_lower (`float`, *optional*, defaults to 0.03), mask_upper (`float`, *optional*, defaults to 1.0):
            A negative entry's values: 1 for the classes whose probability lies strictly in this band, else 0.
    """

    __test__ = False  # not a pytest test class

    positive: bool = True
    positive_shot_capacity: int = 3
    positive_alpha: float = 2.0
    positive_beta: float = 3.0
    negative: bool = True
    negative_shot_capacity: int = 2
    negative_alpha: float = 0.117
    negative_beta: float = 1.0
    entropy_lower: float = 0.2
    entropy_upper: float = 0.5
    mask_lower: float = 0.03
    mask_upper: float = 1.0

    def __post_init__(self):
        values = {kind: {} for kind in (bool, int, float)}
        for field in dataclasses.fields(self):
            values[field.type][field.name] = getattr(self, field.name)
        for name, value in values[bool].items():
            if not isinstance(value, bool):
                raise TypeError(f"TestTimeCacheConfig.{name} must be True or False, got {value!r}.")
        check_counts(values[int], prefix="TestTimeCacheConfig.")
        check_numbers(values[float], prefix="TestTimeCacheConfig.")
        for name, value in values[float].items():
            setattr(self, name, float(value))
        if not self.positive and not self.negative:
            raise ValueError("TestTimeCacheConfig: enable the positive or the negative cache (or both).")

    def to_dict(self) -> dict:
        """A JSON-serialisable dict of all settings."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TestTimeCacheConfig":
        """The config of a `to_dict()` dict; unknown settings raise a `ValueError`."""
        check_settings(values, cls)
        return cls(**values)


def as_test_time_cache_config(value) -> TestTimeCacheConfig | None:
    """The config of a `test_time_cache` argument: `False`/`None` (off), `True` (the defaults), a dict or a config."""
    if value is None or value is False:
        return None
    if value is True:
        return TestTimeCacheConfig()
    if isinstance(value, dict):
        return TestTimeCacheConfig.from_dict(value)
    if isinstance(value, TestTimeCacheConfig):
        return value
    raise TypeError(f"test_time_cache must be a bool, a dict or a TestTimeCacheConfig, got {type(value).__name__}.")


class _ClassCache:
    """One cache (positive or negative): `capacity` slots per class, each class's entries ordered by entropy."""

    def __init__(self, num_labels: int, capacity: int, alpha: float, beta: float):
        self.num_labels, self.capacity, self.alpha, self.beta = num_labels, capacity, alpha, beta
        self.keys = self.values = None
        with torch.inference_mode(False):  # updated in place later, also outside inference mode
            self.entropies = torch.zeros(num_labels * capacity, dtype=torch.float64)
            self.probs = torch.zeros(num_labels * capacity, num_labels, dtype=torch.float64)
        self.order = [[] for _ in range(num_labels)]  # per class: slots, lowest entropy first

    def insert(self, label: int, feature: torch.Tensor, entropy: float, values: torch.Tensor, probs: torch.Tensor):
        """TDA's update: append while the class has room, else replace its highest-entropy entry if `entropy` is lower;
        then sort the class by entropy (stable: among equal entropies the earlier entry stays first)."""
        if self.keys is None:
            self.keys = feature.new_zeros(self.num_labels * self.capacity, feature.shape[-1])
            self.values = feature.new_zeros(self.num_labels * self.capacity, self.num_labels)
        slots = self.order[label]
        if len(slots) < self.capacity:
            slot = label * self.capacity + len(slots)
            slots.append(slot)
        elif entropy < self.entropies[slots[-1]]:
            slot = slots[-1]
        else:
            return
        self.keys[slot], self.values[slot] = feature, values.to(self.values.dtype)
        self.entropies[slot], self.probs[slot] = entropy, probs
        slots.sort(key=lambda index: float(self.entropies[index]))

    def to(self, device) -> None:
        if self.keys is not None and self.keys.device != device:
            self.keys, self.values = self.keys.to(device), self.values.to(device)

    def logits(self, feature: torch.Tensor) -> torch.Tensor:
        """`alpha * exp(-beta * (1 - f @ keys.T)) @ values` of one feature (empty slots hold zero values)."""
        if self.keys is None:
            return feature.new_zeros(self.num_labels)
        return self.alpha * affinity_logits(feature[None], self.keys, self.values, self.beta)[0]

    def entries(self) -> dict:
        """The cached entries in TDA's order (classes ascending, each by entropy): keys, classes, entropies, probs."""
        slots = [slot for label in range(self.num_labels) for slot in self.order[label]]
        classes = [label for label in range(self.num_labels) for _ in self.order[label]]
        index = torch.tensor(slots, dtype=torch.long)
        keys = self.keys[index] if self.keys is not None else torch.zeros(0, 0)
        return {"keys": keys, "classes": torch.tensor(classes, dtype=torch.long),
                "entropies": self.entropies[index], "probs": self.probs[index]}  # fmt: skip

    def state_dict(self, prefix: str) -> dict:
        order = torch.full((self.num_labels, self.capacity), -1, dtype=torch.long)
        for label, slots in enumerate(self.order):
            order[label, : len(slots)] = torch.tensor(slots, dtype=torch.long)
        state = {f"{prefix}.order": order, f"{prefix}.entropies": self.entropies, f"{prefix}.probs": self.probs}
        if self.keys is not None:
            state.update({f"{prefix}.keys": self.keys.cpu(), f"{prefix}.values": self.values.cpu()})
        return state

    def load_state_dict(self, state: dict, prefix: str) -> None:
        order = state[f"{prefix}.order"]
        if tuple(order.shape) != (self.num_labels, self.capacity):
            raise ValueError(f"The saved {prefix} cache has {tuple(order.shape)} slots, this one {self.capacity} per "
                             f"class for {self.num_labels} labels.")  # fmt: skip
        self.order = [[int(slot) for slot in row if slot >= 0] for row in order]
        self.entropies, self.probs = state[f"{prefix}.entropies"].clone(), state[f"{prefix}.probs"].clone()
        self.keys = self.values = None
        if f"{prefix}.keys" in state:
            self.keys, self.values = state[f"{prefix}.keys"], state[f"{prefix}.values"]


class TestTimeCache:
    r"""
    The online positive and negative caches of one stream of clouds (see the module documentation). Opt-in, and
    outside the batch-invariance guarantee: a cloud's result depends on the clouds before it.

    Args:
        num_labels (`int`):
            The number of candidate labels (the logits' columns).
        config ([`TestTimeCacheConfig`], *optional*):
            The settings; Point-Cache's ModelNet40 configuration by default.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, num_labels: int, config: TestTimeCacheConfig | None = None):
        check_counts({"num_labels": num_labels})
        self.num_labels = num_labels
        self.config = config or TestTimeCacheConfig()
        self.num_seen = 0
        c = self.config
        self.positive = _ClassCache(num_labels, c.positive_shot_capacity, c.positive_alpha, c.positive_beta)
        self.negative = _ClassCache(num_labels, c.negative_shot_capacity, c.negative_alpha, c.negative_beta)

    def adapt(self, features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        r"""
        Add the clouds of a batch to the caches, one after the other in row order, and return their adapted logits.

        Args:
            features (`torch.Tensor` of shape `(batch, D)`):
                L2-normalised fused features (see `inter_view_adapter.fused_features`).
            logits (`torch.Tensor` of shape `(batch, num_labels)`):
                The model's logits.

        Returns:
            `torch.Tensor` of shape `(batch, num_labels)`, in the dtype of `logits`.
        """
        if features.ndim != 2 or logits.shape != (len(features), self.num_labels):
            raise ValueError(f"Expected features (batch, D) and logits (batch, {self.num_labels}), got "
                             f"{tuple(features.shape)} and {tuple(logits.shape)}.")  # fmt: skip
        self.positive.to(features.device)
        self.negative.to(features.device)
        with torch.inference_mode(False), torch.no_grad():  # the state must stay usable outside inference mode
            return torch.stack([self._adapt_one(feature, row) for feature, row in zip(features, logits)])

    def _adapt_one(self, feature: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        log_probs = logits.double().log_softmax(-1)
        probs = log_probs.exp()
        entropy = float(-(probs * log_probs).sum())
        label = int(logits.argmax())
        c = self.config
        if c.positive:
            self.positive.insert(label, feature, entropy, torch.nn.functional.one_hot(torch.tensor(label),
                                                                                   self.num_labels), probs)  # fmt: skip
        normalised = entropy / math.log2(self.num_labels) if self.num_labels > 1 else 0.0
        if c.negative and c.entropy_lower < normalised < c.entropy_upper:
            self.negative.insert(label, feature, entropy, (probs > c.mask_lower) & (probs < c.mask_upper), probs)
        self.num_seen += 1
        adapted = logits.clone()
        if c.positive:
            adapted = adapted + self.positive.logits(feature).to(adapted.dtype)
        if c.negative:
            adapted = adapted - self.negative.logits(feature).to(adapted.dtype)
        return adapted

    def entries(self, which: str) -> dict:
        r"""
        The cached entries of the `"positive"` or `"negative"` cache, in TDA's order (classes ascending, each by
        entropy).

        Returns:
            `dict` with `keys` `(entries, D)`, `classes` `(entries,)`, `entropies` `(entries,)` in nats and `probs`
            `(entries, num_labels)`, the softmax of the cloud when it entered.
        """
        if which not in ("positive", "negative"):
            raise ValueError(f"which must be 'positive' or 'negative', got {which!r}.")
        return getattr(self, which).entries()

    def state_dict(self) -> dict:
        """Every tensor of the state (on the CPU); `metadata()` holds the rest."""
        return {**self.positive.state_dict("positive"), **self.negative.state_dict("negative")}

    def metadata(self) -> dict:
        """The settings, the number of labels and of clouds seen, as JSON strings (safetensors metadata)."""
        return {"format": STATE_FORMAT, "config": json.dumps(self.config.to_dict()),
                "num_labels": str(self.num_labels), "num_seen": str(self.num_seen)}  # fmt: skip

    def save(self, path, extra_metadata: dict | None = None) -> None:
        """Write the state to a safetensors file, atomically."""
        metadata = {**self.metadata(), **(extra_metadata or {})}
        write_file_atomically(path, save({k: v.contiguous() for k, v in self.state_dict().items()}, metadata))

    @classmethod
    def load(cls, path) -> tuple["TestTimeCache", dict]:
        r"""
        Read a state written by [`~TestTimeCache.save`] (on the CPU; `adapt` moves it to the features' device).

        Returns:
            `tuple[TestTimeCache, dict]`: the cache and the file's metadata.
        """
        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
            tensors = load_file(str(path))
            if metadata.get("format") != STATE_FORMAT:
                raise ValueError(f"format {metadata.get('format')!r}")
            cache = cls(int(metadata["num_labels"]), TestTimeCacheConfig.from_dict(json.loads(metadata["config"])))
            cache.positive.load_state_dict(tensors, "positive")
            cache.negative.load_state_dict(tensors, "negative")
            cache.num_seen = int(metadata["num_seen"])
        except (SafetensorError, OSError, ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{str(path)!r} is not a usable test-time cache state ({error}).") from None
        return cache, metadata


__all__ = ["TestTimeCache", "TestTimeCacheConfig", "as_test_time_cache_config"]
