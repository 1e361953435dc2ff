"""What a downloaded file (dataset, config) may declare, and the YAML reader that holds it to that.

A data.yaml, a model config or a label file comes from someone else. None of them may make
detforge allocate, loop or print without bound: the numbers below are far above anything a real
dataset or model needs (LVIS has 1,203 classes; a YAML config is a few KB) and far below what
would hurt the machine. Each limit's error names the file and the limit.

YAML aliases (`*name`) are references: a 1 KB file of nested aliases (a "billion laughs") stands
for 10^9 nodes, which whoever walks it (str(), json.dumps, a names table) then expands. `load_yaml`
counts the nodes a document stands for *with* aliases expanded, without expanding them, and refuses
it beyond `MAX_YAML_NODES`; recursive aliases and nesting too deep to parse are refused too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from detforge.errors import ConfigError, DetforgeError
from detforge.fsutil import read_limited

MAX_CLASSES = 10_000  # class count (nc, num_classes, len(names))
MAX_NAME_CHARS = 1_000  # one class name
MAX_SCALE = 8.0  # a model scale's depth and width multipliers (YOLOv8x: 1.0, 1.25)
MAX_CHANNELS = 8_192  # a model scale's channel cap (YOLOv8x: 512)
MAX_PART_INT = 65_536  # any whole number among a model part's arguments (channels, reg_max, repeats)
MAX_PART_ITEMS = 1_024  # any list among a model part's arguments
MAX_PARAMS = 500_000_000  # parameters of a model built from a config (YOLOv7-E6E: 151M), counted on the meta device
MAX_YAML_BYTES = 4 * 2**20  # a data.yaml, model or training config
MAX_YAML_NODES = 200_000  # nodes of one YAML document with every alias expanded
MAX_LABEL_FILE_BYTES = 8 * 2**20  # one YOLO label file (~100k boxes, or long polygons)
MAX_LABELS_PER_IMAGE = 50_000  # label lines read from one file; the rest is reported and dropped


def load_yaml(text: str, source: str, error: type[DetforgeError] = ConfigError) -> Any:
    """Parse one YAML document safely (only plain types, bounded size); `error(one line)` on any problem."""
    if len(text) > MAX_YAML_BYTES:
        raise error(f"{source}: {len(text):,} characters of YAML, over the {MAX_YAML_BYTES:,} limit")
    try:
        loader = yaml.SafeLoader(text)  # its reader refuses control characters already here
    except yaml.YAMLError as err:
        raise error(f"{source}: not valid YAML ({' '.join(str(err).split())[:200]}); fix its syntax") from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node, {}, set(), source, error)
        return loader.construct_document(node)
    except (yaml.YAMLError, ValueError, OverflowError) as err:  # ValueError: e.g. an int of 5,000 digits
        raise error(f"{source}: not valid YAML ({' '.join(str(err).split())[:200]}); fix its syntax") from None
    except RecursionError:
        raise error(f"{source}: YAML nested too deeply; flatten it") from None
    finally:
        loader.dispose()


def read_yaml(path: str | Path, error: type[DetforgeError] = ConfigError) -> Any:
    """`load_yaml` of a file, refusing one over `MAX_YAML_BYTES` before reading it."""
    try:
        text = read_limited(path, MAX_YAML_BYTES).decode("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise error(f"{path}: cannot be read as YAML ({err.__class__.__name__}: {short(err, 120)}); "
                    "check the file") from None
    return load_yaml(text, str(path), error)


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_: set[int], source: str,
                   error: type[DetforgeError]) -> int:
    """Nodes `node` stands for with aliases expanded; each node object is visited once."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_:
        raise error(f"{source}: recursive YAML alias; a config cannot contain itself")
    open_.add(key)
    if isinstance(node, yaml.MappingNode):
        children = [child for pair in node.value for child in pair]
    elif isinstance(node, yaml.SequenceNode):
        children = node.value
    else:
        children = []
    total = 1
    for child in children:
        total += _expanded_size(child, sizes, open_, source, error)
        if total > MAX_YAML_NODES:
            raise error(f"{source}: YAML stands for over {MAX_YAML_NODES:,} values once its aliases are "
                        "expanded (an alias bomb?); write the values out")
    open_.discard(key)
    sizes[key] = total
    return total


def check_classes(count: object, source: str, key: str, error: type[DetforgeError]) -> None:
    """Refuse a class count that is not an int in 1..MAX_CLASSES."""
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_CLASSES:
        raise error(f"{source}: {key} = {short(count)}; expected a whole number of classes from 1 to {MAX_CLASSES:,}")


def check_sizes(value: object, where: str, error: type[DetforgeError]) -> None:
    """Refuse a part argument holding a whole number beyond +-MAX_PART_INT or a list over MAX_PART_ITEMS items:
    the builder would allocate (or loop) in proportion to it."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_PART_INT:
        raise error(f"{where} = {short(value)}; model part numbers are at most {MAX_PART_INT:,}")
    if isinstance(value, (list, tuple, dict)):
        if len(value) > MAX_PART_ITEMS:
            raise error(f"{where}: {len(value):,} items, over the {MAX_PART_ITEMS:,}-item limit")
        for item in value.values() if isinstance(value, dict) else value:
            check_sizes(item, where, error)


def short(value: object, limit: int = 40) -> str:
    """repr(value) cut to `limit` characters (and safe for ints too long to print)."""
    try:
        text = repr(value)
    except ValueError:
        text = f"<{type(value).__name__} too long to show>"
    return text if len(text) <= limit else text[:limit] + "..."
