"""Run by tests/test_distributed.py with KERAS_BACKEND=jax and two host devices: build the Keras
model of a spec under ModelParallel with nnspec.keras_layout_map, print what each variable got."""

from __future__ import annotations

import json
import sys

import keras
import numpy as np

import nnspec

spec = nnspec.load(sys.argv[1])
devices = keras.distribution.list_devices("cpu")
mesh = keras.distribution.DeviceMesh((1, 2), ["batch", "model"], devices[:2])
layout_map = nnspec.keras_layout_map(spec, mesh)
reference = nnspec.build(spec, "keras", seed=0)
with keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="batch").scope():
    model = nnspec.build(spec, "keras", seed=0)
report = {"devices": len(devices), "variables": {}}
expected = {v.path: np.asarray(v.value) for v in reference.weights}
for variable in model.weights:
    sharding = variable.value.sharding
    report["variables"][variable.path] = {
        "spec": [None if s is None else str(s) for s in getattr(sharding, "spec", ())],
        "devices": len(sharding.device_set),
        "equal": bool(np.array_equal(np.asarray(variable.value), expected[variable.path])),
    }
x = np.random.default_rng(0).integers(0, 50, size=(2, *spec.graph.input_shape))
report["forward"] = bool(np.allclose(np.asarray(model(x)), np.asarray(reference(x)), atol=1e-5))
print("REPORT" + json.dumps(report))
