"""Load one split's checked labels: from the cache when its inputs are unchanged, else by
reading and validating every file (and then caching the result)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from detforge.data import cache
from detforge.data.formats import format_module
from detforge.data.problems import SKIPPED, UNKNOWN_CLASS, ProblemReport
from detforge.data.records import LabelStore
from detforge.data.spec import DatasetSpec
from detforge.data.validate import check_labels
from detforge.errors import DataError

LOGGER = logging.getLogger(__name__)


@dataclass
class SplitLabels:
    """A split's usable records (`store`) and everything found while checking it (`problems`)."""

    split: str
    store: LabelStore
    problems: ProblemReport
    cache_file: Path
    from_cache: bool = False

    def problems_file(self) -> Path:
        """Where the full problem list of this split is written (beside its cache)."""
        return self.cache_file.with_suffix(".problems.txt")

    def require_trainable(self, spec: DatasetSpec) -> None:
        """Refuse, in one line, a split that cannot be trained or validated on."""
        if len(self.store) == 0:
            skipped = self.problems.count(action=SKIPPED)
            raise DataError(
                f"{spec.path}: split '{self.split}' has no usable images ({skipped} skipped); "
                f"run `detforge data check {spec.path}` to see why"
            )
        unknown = [p for p in self.problems if p.kind == UNKNOWN_CLASS]
        if unknown:
            raise DataError(
                f"{spec.path}: {len(unknown)} label(s) in '{self.split}' use class ids outside names "
                f"(0..{spec.nc - 1}), e.g. {unknown[0].file}; add the names or fix the labels "
                f"(`detforge data check {spec.path}` lists all)"
            )


def load_split(spec: DatasetSpec, split: str, use_cache: bool = True, progress: bool = False) -> SplitLabels:
    """Checked labels of `split` (dataset-level problems stay in `spec.problems`)."""
    module = format_module(spec.format)
    spec.require_split(split)
    path = cache.cache_path(spec.root, spec.format, split)
    key = cache.input_hash(module.split_inputs(spec, split), spec.names, spec.format)
    if use_cache:
        hit = cache.load(path, key)
        if hit is not None:
            LOGGER.debug("labels of %s/%s from cache %s", spec.root, split, path)
            return SplitLabels(split, hit[0], hit[1], path, from_cache=True)
    report = ProblemReport(root=spec.root)
    raws = module.read_split(spec, split, report)
    records = check_labels(raws, spec.nc, report, progress=progress, desc=f"checking {split}")
    store = LabelStore.from_records(records)
    saved = use_cache and cache.save(path, key, store, report, root=spec.root)
    if not saved:
        LOGGER.debug("labels of %s/%s not cached", spec.root, split)
    return SplitLabels(split, store, report, path)
