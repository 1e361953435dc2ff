"""Which exported format a file is — decided by parsing it, with bounds — and opening it.

A downloaded model file is treated as hostile: an ONNX file must be at most `MAX_ONNX_BYTES`,
parse as an `onnx.ModelProto`, carry detforge metadata, and may name external tensor data
only inside its own folder (no absolute paths, no `..`), `MAX_EXTERNAL_BYTES` in all. An
OpenVINO IR is an XML file whose root is `<net>` with its `.bin` beside it. A TorchScript file
is a zip archive with TorchScript's `code/` and `constants.pkl` entries and detforge's extra
`detforge.json`; TorchScript runs a program, so only load files you trust.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from detforge.errors import ExportError

MAX_ONNX_BYTES = 1 << 30
MAX_EXTERNAL_BYTES = 4 << 30
MAX_XML_BYTES = 64 << 20
RUNTIME_FORMATS = ("onnx", "openvino", "torchscript")


def sniff(path: str | Path) -> str | None:
    """'onnx', 'openvino', 'torchscript' or None, from the file's content (and, for OpenVINO, its folder)."""
    path = Path(path)
    if path.is_dir():
        return "openvino" if _folder_xml(path) is not None else None
    if not path.is_file():
        return None
    with path.open("rb") as fh:
        head = fh.read(512)
    if head.lstrip().startswith(b"<?xml") or head.lstrip().startswith(b"<net"):
        return "openvino" if b"<net" in head else None
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError):
            return None
        if any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names):
            return "torchscript"
        return None
    if head[:1] == b"\x08" and path.stat().st_size <= MAX_ONNX_BYTES:  # field 1 (ir_version), varint
        try:
            read_onnx_checked(path)
        except ExportError:
            return None
        return "onnx"
    return None


def read_onnx_checked(path: str | Path):
    """Parse an ONNX file under the bounds above (tensor data not loaded); returns the `ModelProto`."""
    try:
        import onnx
    except ImportError:
        raise ExportError("onnx is not installed; pip install 'detforge[export]'") from None
    from google.protobuf.message import DecodeError

    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: no such file; check the path")
    size = path.stat().st_size
    if size > MAX_ONNX_BYTES:
        raise ExportError(f"{path}: {size} bytes is more than an ONNX model may have here ({MAX_ONNX_BYTES})")
    try:
        proto = onnx.load_model(str(path), load_external_data=False)
    except (DecodeError, ValueError, OSError, RuntimeError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ExportError(f"{path}: not a readable ONNX file ({reason})") from None
    if not proto.graph.node or not proto.graph.input:
        raise ExportError(f"{path}: not an ONNX model (no graph); pass a file written by `detforge export`")
    _check_external_data(proto, path)
    if not any(p.key == "format" and p.value == "detforge" for p in proto.metadata_props):
        raise ExportError(f"{path}: an ONNX file without detforge metadata (class names, strides); export it with "
                          "`detforge export --format onnx`")
    return proto


def _check_external_data(proto, path: Path) -> None:
    from onnx import TensorProto

    folder = path.resolve().parent
    total = 0
    tensors = list(proto.graph.initializer)
    for node in proto.graph.node:
        tensors.extend(attr.t for attr in node.attribute if attr.HasField("t"))
    for tensor in tensors:
        if tensor.data_location != TensorProto.EXTERNAL:
            continue
        info = {entry.key: entry.value for entry in tensor.external_data}
        location = info.get("location", "")
        target = (folder / location).resolve()
        if not location or os.path.isabs(location) or not target.is_relative_to(folder) or not target.is_file():
            raise ExportError(f"{path}: tensor {tensor.name!r} points at external data {location!r} outside the "
                              "model's folder (or missing); refusing to load it")
        total += int(info.get("length", target.stat().st_size))
        if total > MAX_EXTERNAL_BYTES:
            raise ExportError(f"{path}: external tensor data exceeds {MAX_EXTERNAL_BYTES} bytes; refusing to load it")


def _folder_xml(folder: Path) -> Path | None:
    xmls = sorted(folder.glob("*.xml"))
    return xmls[0] if len(xmls) == 1 else None


def openvino_paths(path: str | Path) -> tuple[Path, Path]:
    """(`.xml`, `.bin`) of an OpenVINO IR given the xml file or its folder, checked to exist and be bounded."""
    path = Path(path)
    xml = _folder_xml(path) if path.is_dir() else path
    if xml is None or not xml.is_file():
        raise ExportError(f"{path}: no OpenVINO model (.xml) here; pass the .xml file or a folder holding one")
    weights = xml.with_suffix(".bin")
    if not weights.is_file():
        raise ExportError(f"{xml}: its weights {weights.name} are missing; keep the .xml and .bin together")
    if xml.stat().st_size > MAX_XML_BYTES or weights.stat().st_size > MAX_EXTERNAL_BYTES:
        raise ExportError(f"{xml}: the IR is larger than detforge loads ({MAX_XML_BYTES} B xml, "
                          f"{MAX_EXTERNAL_BYTES} B weights)")
    return xml, weights


def load_runtime(path: str | Path, **options):
    """Open an exported detector (ONNX, OpenVINO IR, TorchScript) as a `RuntimeModel`."""
    from detforge.export import runtime

    kind = sniff(path)
    if kind == "onnx":
        return runtime.OnnxRuntimeModel(path, **options)
    if kind == "openvino":
        return runtime.OpenVinoModel(path, **options)
    if kind == "torchscript":
        return runtime.TorchScriptModel(path)
    if Path(path).suffix == ".onnx":
        read_onnx_checked(path)  # raises the precise reason
    raise ExportError(f"{path}: not an exported detforge model (ONNX, OpenVINO IR or TorchScript)")


def read_metadata(path: str | Path) -> dict[str, str] | None:
    """The detforge metadata of an exported file without compiling it, or None for other files."""
    kind = sniff(path)
    if kind == "onnx":
        return {p.key: p.value for p in read_onnx_checked(path).metadata_props}
    if kind == "openvino":
        import openvino as ov

        xml, _ = openvino_paths(path)
        model = ov.Core().read_model(str(xml))
        info = model.get_rt_info()
        if "detforge" not in list(info.keys()):
            return {}
        return {str(k): model.get_rt_info(["detforge", str(k)]).astype(str) for k in dict(info["detforge"])}
    return None


def onnx_sniffer(head: bytes, size: int) -> bool:
    """`detforge.load`'s first look: a protobuf starting with ModelProto field 1 (ir_version, a small varint)."""
    return len(head) > 2 and head[0] == 0x08 and 1 <= head[1] <= 0x20 and size <= MAX_ONNX_BYTES


def openvino_sniffer(head: bytes, size: int) -> bool:
    text = head.lstrip()
    return text.startswith(b"<?xml") and b"<net" in text and size <= MAX_XML_BYTES


def register_loaders() -> bool:
    """Plug ONNX and OpenVINO files into `detforge.load` (and so `predict/val --weights`), where the
    io package offers the hook; returns whether it did. The loaders parse the whole file (bounded)."""
    try:
        from detforge.io import register_loader
    except ImportError:
        return False
    register_loader("onnx", lambda path, limits=None: load_runtime(path), onnx_sniffer)
    register_loader("openvino", lambda path, limits=None: load_runtime(path), openvino_sniffer)
    return True
