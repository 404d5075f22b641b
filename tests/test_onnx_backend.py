"""OnnxBackend: a damaged or foreign .onnx is one line naming the file; threads are honoured."""

from __future__ import annotations

import onnx
import pytest
import torch
from onnx import TensorProto, helper

from segnet.runtime import ModelFileError
from segnet.runtime.onnxrt import OnnxBackend


@pytest.fixture(scope="module")
def model_bytes(onnx_model) -> bytes:
    return onnx_model.read_bytes()


def flipped_weight(data: bytes) -> bytes:
    """``data`` with one byte changed inside the largest weight tensor (still parses)."""
    largest = max(onnx.load_from_string(data).graph.initializer, key=lambda t: len(t.raw_data))
    at = data.find(largest.raw_data) + len(largest.raw_data) // 2
    return data[:at] + bytes([data[at] ^ 0x40]) + data[at + 1 :]


def foreign_onnx() -> bytes:
    """A valid ONNX model that scripts/export.py did not write (no segnet metadata)."""
    x = helper.make_tensor_value_info("image", TensorProto.UINT8, [1, 3, 2, 2])
    y = helper.make_tensor_value_info("logits", TensorProto.UINT8, [1, 3, 2, 2])
    graph = helper.make_graph([helper.make_node("Identity", ["image"], ["logits"])], "g", [x], [y])
    return helper.make_model(graph).SerializeToString()


DAMAGE = {
    "empty": (lambda data: b"", "is an empty file"),
    "truncated": (lambda data: data[: len(data) // 2], "is truncated or corrupt"),
    "text": (lambda data: b"<html>not found</html>\n" * 40, "is truncated or corrupt"),
    "flipped weight": (flipped_weight, "is corrupt (its weights do not match"),
    "foreign": (lambda data: foreign_onnx(), "is not a segnet model (no segnet.format"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_or_foreign_file_is_one_line_naming_it(model_bytes, tmp_path, damage):
    change, message = DAMAGE[damage]
    path = tmp_path / "model.onnx"
    path.write_bytes(change(model_bytes))
    with pytest.raises(ModelFileError) as err:
        OnnxBackend(path)
    assert str(err.value).startswith(f"ONNX model {path} ") and message in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match=f"ONNX model {tmp_path / 'no.onnx'} does not exist"):
        OnnxBackend(tmp_path / "no.onnx")


def test_intact_file_loads_with_the_threads_asked(model_bytes, tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(model_bytes)
    backend = OnnxBackend(path, threads=1)
    assert backend.session.get_session_options().intra_op_num_threads == 1
    assert backend.name == "onnxruntime" and backend.device == torch.device("cpu")
    logits = backend(torch.zeros(2, 3, 5, 7, dtype=torch.uint8))
    assert logits.dtype == torch.float32 and logits.shape == (2, backend.num_classes, 5, 7)
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        OnnxBackend(path, threads=0)
    with pytest.raises(ValueError, match="expected uint8 images"):
        backend(torch.zeros(1, 3, 5, 7))
