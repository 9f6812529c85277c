"""The examples gallery: reference architectures and the seed use cases of identity-style initializers.

The reference architectures are compared with plain-PyTorch transcriptions of torchvision's
ResNet, VGG and MobileNetV2 written below (torchvision itself does not install beside the pinned
torch), with torchvision's published parameter counts, and with `keras.applications` where it
defines the same architecture. The seed use cases check, on both targets, the property each
identity-style initializer exists for.
"""

from __future__ import annotations

import math
from collections import Counter
from functools import cache
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

import torch.nn.functional as F
from torch import nn

import nnspec
from nnspec.compiler.backends.keras_backend import input_to_keras, output_to_logical
from nnspec.parity import compare, perturb, run_parity

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCHEMA_LINE = "# yaml-language-server: $schema=../nnspec.schema.json"

# torchvision's published parameter counts (the `num_params` of each model's weights metadata).
PUBLISHED = {
    "resnet18": 11_689_512,
    "resnet50": 25_557_032,
    "resnet50_zero_init_residual": 25_557_032,
    "vgg16": 138_357_544,
    "mobilenet_v2": 3_504_872,
}
ARCHITECTURES = list(PUBLISHED)
SEED_EXAMPLES = ["deep_plain_dirac", "mlp_eye_adapter", "imbalanced_classifier", "norm_identity"]
RECURRENT_EXAMPLES = ["lstm_classifier", "gru_tagger"]  # tests/test_recurrent.py compares them with torch.nn
GALLERY = ARCHITECTURES + SEED_EXAMPLES + RECURRENT_EXAMPLES


def example(name: str) -> Path:
    return EXAMPLES / f"{name}.yaml"


@cache
def spec(name: str):
    return nnspec.load(example(name))


