"""Whole networks (hil.models) on both backends against the ONNX reference, float and int8 QDQ.

The networks run at opsets 11, 13 (the tests' default 17) and 21 too; below 14 against ONNX Runtime,
as the reference's BatchNormalization for opsets 9..13 disagrees with the specification.

Tolerances: float networks rtol 1e-4, atol 1e-5 (scaled by the output's magnitude) against the
reference, and the native backend against the NumPy one likewise. Quantised networks: the NumPy
backend runs the QDQ graph literally and must equal the reference to float rounding (1e-6); the
native backend maps Conv/Gemm onto int8 kernels whose requantisation rounds half away from zero
where the reference's QuantizeLinear rounds half to even after a float convolution, so a tensor
may land one quantisation step away. Deep nets amplify such a step (a random-weight MobileNet is
chaotic in the quantised domain), so the check is per tensor: every quantised activation is
exposed as an output, and the first one that differs from the reference differs by at most one
step; shallow nets (the U-Net here) must then stay within one step of the output scale.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
from inference_oracle import BACKENDS, assert_close, random_feeds, reference, require, run

from flight.inference import load
from hil import models

MOBILENET = {"width": 0.35, "input_size": 64, "num_classes": 10}
UNET = {"input_size": 32, "base_channels": 4, "depth": 2}


@pytest.fixture(scope="module")
def mobilenet():
    return models.mobilenet_v2(**MOBILENET)


@pytest.fixture(scope="module")
def unet():
    return models.cloud_mask_unet(**UNET)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("net", ["mobilenet", "unet"])
def test_float_network_matches_reference(backend, net, request):
    require(backend)
    model = request.getfixturevalue(net)
    feeds = random_feeds(model)
    (expected,) = reference(model, feeds)
    (actual,) = run(model, feeds, backend, num_threads=2)
    assert_close(actual, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("opset", [11, 13, 21])
def test_networks_run_across_the_supported_opsets(backend, opset):
    require(backend)
    for model in (
        models.mobilenet_v2(opset=opset, **MOBILENET),
        models.cloud_mask_unet(opset=opset, **UNET),
    ):
        feeds = random_feeds(model)
        if opset < 14:  # the reference's BatchNormalization-9 (opsets 9..13) is wrong
            session = onnxruntime.InferenceSession(
                model.SerializeToString(), providers=["CPUExecutionProvider"]
            )
            expected = session.run(None, feeds)[0]
        else:
            (expected,) = reference(model, feeds)
        (actual,) = run(model, feeds, backend)
        assert_close(actual, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("net", ["mobilenet", "unet"])
def test_native_network_matches_numpy_backend(net, request):
    require("native")
    model = request.getfixturevalue(net)
    feeds = random_feeds(model, seed=3)
    (expected,) = run(model, feeds, "numpy")
    (actual,) = run(model, feeds, "native")
    assert_close(actual, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_normalization_is_folded_into_convolutions(backend, mobilenet):
    require(backend)
    with load(mobilenet, backend=backend) as session:
        info = session.info
    assert info.model_operators["BatchNormalization"] == info.model_operators["Conv"] == 52
    assert not any(op.startswith("BatchNormalization") for op in info.operators)
    # Folded, not rewritten as Mul + Add: the conv count stays and no Mul appears.
    assert sum(n for op, n in info.operators.items() if op.startswith("Conv")) == 52
    assert "Mul" not in info.operators


def test_native_fuses_every_relu6_into_its_convolution(mobilenet):
    require("native")
    with load(mobilenet) as session:
        operators = session.info.operators
    assert operators["Conv+Clip"] == 35
    assert "Clip" not in operators


def test_mobilenet_reports_its_size(mobilenet):
    with load(mobilenet, backend="numpy") as session:
        info = session.info
    initialisers = sum(
        int(np.prod(t.dims)) for t in mobilenet.graph.initializer if t.data_type == 1
    )
    assert info.parameters == initialisers
    assert info.outputs[0].shape == (1, 10)
    assert info.macs > 0


def test_full_size_mobilenet_has_the_published_size():
    model = models.mobilenet_v2()
    with load(model, backend="numpy") as session:
        info = session.info
    # Sandler et al. report 3.4 M parameters (3.5 M with BatchNormalization's) and 300 M MACs.
    assert 3.4e6 < info.parameters < 3.6e6
    assert 290e6 < info.macs < 310e6


# -- int8 QDQ ----------------------------------------------------------------------------------


def _expose_quantised_activations(model: onnx.ModelProto) -> list[str]:
    """Adds every activation DequantizeLinear output to the graph outputs; returns their names."""
    inferred = onnx.shape_inference.infer_shapes(model)
    values = {v.name: v for v in inferred.graph.value_info}
    names = [
        n.output[0]
        for n in model.graph.node
        if n.op_type == "DequantizeLinear"
        and n.output[0] in values
        and n.input[0].endswith("_q")
        and n.name.endswith("_dequantize")
    ]
    for name in names:
        model.graph.output.append(values[name])
    return names


def _step(model: onnx.ModelProto, name: str) -> float:
    scale = name[: -len("_dq")] + "_qscale"
    return next(
        float(onnx.numpy_helper.to_array(t)) for t in model.graph.initializer if t.name == scale
    )


def _quantised(float_model, feeds, activations):
    return models.quantize_qdq(float_model, feeds, activations=activations)


@pytest.mark.parametrize("activations", ["int8", "uint8"])
@pytest.mark.parametrize("net", ["mobilenet", "unet"])
def test_qdq_network_runs_literally_on_numpy_backend(net, activations):
    builder = models.mobilenet_v2 if net == "mobilenet" else models.cloud_mask_unet
    float_model = builder(batch_norm=False, **(MOBILENET if net == "mobilenet" else UNET))
    feeds = random_feeds(float_model)
    model = _quantised(float_model, feeds, activations)
    (expected,) = reference(model, feeds)
    (actual,) = run(model, feeds, "numpy")
    assert_close(actual, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("activations", ["int8", "uint8"])
@pytest.mark.parametrize("net", ["mobilenet", "unet"])
def test_qdq_network_runs_on_int8_kernels_within_one_step(net, activations):
    require("native")
    builder = models.mobilenet_v2 if net == "mobilenet" else models.cloud_mask_unet
    float_model = builder(batch_norm=False, **(MOBILENET if net == "mobilenet" else UNET))
    feeds = random_feeds(float_model)
    model = _quantised(float_model, feeds, activations)
    names = _expose_quantised_activations(model)
    expected = dict(zip([o.name for o in model.graph.output], reference(model, feeds), strict=True))
    with load(model) as session:
        operators = session.info.operators
        actual = session.run(feeds)
    convs = sum(1 for n in float_model.graph.node if n.op_type == "Conv")
    assert operators.get("QConv") == convs  # every convolution ran on the int8 kernel
    assert "Conv" not in operators
    first_difference = None
    for name in names:
        difference = float(np.abs(actual[name] - expected[name]).max())
        if difference > 1e-6:
            first_difference = (name, difference / _step(model, name))
            break
    if first_difference is not None:
        name, steps = first_difference
        assert steps <= 1.0 + 1e-4, f"{name} is {steps:.3f} steps from the reference"
    if net == "unet":
        output = model.graph.output[0].name
        last_step = _step(model, names[-1])
        assert np.abs(actual[output] - expected[output]).max() <= last_step


class _Calibration:
    """onnxruntime.quantization's calibration reader: a few seeded random inputs."""

    def __init__(self, model):
        self._feeds = iter([random_feeds(model, seed=s) for s in range(4)])

    def get_next(self):
        return next(self._feeds, None)


