"""group3ad fit: fit Group3AD on one category's training clouds and save the model file."""

from __future__ import annotations

import os

from ..cli_options import add_common, config_from_args
from ..errors import UserError

NAME = "fit"
HELP = "fit Group3AD on one category of a Real3D-AD-layout dataset and save the model"


def add_arguments(p) -> None:
    p.add_argument("--data", required=True, metavar="ROOT", help="dataset root (<root>/<category>/train/...)")
    p.add_argument("--category", required=True, help="category to fit")
    p.add_argument("--out", metavar="MODEL", help="model file to write (default runs/<category>.g3ad)")
    add_common(p)


def run(args) -> int:
    from ..data import DataError, open_dataset
    from ..pipeline import Group3AD
    from ..progress import progress

    cfg = config_from_args(args)
    try:
        ds = open_dataset(args.data)
        cats = ds.categories()
        if args.category not in cats:
            raise UserError(f"unknown category {args.category!r} in {args.data}; categories there: {', '.join(cats)}")
        samples = ds.train(args.category)
        if not samples:
            raise UserError(f"category {args.category!r} has no training clouds in {args.data}")
        clouds = [s.load(drop_nan=True) for s in progress(samples, "load train")]
    except DataError as e:
        raise UserError(str(e)) from None
    model = Group3AD(cfg).fit(clouds)
    out = args.out or os.path.join("runs", f"{args.category}.g3ad")
    model.save(out)
    print(f"fitted {args.category} on {len(clouds)} clouds (template {samples[0].name}); wrote {out}")
    return 0