# -- plain PyTorch transcriptions of torchvision's models ----------------------------------------------------


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)  # v1.5: stride on the 3x3
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    def __init__(self, block, layers, num_classes=1000, zero_init_residual=False):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], 2)
        self.layer3 = self._make_layer(block, 256, layers[2], 2)
        self.layer4 = self._make_layer(block, 512, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.constant_(m.bn3.weight, 0)
                elif isinstance(m, BasicBlock):
                    nn.init.constant_(m.bn2.weight, 0)

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class VGG(nn.Module):
    CFG_D = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")

    def __init__(self, num_classes=1000):
        super().__init__()
        layers, c_in = [], 3
        for v in self.CFG_D:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c_in, v, 3, padding=1), nn.ReLU()]
                c_in = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(nn.Linear(512 * 7 * 7, 4096), nn.ReLU(), nn.Dropout(0.5),
                                        nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(0.5),
                                        nn.Linear(4096, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def conv_bn_relu6(c_in, c_out, kernel=3, stride=1, groups=1):
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU6())


class InvertedResidual(nn.Module):
    def __init__(self, inp, oup, stride, expand_ratio):
        super().__init__()
        hidden = round(inp * expand_ratio)
        self.use_res_connect = stride == 1 and inp == oup
        layers = [conv_bn_relu6(inp, hidden, 1)] if expand_ratio != 1 else []
        layers += [conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden),
                   nn.Conv2d(hidden, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
               (6, 320, 1, 1))  # t, c, n, s

    def __init__(self, num_classes=1000):
        super().__init__()
        features, c_in = [conv_bn_relu6(3, 32, stride=2)], 32
        for t, c, n, s in self.SETTING:
            for i in range(n):
                features.append(InvertedResidual(c_in, c, s if i == 0 else 1, t))
                c_in = c
        features.append(conv_bn_relu6(c_in, 1280, 1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


REFERENCE = {
    "resnet18": lambda: ResNet(BasicBlock, [2, 2, 2, 2]),
    "resnet50": lambda: ResNet(Bottleneck, [3, 4, 6, 3]),
    "resnet50_zero_init_residual": lambda: ResNet(Bottleneck, [3, 4, 6, 3], zero_init_residual=True),
    "vgg16": VGG,
    "mobilenet_v2": MobileNetV2,
}


@cache
def meta_reference(name: str):
    """torchvision's model on the meta device: shapes only."""
    with torch.device("meta"):
        return REFERENCE[name]().eval()


class Builds:
    """The big models, each built once per module (module-scoped fixture `builds`), freed after it."""

    def __init__(self):
        self.cache = {}

    def _get(self, key, make):
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]

    def reference(self, name: str):
        """torchvision's model, initialised by torchvision's own loop (seeded), in eval mode, on the CPU."""
        def make():
            torch.manual_seed(0)
            return REFERENCE[name]().eval()
        return self._get(("reference", name), make)

    def torch(self, name: str):
        return self._get(("torch", name), lambda: nnspec.build(spec(name), "torch", seed=0).eval())

    def keras(self, name: str):
        return self._get(("keras", name), lambda: nnspec.build(spec(name), "keras", seed=0))


@pytest.fixture(scope="module")
def builds():
    cache = Builds()
    yield cache
    cache.cache.clear()
    keras.backend.clear_session()


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def keras_count(weights) -> int:
    return int(sum(np.prod(w.shape) for w in weights))


def shapes(state_dict) -> list:
    return [tuple(v.shape) for v in state_dict.values()]


# -- every example: clean check, schema line --------------------------------------------------------------


@pytest.mark.parametrize("name", GALLERY)
def test_example_checks_without_any_diagnostic(name):
    path = example(name)
    assert path.read_text(encoding="utf-8").splitlines()[0] == SCHEMA_LINE
    assert nnspec.check(path) == []


# -- reference architectures: parameter counts and shapes ---------------------------------------------------


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_parameter_count_equals_torchvision(name):
    want = PUBLISHED[name]
    assert n_params(meta_reference(name)) == want  # the transcription below is torchvision's model
    assert spec(name).params == want
    assert n_params(nnspec.build(spec(name), "torch", device="meta")) == want


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_keras_trainable_count_equals_torchvision(name, builds):
    model = builds.keras(name)
    assert keras_count(model.trainable_weights) == PUBLISHED[name]
    # the non-trainable weights are exactly the batchnorm statistics (mean and variance per channel)
    bn_channels = sum(layer.tensors["gamma"].shape[0] for layer in spec(name).graph.layers()
                      if layer.kind == "batchnorm")
    assert keras_count(model.non_trainable_weights) == 2 * bn_channels


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_every_tensor_shape_equals_torchvision_in_order(name):
    ours = nnspec.build(spec(name), "torch", device="meta").state_dict()
    ref = meta_reference(name).state_dict()
    # names differ (ours are the spec's paths), the order and every shape do not; buffers included
    assert shapes(ours) == shapes(ref)
    assert [k.rsplit(".", 1)[1] for k in ours] == [k.rsplit(".", 1)[1] for k in ref]


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_parameters_per_layer_type_equal_torchvision(name):
    def per_type(model):
        count, layers = Counter(), Counter()
        for module in model.modules():
            own = sum(p.numel() for p in module.parameters(recurse=False))
            if own:
                count[type(module).__name__] += own
                layers[type(module).__name__] += 1
        return count, layers

    ours = per_type(nnspec.build(spec(name), "torch", device="meta"))
    assert ours == per_type(meta_reference(name))
    # and the spec's own account of its tensors, by layer kind
    kinds = Counter()
    for layer in spec(name).graph.layers():
        if layer.tensors:
            kinds[layer.kind] += sum(math.prod(t.shape) for t in layer.tensors.values())
    kind_of = {"Conv2d": "conv2d", "BatchNorm2d": "batchnorm", "Linear": "linear"}
    assert dict(kinds) == {kind_of[module_type]: count for module_type, count in ours[0].items()}


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_initialisation_equals_torchvision(name, builds):
    """Tensor by tensor: torchvision's constants exactly, its random tensors with the same spread."""
    ours = builds.torch(name).state_dict()
    ref = builds.reference(name).state_dict()
    for (path, mine), theirs in zip(ours.items(), ref.values()):
        theirs = theirs.to(mine.dtype) if mine.is_floating_point() else theirs
        if theirs.numel() == 1 or bool((theirs == theirs.flatten()[0]).all()):
            assert torch.equal(mine, theirs), path
        else:
            assert not bool((mine == mine.flatten()[0]).all()), path
            ratio = float(mine.std() / theirs.std())
            assert 0.85 < ratio < 1.15, (path, ratio)
            assert abs(float(mine.mean())) < 0.2 * float(theirs.std()) + 1e-3, path
    if name == "resnet50_zero_init_residual":  # the variant differs from resnet50 exactly in the bn3 gammas
        plain = builds.torch("resnet50").state_dict()
        zeroed = [k for k, v in ours.items() if k.endswith(".weight") and v.ndim == 1 and not bool(v.any())]
        assert len(zeroed) == 16 and all(k.endswith(".bn3.weight") for k in zeroed)
        assert all(bool((plain[k] == 1).all()) for k in zeroed)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_same_function_as_torchvision(name, builds):
    """torchvision's weights, copied in order into the built model, give torchvision's outputs: strides,
    paddings, activations and skips sit where torchvision has them."""
    ref = builds.reference(name)
    generator = torch.Generator().manual_seed(1)
    state = {}
    for key, value in ref.state_dict().items():  # random 1-D tensors: no batchnorm is a no-op, no bias zero
        if key.endswith("running_var"):
            value = torch.rand(value.shape, generator=generator) + 0.5
        elif value.ndim == 1:
            value = value + 0.1 * torch.randn(value.shape, generator=generator)
        state[key] = value
    # both on the meta device, then given these very tensors: no second initialisation of 138M weights
    with torch.device("meta"):
        ref_copy = REFERENCE[name]().eval()
    ref_copy.load_state_dict(state, assign=True)
    ours = nnspec.build(spec(name), "torch", device="meta").eval()
    ours.load_state_dict(dict(zip(ours.state_dict(), state.values())), assign=True)
    x = torch.randn(1, 3, 224, 224, generator=generator)
    with torch.no_grad():
        want, got = ref_copy(x), ours(x)
    assert got.shape == want.shape == (1, 1000)
    assert float((got - want).abs().max()) <= 1e-5 * float(want.abs().max())


# -- keras.applications -----------------------------------------------------------------------------------


def logical_shape(weight) -> tuple:
    """A Keras kernel's shape in the logical (PyTorch) layout."""
    shape = tuple(weight.shape)
    if len(shape) == 2:
        return shape[::-1]
    if len(shape) == 4:
        kh, kw, c_in, c_out = shape
        if "depthwise" in weight.path:  # DepthwiseConv2D: (kh, kw, channels, multiplier)
            return (c_in * c_out, 1, kh, kw)
        return (c_out, c_in, kh, kw)
    return shape


def application(name: str):
    return getattr(keras.applications, name)(weights=None)


def test_vgg16_equals_keras_applications():
    app = application("VGG16")
    assert app.count_params() == keras_count(app.trainable_weights) == PUBLISHED["vgg16"]
    ours = nnspec.build(spec("vgg16"), "torch", device="meta")
    assert [logical_shape(w) for w in app.trainable_weights] == [tuple(p.shape) for p in ours.parameters()]


def test_mobilenet_v2_equals_keras_applications_in_trainable_weights(builds):
    """Keras's MobileNetV2 counts 3,538,984 weights: 3,504,872 trainable, as torchvision, plus
    34,112 batchnorm statistics (moving mean and variance), which PyTorch keeps as buffers."""
    app = application("MobileNetV2")
    assert app.count_params() == 3_538_984
    assert keras_count(app.trainable_weights) == PUBLISHED["mobilenet_v2"]
    assert keras_count(app.non_trainable_weights) == keras_count(builds.keras("mobilenet_v2").non_trainable_weights)
    ours = nnspec.build(spec("mobilenet_v2"), "torch", device="meta")
    assert [logical_shape(w) for w in app.trainable_weights] == [tuple(p.shape) for p in ours.parameters()]


def test_resnet50_differs_from_keras_applications_by_exactly_the_conv_biases(builds):
    """Keras's ResNet50 is ResNet v1 (stride on the first 1x1 conv of a bottleneck, which changes no
    shape) and gives every conv a bias (torchvision's have none, the batchnorm after each makes it
    redundant). So its kernels are torchvision's, its trainable count is torchvision's plus one bias per
    conv output channel (25,583,592 = 25,557,032 + 26,560), and its batchnorms are torchvision's."""
    app = application("ResNet50")
    ours = spec("resnet50").graph
    convs = [layer for layer in ours.layers() if layer.kind == "conv2d"]
    conv_channels = sum(layer.args["out"] for layer in convs)
    assert conv_channels == 26_560
    assert keras_count(app.trainable_weights) == PUBLISHED["resnet50"] + conv_channels == 25_583_592
    kernels = Counter(logical_shape(w) for w in app.trainable_weights if w.path.endswith("kernel"))
    assert kernels == Counter(layer.tensors["weight"].shape for layer in ours.layers()
                              if layer.kind in ("conv2d", "linear"))
    biases = [w for w in app.trainable_weights if w.path.endswith("bias")]
    assert keras_count(biases) == conv_channels + 1000  # and the classifier's, which torchvision has too
    assert keras_count(app.non_trainable_weights) == keras_count(builds.keras("resnet50").non_trainable_weights)


# -- parity ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SEED_EXAMPLES)
def test_parity_with_perturbed_weights(name):
    report = run_parity(spec(name), perturb_weights=True)
    assert report.ok, report.text()


@pytest.mark.slow
def test_parity_of_reference_architectures(builds):
    """`nnspec parity` and `nnspec parity --perturb` on the big models, in one test, reusing the session's
    Keras builds, batch 1 (12 s on an idle 2-core machine, 40 s on a busy one; most of it VGG-16's
    138M weights, so marked slow).

    Unperturbed, the two targets agree within parity's default tolerances. Perturbed (what `nnspec parity`
    does by default), the test asserts agreement relative to the output's scale, which does not depend on how
    far float32 rounding grows with depth (measured: under 1e-6 of it for the ResNets and MobileNetV2, 4e-6
    for VGG-16; `nnspec parity --batch 1` reports ok for ResNet-18, ResNet-50 and MobileNetV2).
    """
    for name in ARCHITECTURES:
        s, keras_model = spec(name), builds.keras(name)
        torch_model = nnspec.build(s, "torch", seed=0)
        nnspec.transfer(torch_model, keras_model, s)
        expected, got = compare(s, torch_model, keras_model, batch=1)
        assert expected.shape == got.shape == (1, 1000), name
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4, err_msg=name)
        perturb(torch_model, 0)
        nnspec.transfer(torch_model, keras_model, s)
        expected, got = compare(s, torch_model, keras_model, batch=1)
        scale = float(np.abs(expected).max())
        assert np.isfinite(scale) and scale > 0, name
        assert float(np.abs(got.astype("float64") - expected).max()) <= 2e-5 * scale, name
        del torch_model


# -- seed use case (a): deep plain CNN with dirac ------------------------------------------------------------

KAIMING = "{kaiming_normal: {nonlinearity: relu}}"


def dirac_variants():
    text = example("deep_plain_dirac").read_text(encoding="utf-8")
    assert "    weight: dirac\n" in text
    kaiming = nnspec.loads(text.replace("    weight: dirac\n", f"    weight: {KAIMING}\n"), "deep_plain_kaiming.yaml")
    return spec("deep_plain_dirac"), kaiming


def plain_batch(s, batch=4, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, *s.input_shape)).astype("float32")


