"""group3ad score: score one point-cloud file with a fitted model."""

from __future__ import annotations

import json
import os
import sys

NAME = "score"
HELP = "score one cloud (.pcd/.ply/.txt): a PLY coloured by anomaly score and a JSON summary"


def add_arguments(p) -> None:
    p.add_argument("file", metavar="FILE", help="point cloud to score")
    p.add_argument("--model", required=True, help="model file written by `group3ad fit`")
    p.add_argument("--out", metavar="PREFIX", help="output prefix (default: FILE without extension + .scored)")
    p.add_argument("--device", help="auto (default: the model's), cpu or cuda[:N]")
    p.add_argument("--png", action="store_true", help="also render PREFIX.png")


def run(args) -> int:
    from ..cloud_io import read_points, write_scored_ply
    from ..pipeline import Group3AD

    model = Group3AD.load(args.model, device=args.device)
    pts = read_points(args.file)
    point_scores, object_score, registration = model.score_with_registration(pts)
    prefix = args.out or os.path.splitext(args.file)[0] + ".scored"
    ply = write_scored_ply(prefix + ".ply", pts, point_scores)
    summary = {
        "file": os.path.abspath(args.file), "model": os.path.abspath(args.model),
        "n_points": int(len(pts)), "object_score": float(object_score),
        "point_score_min": float(point_scores.min()), "point_score_max": float(point_scores.max()),
        "point_score_mean": float(point_scores.mean()),
        "fraction_above_1": float((point_scores > 1.0).mean()),
        "note": "scores are normalised with the model's training statistics: 1 = the 99th "
                "percentile of normal training distances above their median",
        "registration": None,
    }
    min_fitness = model.config.registration.min_fitness
    if registration is not None:
        summary["registration"] = {
            "fitness": registration.fitness, "rmse": registration.rmse,
            "attempts": registration.attempts, "flipped_normals": registration.flipped,
            "found_by": registration.found_by,
            "aligned": registration.fitness >= min_fitness,
        }
        if registration.fitness < min_fitness:
            print(f"warning: registration fitness {registration.fitness:.3f} is below "
                  f"{min_fitness}: the cloud may not be aligned with the template, so its scores "
                  f"are unreliable (is it a part of this category?)", file=sys.stderr)
    with open(prefix + ".json", "w") as f:
        json.dump(summary, f, indent=1)
    if args.png:
        from ..figures import render_scored_cloud

        render_scored_cloud(prefix + ".png", pts, point_scores, None, os.path.basename(args.file))
    print(f"object score {object_score:.4f}; wrote {ply} and {prefix}.json")
    return 0
