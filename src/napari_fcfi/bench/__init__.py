"""``fcfi bench``: per-click latency, peak memory, FFCM+CFFM cost and engine overhead.

What is measured (every section can be switched off with ``--sections``):

* ``latency`` (:mod:`.forward`): one network forward per click (the network call contract of
  ``docs/architecture.md``, later-click inputs: a previous mask, 2 positive and 1 negative click,
  gate 1) for every requested model at every input size (square ``S x S``), on the CPU (float32, and
  bfloat16 autocast on request) and, when CUDA is available, in float32, float16 and bfloat16
  autocast. Median / p95 over ``--repeats`` timed runs after ``--warmup`` runs. Peak memory: the
  process RSS (sampled every few ms by a background thread) minus the RSS just before the timed
  runs, and ``torch.cuda.max_memory_allocated`` on CUDA.
* ``modules`` (:mod:`.feedback_modules`): the cost of FFCM+CFFM over the same backbone and head,
  measured twice: (a) the full network against the same network rebuilt with ``use_ffcm=False``
  and ``use_cffm=False`` and loaded with the full network's weights (difference of two end-to-end
  medians), (b) forward hooks timing the two modules inside the full network.
* ``engine`` (:mod:`.engine_overhead`): :class:`napari_fcfi.engine.InteractiveSegmenter`
  (microscopy preset) on synthetic uint16 nucleus images of 512x512 and 8192x8192: per click, the
  engine's own time (reading and normalising the crop, resizing, pasting, post-processing) against
  the network time, from the segmenter's ``last_timing`` breakdown.

The end-to-end napari measurement (click event to preview layer updated) is a separate script,
``benchmarks/napari_e2e.py``, because it needs a display (``xvfb-run -a``).

Models (``--models``, :mod:`.models`): ``default`` (the bundled weights; when the file is absent,
the architecture named by ``--bundled-preset`` with random weights), any name of
:data:`napari_fcfi.model.networks.NETWORK_PRESETS` (random weights; ``hrnet18s-ocr48`` is the
official HRNet-18s configuration), ``deeplab-r101`` (the official ResNet-101 DeepLabV3+
configuration, random weights), a registry name or a checkpoint path (via ``load_model``).
Random weights time exactly like trained ones: the work per pixel does not depend on the values.

Modules: :mod:`.cli` (``add_arguments`` / ``run``), :mod:`.machine` (report header),
:mod:`.memory` (RSS sampling), :mod:`.timing` (clocks and statistics), :mod:`.synthetic`
(network inputs, nucleus images, click plans), :mod:`.image_driven_outputs` (stand-in
predictions for random weights), :mod:`.report` (tables) and :mod:`.targets` (the issue's goals).
Nothing is imported here, so ``fcfi --help`` stays cheap.
"""
