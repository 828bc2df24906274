"""One exception family for the inference core: the models, inputs and backends it refuses.

Every refusal of a model is a `ModelError` whose message names where (the node, initialiser or
graph input) and why; anything else escaping `load` or `Session.run` is a bug.
"""


class InferenceError(Exception):
    """Base of every error the inference core raises on purpose."""


class ModelError(InferenceError):
    """A model the loader refuses; `where` names the node, initialiser or input, if there is one."""

    def __init__(self, message: str, *, where: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.where = where

    def __str__(self) -> str:
        return self.message if self.where is None else f"{self.where}: {self.message}"


class CorruptModelError(ModelError):
    """The bytes are not a well-formed ONNX model, or the ONNX checker refuses it."""


class OpsetError(ModelError):
    """The model's ai.onnx opset version is outside the supported range."""


class UnsupportedOperatorError(ModelError):
    """An operator the core does not implement."""


class UnsupportedAttributeError(ModelError):
    """A supported operator with an attribute value or input arrangement the core does not run."""


class DynamicShapeError(ModelError):
    """A shape not fixed at load: a symbolic dimension, an unknown rank, a computed shape."""


class ExternalDataError(ModelError):
    """Tensor data stored outside the model file; the core loads self-contained models only."""


class ShapeMismatchError(ModelError):
    """Shapes an operator cannot combine (channels, broadcasting, a window larger than input)."""


class DtypeError(ModelError):
    """A tensor element type the operator or the core does not support."""


class NonConstantError(ModelError):
    """An input needed at load (weights, shapes, quantisation parameters) is computed at run."""


class LimitError(ModelError):
    """A tensor or the activation arena larger than the core's limits."""


class InputError(InferenceError):
    """`Session.run` refused its inputs: a missing or unknown name, a wrong shape or dtype."""


class BackendUnavailableError(InferenceError):
    """The requested backend cannot run here (the native module is not built)."""


class SessionClosedError(InferenceError):
    """`run` on a session after `close`."""
