"""Mosaic partner diversity, detforge vs Ultralytics, over one training pass of the same data.

For every mosaic each loader builds, records its four photos and reports: the fraction of tiles
that repeat a photo already in the same mosaic (over the pass and in the first batch), and how
many distinct photos the first batch shows. Both loaders run in-process (workers=0) on the same
private copy of the dataset with the same batch size; Ultralytics' choice is read from its
`Mosaic` transform (main image + the `mix_labels` its `get_params` draws), ours from the
dataset's partner choice.

    python bench/mosaic_diversity.py [--data ../shared/datasets/bccd] [--epochs 2] [--json PATH]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from data_throughput import DEFAULT_DATA, detforge_loader, private_copy, quiet_reference, ultralytics_loader
from report import add_row, new_section, publish


def detforge_mosaics(data: Path, imgsz: int, batch: int, epoch: int) -> list[list[str]]:
    loader = detforge_loader(data, imgsz, 0, batch)
    dataset, mosaics = loader.dataset, []
    choose = dataset._mosaic_partners

    def logged(index, rng):
        partners = choose(index, rng)
        mosaics.append([dataset.store.path(i) for i in (index, *partners)])
        return partners

    dataset._mosaic_partners = logged
    loader.set_epoch(epoch)
    for _ in loader:
        pass
    return mosaics


def ultralytics_mosaics(data: Path, imgsz: int, batch: int, epochs: int) -> list[list[list[str]]]:
    from ultralytics.data.augment import Mosaic

    mosaics: list[list[str]] = []
    draw = Mosaic.get_params

    def logged(self, labels):
        params = draw(self, labels)
        mosaics.append([labels["im_file"], *(m["im_file"] for m in params["mix_labels"])])
        return params

    Mosaic.get_params = logged
    try:
        loader = ultralytics_loader(data, imgsz, 0, batch)
        passes = []
        for _ in range(epochs):  # one loader, as in training: its buffer carries over between epochs
            start = len(mosaics)
            for _ in loader:
                pass
            passes.append(mosaics[start:])
    finally:
        Mosaic.get_params = draw
    return passes


def repeated(mosaics: list[list[str]]) -> float:
    """Fraction of tiles showing a photo already shown by an earlier tile of the same mosaic."""
    return sum(len(m) - len(set(m)) for m in mosaics) / max(1, sum(len(m) for m in mosaics))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write the figures here for bench/report.py")
    args = parser.parse_args()
    if not quiet_reference(args.data):
        return 2
    section = new_section(
        "mosaic", "Mosaic partner diversity", "python bench/mosaic_diversity.py",
        f"{args.data.name} train, imgsz {args.imgsz}, batch {args.batch}, mosaic 1.0, one loader per framework "
        "(workers 0) over consecutive epochs; the samples are the epochs.", ["measure"],
        {"repeated tiles %": False, "first-batch repeated tiles %": False, "first-batch distinct photos": True})
    with tempfile.TemporaryDirectory() as tmp:
        data = private_copy(args.data, Path(tmp))
        ours = [detforge_mosaics(data, args.imgsz, args.batch, epoch) for epoch in range(args.epochs)]
        theirs = ultralytics_mosaics(data, args.imgsz, args.batch, args.epochs)

    def figures(passes: list[list[list[str]]]) -> dict[str, list[float]]:
        return {
            "repeated tiles %": [100 * repeated(p) for p in passes],
            "first-batch repeated tiles %": [100 * repeated(p[:args.batch]) for p in passes],
            "first-batch distinct photos": [float(len({f for m in p[:args.batch] for f in m})) for p in passes],
        }

    mine, reference = figures(ours), figures(theirs)
    add_row(section, {"measure": "per epoch"},
            {metric: {"detforge": mine[metric], "reference": reference[metric]} for metric in mine})
    publish(section, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
