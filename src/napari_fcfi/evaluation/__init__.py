"""Evaluation room: robot user, NoC/NoF/IoU metrics, dataset readers, classical baselines, ``fcfi eval``.

Python API::

    from napari_fcfi.evaluation import evaluate, open_dataset, split_instance_folder
    train_ids, val_ids = split_instance_folder("../shared/data/dsb2018_train", val_fraction=0.15, seed=0)
    data = open_dataset("../shared/data/dsb2018_train", split="val", max_objects=5)
    result = evaluate(model_or_factory, data, max_clicks=20)   # -> EvalResult
    result.summary["noc@90"], result.iou_curve()

Modules: :mod:`.robot`, :mod:`.metrics`, :mod:`.samples`, :mod:`.datasets` (with :mod:`.layouts`,
:mod:`.splits`, :mod:`.tiff_stack`), :mod:`.baselines`, :mod:`.segmenters`, :mod:`.runner`, :mod:`.results`,
:mod:`.plots`, :mod:`.cli`; stacks (propagation vs every slice from scratch, ``fcfi eval --stacks``):
:mod:`.stacks` (the stack robot) and :mod:`.stack_data` (the test stacks). Nothing here imports napari
or Qt.
"""

from .baselines import BASELINES, GeodesicSegmenter, RandomWalkerSegmenter
from .datasets import open_dataset
from .layouts import instance_folder_ids
from .results import EvalResult, ObjectResult, format_table
from .robot import Click, RobotUser
from .runner import evaluate
from .samples import EvalDataset, Sample
from .segmenters import EngineSegmenter, resolve_segmenter
from .splits import split_ids, split_instance_folder

__all__ = [
    "BASELINES",
    "Click",
    "EngineSegmenter",
    "EvalDataset",
    "EvalResult",
    "GeodesicSegmenter",
    "ObjectResult",
    "RandomWalkerSegmenter",
    "RobotUser",
    "Sample",
    "evaluate",
    "format_table",
    "instance_folder_ids",
    "open_dataset",
    "resolve_segmenter",
    "split_ids",
    "split_instance_folder",
]