@pytest.mark.parametrize("activations", ["QUInt8", "QInt8"])
@pytest.mark.parametrize("net", ["mobilenet", "unet"])
def test_model_from_onnxruntime_quantiser_runs_on_int8_kernels_like_onnxruntime(
    net, activations, tmp_path
):
    """ONNX Runtime's own static quantiser (QDQ format, per-channel int8 weights) is what users
    bring; its int8 kernels follow the same scheme, so the outputs agree closely (the U-Net to
    one step of its last quantised tensor; the deeper MobileNet may carry a one-step divergence
    forward, so its probabilities to 0.02)."""
    require("native")
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    builder = models.mobilenet_v2 if net == "mobilenet" else models.cloud_mask_unet
    float_model = builder(batch_norm=False, **(MOBILENET if net == "mobilenet" else UNET))
    source, target = tmp_path / "float.onnx", tmp_path / "qdq.onnx"
    onnx.save(float_model, source)
    quantize_static(
        str(source),
        str(target),
        _Calibration(float_model),
        quant_format=QuantFormat.QDQ,
        activation_type=getattr(QuantType, activations),
        weight_type=QuantType.QInt8,
        per_channel=True,
    )
    feeds = random_feeds(float_model, seed=9)
    expected = onnxruntime.InferenceSession(str(target), providers=["CPUExecutionProvider"]).run(
        None, feeds
    )[0]
    with load(target) as session:
        actual = next(iter(session.run(feeds).values()))
        operators = session.info.operators
    convs = sum(1 for n in float_model.graph.node if n.op_type == "Conv")
    assert operators.get("QConv") == convs
    if net == "unet":
        graph = onnx.load(target).graph
        producers = {o: n for n in graph.node for o in n.output}
        sigmoid = next(n for n in graph.node if n.op_type == "Sigmoid")
        scale_name = producers[sigmoid.input[0]].input[1]  # the DequantizeLinear before it
        step = next(
            float(onnx.numpy_helper.to_array(t)) for t in graph.initializer if t.name == scale_name
        )
        assert np.abs(actual - expected).max() <= step
    else:
        assert np.abs(actual - expected).max() <= 0.02
