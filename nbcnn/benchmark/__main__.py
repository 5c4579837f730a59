"""``python -m nbcnn.benchmark``: the kernel suite without the ``nbcnn`` command (``nbcnn bench`` has
every option; this one has --shapes, --ops, --repeat, --backend, --tiny and --json)."""

from __future__ import annotations

import argparse
import json

from . import __doc__ as package_doc
from .report import format_table
from .runner import run_suite
from .shapes import ALL_OPS


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m nbcnn.benchmark", description=package_doc.split("\n\n")[0])
    p.add_argument("--shapes", default="")
    p.add_argument("--ops", default=",".join(ALL_OPS))
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--backend", default="cpu")
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    names = [n for n in args.shapes.split(",") if n] or None
    result = run_suite(args.backend, names, args.repeat, args.tiny, tuple(args.ops.split(",")))
    print(json.dumps(result, indent=1) if args.json else format_table(result))


if __name__ == "__main__":
    main()
