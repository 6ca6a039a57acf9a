"""Regenerate the README screenshot of Segment all (docs/images/segment_all.png).

The 2D nuclei sample with the docked widget and the bundled model: Segment all on the slice, one
proposal deleted, the rest accepted except one that is being corrected (selected), then a screenshot
of the whole window. Needs a display; on a headless machine:

    xvfb-run -a python scripts/make_segment_all_screenshot.py [--out docs/images/segment_all.png]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "docs" / "images" / "segment_all.png"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="PNG to write")
    parser.add_argument("--model", default="default", help="model name or weights file (default: bundled)")
    args = parser.parse_args(argv)

    import os
    import tempfile

    # A fresh recovery folder: the picture must not show (or leave) journals of other sessions.
    os.environ["NAPARI_FCFI_RECOVERY"] = tempfile.mkdtemp(prefix="fcfi-screenshot-")
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_fcfi.plugin.widget import FCFIWidget
    from napari_fcfi.sample_data import nuclei_2d

    data, kwargs, _ = nuclei_2d()[0]
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1500, 1000)
    viewer.add_image(data, **kwargs)
    widget = FCFIWidget(viewer)
    widget.model_menu.value = args.model
    viewer.window.add_dock_widget(widget, name="FCFI", area="right")
    panel = widget.segment_all_panel
    panel.start(threaded=False)
    proposals = panel.proposals_layer()
    ids = [int(i) for i in sorted(set(proposals.data.ravel()) - {0})]
    print(f"{len(ids)} proposals")
    if len(ids) >= 3:
        panel.delete(ids[0])
        # keep the lower half as proposals so the screenshot shows both layers
        half = proposals.data.shape[0] // 2
        for proposal in ids[1:]:
            rows = (proposals.data == proposal).nonzero()[0]
            if rows.size and rows.mean() < half:
                panel.accept(proposal)
        panel.select(ids[-1])
    viewer.reset_view()
    for _ in range(5):
        QApplication.processEvents()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    viewer.window.screenshot(str(args.out), canvas_only=False)
    print(f"wrote {args.out}")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
