#!/usr/bin/env python
"""Fidelity checks against the official FCFI code (github.com/veizgyauzgyauz/FCFI), one sub-command each.

    hrnet        FCFIHRNet vs the official HRNetModel, weight for weight (random weights and inputs)
    deeplab      FCFIDeepLab vs the official DeeplabModel
    protocol     the engine's paper preset vs the official evaluation predictor, one shared network
    checkpoints  the paper preset vs the official predictor on official-format checkpoint files

The official code is not part of this repository: every check imports it from a checkout given with
``--official-repo`` (shared setup: ``scripts/fidelity/checkout.py``). Each check exits 1 when a
difference exceeds its ``--tolerance``. Example::

    mkdir -p /tmp/official && git -C <clone of veizgyauzgyauz/FCFI> archive HEAD | tar -x -C /tmp/official
    python scripts/check_official.py hrnet --official-repo /tmp/official
    python scripts/check_official.py protocol --official-repo /tmp/official --clicks 5
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fidelity import checkpoints, deeplab, hrnet, protocol

CHECKS = {"hrnet": hrnet, "deeplab": deeplab, "protocol": protocol, "checkpoints": checkpoints}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="check", required=True, metavar="CHECK")
    for name, module in CHECKS.items():
        summary = (module.__doc__ or "").split("\n", 1)[0].split(": ", 1)[-1]
        sub = commands.add_parser(
            name,
            help=summary,
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.add_argument("--official-repo", type=Path, required=True, help="checkout of veizgyauzgyauz/FCFI")
        module.add_arguments(sub)
    args = parser.parse_args(argv)
    return CHECKS[args.check].run(args)


if __name__ == "__main__":
    raise SystemExit(main())
