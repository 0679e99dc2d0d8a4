"""[`EvaluationReport`]: what [`evaluate`] returns and writes as `report.json` and `confusion_matrix.png`."""

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..atomic_files import write_file_atomically
from ..visualization import save_confusion_matrix_image

REPORT_FILE = "report.json"
CONFUSION_IMAGE_FILE = "confusion_matrix.png"


@dataclass
class EvaluationReport:
    """
    The result of an evaluation.

    Args:
        accuracy (`float`):
            Fraction of clouds whose top prediction is their label (overall accuracy).
        per_class_accuracy (`dict[str, float | None]`):
            Per class name, the accuracy over its clouds (`None` for a class without clouds).
        num_samples (`int`):
            Number of clouds evaluated.
        confusion_matrix (`list[list[int]]` of shape `(classes, classes)`):
            Counts, rows the true classes, columns the predictions, in label order.
        setup (`dict`):
            Everything needed to reproduce the result (model, config hash, projection, views, view weights, prompts,
            labels, adapter, dtype, processor settings, data) plus a `runtime` entry (device, processes, versions).
        mean_class_accuracy (`float`, *optional*):
            The mean of the per-class accuracies over the classes that have clouds (ModelNet's "mAcc").
    """

    accuracy: float
    per_class_accuracy: dict[str, float | None]
    num_samples: int
    confusion_matrix: list[list[int]]
    setup: dict = field(default_factory=dict)
    mean_class_accuracy: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "EvaluationReport":
        return cls(**data)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "EvaluationReport":
        """
        Read a report.

        Args:
            path (`str` or `os.PathLike`):
                A `report.json`, or the folder holding one.
        """
        path = Path(path)
        if path.is_dir():
            path = path / REPORT_FILE
        with open(path, encoding="utf-8") as handle:
            return cls.from_dict(json.load(handle))

    def save(self, output_dir: str | os.PathLike) -> Path:
        """
        Write `report.json` and `confusion_matrix.png`, each atomically.

        Args:
            output_dir (`str` or `os.PathLike`):
                The folder to write into, created if needed.

        Returns:
            `Path`: the folder.
        """
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        write_file_atomically(output_dir / REPORT_FILE, (json.dumps(self.to_dict(), indent=2) + "\n").encode("utf-8"))
        save_confusion_matrix_image(
            self.confusion_matrix,
            list(self.per_class_accuracy),
            output_dir / CONFUSION_IMAGE_FILE,
            title=f"accuracy {self.accuracy:.2%} over {self.num_samples} clouds",
        )
        return output_dir


def build_report(confusion: np.ndarray, labels: list[str], setup: dict) -> EvaluationReport:
    """
    Compute the accuracies of a confusion matrix.

    Args:
        confusion (`np.ndarray` of shape `(classes, classes)`):
            Counts, rows the true classes, columns the predictions.
        labels (`list[str]`):
            The class names, in the order of the rows.
        setup (`dict`):
            Stored as [`EvaluationReport.setup`].
    """
    totals = confusion.sum(axis=1)
    num_samples = int(totals.sum())
    per_class = {name: (float(confusion[i, i] / totals[i]) if totals[i] else None) for i, name in enumerate(labels)}
    present = [value for value in per_class.values() if value is not None]
    return EvaluationReport(
        accuracy=float(np.trace(confusion) / num_samples) if num_samples else 0.0,
        per_class_accuracy=per_class,
        num_samples=num_samples,
        confusion_matrix=confusion.tolist(),
        setup=setup,
        mean_class_accuracy=float(np.mean(present)) if present else None,
    )
