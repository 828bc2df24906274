"""Onboard inference: ONNX models on the C kernel core (native) or the NumPy reference backend.

    from flight.inference import load
    with load("cloud_mask.onnx", num_threads=2) as session:
        mask = session.run({"bands": image})["mask"]

See docs/inference.md for the operators, the opsets (11..21) and what the loader refuses.
"""

from .errors import (
    BackendUnavailableError,
    CorruptModelError,
    DtypeError,
    DynamicShapeError,
    ExternalDataError,
    InferenceError,
    InputError,
    LimitError,
    ModelError,
    NonConstantError,
    OpsetError,
    SessionClosedError,
    ShapeMismatchError,
    UnsupportedAttributeError,
    UnsupportedOperatorError,
)
from .ops import OPSET_MAX, OPSET_MIN, SUPPORTED_OPERATORS
from .session import Backend, Session, SessionInfo, TensorSpec, load

__all__ = [
    "OPSET_MAX",
    "OPSET_MIN",
    "SUPPORTED_OPERATORS",
    "Backend",
    "BackendUnavailableError",
    "CorruptModelError",
    "DtypeError",
    "DynamicShapeError",
    "ExternalDataError",
    "InferenceError",
    "InputError",
    "LimitError",
    "ModelError",
    "NonConstantError",
    "OpsetError",
    "Session",
    "SessionClosedError",
    "SessionInfo",
    "ShapeMismatchError",
    "TensorSpec",
    "UnsupportedAttributeError",
    "UnsupportedOperatorError",
    "load",
]