def torch_relu_outputs(model, x):
    stds = []
    hooks = [m.register_forward_hook(lambda m, i, o: stds.append(o.std().item()))
             for m in model.modules() if isinstance(m, nn.ReLU)]
    with torch.no_grad():
        y = model(torch.from_numpy(x))
    for h in hooks:
        h.remove()
    return y, stds


def keras_relu_outputs(model, s, x):
    relus = [layer.output for layer in model.layers if isinstance(layer, keras.layers.ReLU)]
    outputs = keras.Model(model.input, [model.output, *relus])(input_to_keras(x, s))
    y = output_to_logical(keras.ops.convert_to_numpy(outputs[0]), s)
    return y, [float(np.std(keras.ops.convert_to_numpy(o))) for o in outputs[1:]]


def test_deep_plain_dirac_computes_relu_exactly_on_both_targets():
    dirac, kaiming = dirac_variants()
    assert sum(layer.kind == "conv2d" for layer in dirac.graph.layers()) == 20
    x = plain_batch(dirac)
    relu_x = np.maximum(x, 0)
    y, stds = torch_relu_outputs(nnspec.build(dirac, "torch", seed=0), x)
    assert torch.equal(y, torch.from_numpy(relu_x))
    assert len(stds) == 20 and len(set(stds)) == 1 and stds[0] == pytest.approx(float(torch.from_numpy(relu_x).std()))
    yk, stds_k = keras_relu_outputs(nnspec.build(dirac, "keras", seed=0), dirac, x)
    assert np.array_equal(yk, relu_x)
    assert len(stds_k) == 20 and len(set(stds_k)) == 1

    # the same network with kaiming_normal: not the identity, and the scale drifts with depth
    y, stds = torch_relu_outputs(nnspec.build(kaiming, "torch", seed=0), x)
    assert not torch.equal(y, torch.from_numpy(relu_x))
    assert max(stds) / min(stds) > 1.05
    yk, stds_k = keras_relu_outputs(nnspec.build(kaiming, "keras", seed=0), kaiming, x)
    assert not np.array_equal(yk, relu_x)
    assert max(stds_k) / min(stds_k) > 1.05


