"""Model parts. Importing this package registers every packaged backbone, neck and head."""

from detforge.models import backbones, heads, necks  # noqa: F401  (registration side effect)
