"""The evaluation harness: methods x categories on a Real3D-AD-layout dataset.

For each category: fit every method on the training clouds (sorted; the first is the
template), score every test cloud, fuse the branches (Reg3D-AD's test-set min-max fusion by
default, ``fusion="train"`` for the single-cloud one), compute O-/P-AUROC and AUPR. Methods of
one category share a ``Workspace``: registrations of each cloud and the encoders (pretrained,
IUN/IAN-trained) are computed once. Writes ``results.json``, ``results.md`` (the paper's
Tables 1-4), ``roc_<category>.png`` and ``scored_<category>.png`` into the output folder.
"""

from __future__ import annotations

import copy
import json
import os
import time

import numpy as np

from .baselines import FPFHMethod
from .config import FUSIONS, Group3ADConfig
from .errors import UserError
from .fusion import fuse
from .metrics import category_metrics, markdown_tables, mean_metrics
from .pipeline import Group3AD, centred, points_of
from .progress import progress
from .registration import TemplateRegistrar


def _variant(cfg: Group3ADConfig, **changes) -> Group3ADConfig:
    out = copy.deepcopy(cfg)
    reg = changes.pop("registration", None)
    for k, v in changes.items():
        setattr(out, k, v)
    for k, v in (reg or {}).items():
        setattr(out.registration, k, v)
    return out


#: name -> factory(config): the paper's Table 1 baselines and Tables 5-6 ablations.
METHODS = {
    "BTF(FPFH)": lambda c: FPFHMethod(c, "btf"),
    "PatchCore(FPFH)": lambda c: FPFHMethod(c, "patchcore"),
    "PatchCore(FPFH+Raw)": lambda c: FPFHMethod(c, "patchcore_raw"),
    "PatchCore(PointMAE)": lambda c: Group3AD(_variant(
        c, use_iun_ian=False, use_agcs=False, use_coordinates=False, registration={"enabled": False})),
    "Group3AD w/o IUN&IAN": lambda c: Group3AD(_variant(c, use_iun_ian=False)),
    "Group3AD w/o AGCS": lambda c: Group3AD(_variant(c, use_agcs=False)),
    "Group3AD": lambda c: Group3AD(c),
}
DEFAULT_METHODS = tuple(METHODS)


class Workspace:
    """Per-category cache shared by the methods of one evaluation."""

    def __init__(self):
        self._registrars = {}
        self._registered = {}
        self._encoders = {}

    @staticmethod
    def _regkey(cfg: Group3ADConfig):
        return json.dumps(vars(cfg.registration), sort_keys=True), cfg.seed

    def registrar(self, template: np.ndarray, cfg: Group3ADConfig) -> TemplateRegistrar:
        key = self._regkey(cfg)
        if key not in self._registrars:
            self._registrars[key] = TemplateRegistrar(template, cfg.registration, cfg.seed)
        return self._registrars[key]

    def registered(self, name, points: np.ndarray, registrar: TemplateRegistrar) -> np.ndarray:
        key = (id(registrar), name)
        if key not in self._registered:
            self._registered[key] = registrar(points)
        return self._registered[key]

    def encoder(self, cfg: Group3ADConfig, tensors, device):
        from .encoding import pretrained_encoder, train_iun_ian

        # The training clouds differ between methods only by their registration (or none):
        # an encoder pretrained on unregistered clouds must not serve a registered method.
        data = self._regkey(cfg) if cfg.registration.enabled else "unregistered"
        base = (data, cfg.encoder_checkpoint, cfg.pretrain_epochs,
                json.dumps(cfg.pretrain_options, sort_keys=True), cfg.group_size, cfg.seed, str(device))
        if base not in self._encoders:
            self._encoders[base] = pretrained_encoder(cfg, tensors, device)
        if not (cfg.use_iun_ian and cfg.train_epochs > 0):
            return self._encoders[base]
        key = base + (cfg.train_epochs, cfg.learning_rate, cfg.n_groups_train,
                      json.dumps(cfg.train_options, sort_keys=True))
        if key not in self._encoders:
            self._encoders[key] = train_iun_ian(self._encoders[base], cfg, tensors, device)
        return self._encoders[key]


def _load(sample):
    from .data import DataError

    try:
        return sample.load(drop_nan=True)
    except DataError as e:
        raise UserError(str(e)) from None