# -- seed use case (b): MLP with an eye adapter --------------------------------------------------------------


def adapter_variants():
    text = example("mlp_eye_adapter").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines(keepends=True) if "name: adapter" not in line]
    assert len(lines) == len(text.splitlines()) - 1
    return spec("mlp_eye_adapter"), nnspec.loads("".join(lines), "mlp_without_adapter.yaml")


def test_eye_adapter_leaves_the_function_unchanged_on_torch():
    with_adapter, without = adapter_variants()
    a = nnspec.build(with_adapter, "torch", seed=0).eval()
    b = nnspec.build(without, "torch", seed=1).eval()  # other seed: its weights come only from `a`
    b.load_state_dict({k: v for k, v in a.state_dict().items() if not k.startswith("adapter.")})
    x = torch.from_numpy(plain_batch(with_adapter, batch=16))
    with torch.no_grad():
        assert torch.equal(a.adapter.weight, torch.eye(64)) and not a.adapter.bias.any()
        assert torch.equal(a(x), b(x))
        a.adapter.weight.add_(0.01)  # the comparison can fail: a non-identity adapter changes the function
        assert not torch.allclose(a(x), b(x))


def test_eye_adapter_leaves_the_function_unchanged_on_keras():
    with_adapter, without = adapter_variants()
    a = nnspec.build(with_adapter, "keras", seed=0)
    b = nnspec.build(without, "keras", seed=1)
    for layer in b.layers:
        if layer.weights:
            layer.set_weights(a.get_layer(layer.name).get_weights())
    x = plain_batch(with_adapter, batch=16)
    kernel, bias = a.get_layer("adapter").get_weights()
    assert np.array_equal(kernel, np.eye(64)) and not bias.any()
    assert np.array_equal(np.asarray(a(x)), np.asarray(b(x)))


