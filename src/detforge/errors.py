"""Errors a user can act on.

Every failure caused by user input (a config, a file, a dataset) raises a `DetforgeError`
subclass whose message fits on one line and names the file, the key and the fix. The CLI
prints that line instead of a traceback.
"""


class DetforgeError(Exception):
    """Base class for errors caused by user input rather than by a bug."""


class ConfigError(DetforgeError):
    """A model or training config is malformed: unknown key, wrong type, mismatched parts."""


class WeightsError(DetforgeError):
    """A weights file is missing, unreadable, or does not fit the model."""


class UnsafeCheckpointError(WeightsError):
    """A foreign checkpoint asks the unpickler to run code; it is refused, not loaded."""


class DataError(DetforgeError):
    """A dataset cannot be used: no usable images, class ids that don't fit, missing files."""


class TrainingDivergedError(DetforgeError):
    """The loss stayed NaN/inf for too many steps in a row; the run stops instead of training on garbage."""


class SourceError(DetforgeError):
    """A prediction source (image, folder, glob, video, list file) is missing or holds nothing readable."""


class RunFinishedError(DetforgeError):
    """`--resume` of a run that already ended: there is nothing left to train."""


class UnsafePathError(DetforgeError):
    """A write would go through a symlink or leave the folder it belongs in (e.g. a tampered dataset)."""


class ExportError(DetforgeError):
    """A model cannot be exported, or an exported file cannot be run, with the settings given."""