def evaluate(root: str, config: Group3ADConfig, methods=DEFAULT_METHODS, categories=None,
             out_dir: str | None = None, fusion: str | None = None, data_name: str = "Real3D-AD",
             show_progress: bool = True, figures: bool = True, log=print) -> dict:
    """Run ``methods`` on ``categories`` (default: all) of the dataset at ``root``.

    Returns {"config", "fusion", "methods": {name: {"categories": {cat: metrics}, "mean":
    metrics, "seconds": float, "objects": {cat: [{"name", "anomalous", "score", "branches"},
    ...]}, "by_fusion": {fusion: {"categories", "mean"}}}}}: "objects" holds every test cloud's
    fused object score and each branch's raw one (e.g. {"coord": .., "feature": ..}), to see
    which clouds rank where and why; "by_fusion" the metrics of the same branch scores under
    each of config.FUSIONS (``fusion``'s equal "categories"/"mean"). With ``out_dir`` also
    writes JSON, Markdown and PNGs."""
    from .data import DataError, open_dataset

    fusion = fusion or config.fusion
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise UserError(f"unknown method(s) {unknown}; known: {list(METHODS)}")
    try:
        ds = open_dataset(root)
        available = ds.categories()
    except DataError as e:
        raise UserError(str(e)) from None
    cats = list(categories) if categories else list(available)
    bad = [c for c in cats if c not in available]
    if bad:
        raise UserError(f"unknown category {bad[0]!r} in {root}; categories there: {', '.join(available)}")
    results = {m: {"categories": {}, "seconds": 0.0, "objects": {},
                   "by_fusion": {f: {"categories": {}} for f in FUSIONS}} for m in methods}
    curves = {}
    for cat in progress(cats, "categories", show_progress):
        train, test = ds.train(cat), ds.test(cat)
        if not train:
            raise UserError(f"category {cat!r} has no training clouds in {root}")
        if not test:
            raise UserError(f"category {cat!r} has no test clouds in {root}")
        train_clouds = [_load(s) for s in progress(train, f"{cat}: load train", show_progress)]
        test_clouds = [_load(s) for s in progress(test, f"{cat}: load test", show_progress)]
        obj_labels = np.array([int(s.is_anomalous) for s in test])
        point_labels = [np.asarray(c.labels) for c in test_clouds]
        ws = Workspace()
        curves[cat] = {}
        for name in methods:
            t0 = time.perf_counter()
            method = METHODS[name](config).fit([c.points for c in train_clouds], workspace=ws,
                                              show_progress=show_progress)
            branches = []
            for s, c in zip(test, progress(test_clouds, f"{cat}: {name}", show_progress)):
                registered = None
                if isinstance(method, Group3AD) and method.config.registration.enabled:
                    registered = ws.registered(("test", s.name), centred(points_of(c.points)), method.registrar)
                branches.append(method.score_branches(c.points, registered=registered))
            pts, obj = fuse(fusion, branches, method.stats)
            results[name]["seconds"] += time.perf_counter() - t0
            results[name]["categories"][cat] = category_metrics(obj_labels, obj, point_labels, pts)
            for other in FUSIONS:  # the same branch scores under every fusion, for comparison
                if other == fusion:
                    m = results[name]["categories"][cat]
                else:
                    other_pts, other_obj = fuse(other, branches, method.stats)
                    m = category_metrics(obj_labels, other_obj, point_labels, other_pts)
                results[name]["by_fusion"][other]["categories"][cat] = m
            results[name]["objects"][cat] = [
                {"name": s.name, "anomalous": bool(label), "score": float(score),
                 "branches": {b: float(v[1]) for b, v in sorted(sample.items())}}
                for s, label, score, sample in zip(test, obj_labels, obj, branches)]
            curves[cat][name] = (obj_labels, np.asarray(obj), point_labels, pts)
            log(f"{cat:>12s}  {name:<22s} " + "  ".join(
                f"{k} {v:.3f}" for k, v in results[name]["categories"][cat].items()))
        if out_dir and figures:
            from . import figures as fig

            fig.roc_figure(os.path.join(out_dir, f"roc_{cat}.png"), cat, curves[cat])
            shown = methods[-1]
            fig.scored_cloud_figure(os.path.join(out_dir, f"scored_{cat}.png"), test, test_clouds,
                                    curves[cat][shown][3], f"{cat}: {shown}")
        curves[cat] = None  # point scores of a category are not needed past its figures
    for name in methods:
        results[name]["mean"] = mean_metrics(results[name]["categories"])
        for f in FUSIONS:
            by = results[name]["by_fusion"][f]
            by["mean"] = mean_metrics(by["categories"])
    report = {"config": config.to_dict(), "fusion": fusion, "data": os.path.abspath(root),
              "methods": results}
    if out_dir:
        write_report(report, out_dir, data_name)
    return report


def fusion_table(methods: dict) -> str:
    """Mean O-AUROC / P-AUROC of each method under each fusion (Markdown)."""
    head = "| Method | " + " | ".join(f"{f} O-AUROC | {f} P-AUROC" for f in FUSIONS) + " |"
    rows = [head, "|---" * (1 + 2 * len(FUSIONS)) + "|"]
    for name, res in methods.items():
        cells = []
        for f in FUSIONS:
            mean = res.get("by_fusion", {}).get(f, {}).get("mean", {})
            cells += [f"{mean[k]:.3f}" if k in mean else "-" for k in ("O-AUROC", "P-AUROC")]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return ("### The same branch scores under each fusion (means over categories)\n\n"
            "testset: Reg3D-AD's min-max over the test set; rank: ranks over the test set; "
            "train: single-cloud, normalised by training statistics.\n\n" + "\n".join(rows) + "\n")


def write_report(report: dict, out_dir: str, data_name: str = "Real3D-AD") -> tuple[str, str]:
    os.makedirs(out_dir, exist_ok=True)
    jpath, mpath = os.path.join(out_dir, "results.json"), os.path.join(out_dir, "results.md")
    with open(jpath, "w") as f:
        json.dump(report, f, indent=1, sort_keys=False, default=float)
    with open(mpath, "w") as f:
        f.write(f"# Results on {data_name} ({report['fusion']} fusion)\n\n")
        f.write(markdown_tables(report["methods"], data_name))
        f.write("\n" + fusion_table(report["methods"]))
    return jpath, mpath