# -- seed use case (c): imbalanced classifier with log_prior -----------------------------------------------

COUNTS = np.array([900, 90, 10])


def imbalanced_inputs(s):
    x = plain_batch(s, batch=32)
    return np.concatenate([x, 100 * x, np.zeros_like(x[:1])])  # any input: also large and zero ones


def test_log_prior_head_starts_at_the_class_frequencies_on_torch():
    s = spec("imbalanced_classifier")
    model = nnspec.build(s, "torch", seed=0).eval()
    with torch.no_grad():
        probs = torch.softmax(model(torch.from_numpy(imbalanced_inputs(s))), dim=-1).numpy()
    np.testing.assert_allclose(probs, np.broadcast_to(COUNTS / COUNTS.sum(), probs.shape), atol=1e-6, rtol=0)


def test_log_prior_head_starts_at_the_class_frequencies_on_keras():
    s = spec("imbalanced_classifier")
    model = nnspec.build(s, "keras", seed=0)
    probs = keras.ops.convert_to_numpy(keras.ops.softmax(model(imbalanced_inputs(s)), axis=-1))
    np.testing.assert_allclose(probs, np.broadcast_to(COUNTS / COUNTS.sum(), probs.shape), atol=1e-6, rtol=0)


# -- seed use case (d): norms with ones / zeros are plain normalisation ---------------------------------------


def normalised(x, axes, eps=1e-5):
    x = x.astype("float64")
    return (x - x.mean(axes, keepdims=True)) / np.sqrt(x.var(axes, keepdims=True) + eps)


def norm_batch(s):
    return (3 * plain_batch(s, batch=16, seed=1) + 1).astype("float32")


def test_norms_start_as_plain_normalisation_on_torch():
    s = spec("norm_identity")
    model = nnspec.build(s, "torch", seed=0).train()
    x = torch.from_numpy(norm_batch(s))
    with torch.no_grad():
        bn = model.bn(x)
        ln = model.ln(bn)
    np.testing.assert_allclose(bn.numpy(), normalised(x.numpy(), (0, 2)), atol=1e-5, rtol=0)
    np.testing.assert_allclose(ln.numpy(), normalised(bn.numpy(), (-1,)), atol=1e-5, rtol=0)
    # the affine part is the identity exactly: the same bits as the frameworks' non-affine normalisation
    assert torch.equal(bn, F.batch_norm(x, None, None, training=True, eps=1e-5))
    assert torch.equal(ln, F.layer_norm(bn, (10,), eps=1e-5))


def test_norms_start_as_plain_normalisation_on_keras():
    s = spec("norm_identity")
    model = nnspec.build(s, "keras", seed=0)
    x = norm_batch(s)
    xk = input_to_keras(x, s)  # [N, L, C]
    bn_k = keras.ops.convert_to_numpy(keras.Model(model.input, model.get_layer("bn").output)(xk, training=True))
    ln_k = keras.ops.convert_to_numpy(model(xk, training=True))
    bn, ln = np.moveaxis(bn_k, -1, 1), output_to_logical(ln_k, s)
    np.testing.assert_allclose(bn, normalised(x, (0, 2)), atol=1e-5, rtol=0)
    np.testing.assert_allclose(ln, normalised(bn, (-1,)), atol=1e-5, rtol=0)
    plain_bn = keras.layers.BatchNormalization(axis=-1, epsilon=1e-5, center=False, scale=False)
    plain_ln = keras.layers.LayerNormalization(axis=1, epsilon=1e-5, center=False, scale=False)
    assert np.array_equal(keras.ops.convert_to_numpy(plain_bn(xk, training=True)), bn_k)
    assert np.array_equal(keras.ops.convert_to_numpy(plain_ln(bn_k)), ln_k)


# -- every gallery example builds on both targets -------------------------------------------------------------


@pytest.mark.parametrize("name", RECURRENT_EXAMPLES)
def test_recurrent_examples_build_and_emit_on_both_targets(name):
    """Keras's LSTM holds one bias per layer and direction, the sum of PyTorch's two; GRU (reset_after) both."""
    s = spec(name)
    torch_model = nnspec.build(s, "torch", seed=0)
    keras_model = nnspec.build(s, "keras", seed=0)
    summed = sum(t.numel for t in s.graph.tensors() if t.layer.kind == "lstm" and t.role == "bias_hh")
    assert n_params(torch_model) == s.params == keras_count(keras_model.trainable_weights) + summed
    for target in ("torch", "keras"):
        compile(nnspec.emit(s, target), f"{name}_{target}.py", "exec")


@pytest.mark.parametrize("name", SEED_EXAMPLES)
def test_small_examples_build_and_emit_on_both_targets(name):
    s = spec(name)
    torch_model = nnspec.build(s, "torch", seed=0)
    keras_model = nnspec.build(s, "keras", seed=0)
    assert n_params(torch_model) == s.params == keras_count(keras_model.trainable_weights)
    for target in ("torch", "keras"):
        compile(nnspec.emit(s, target), f"{name}_{target}.py", "exec")

