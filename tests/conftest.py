"""Shared pytest setup."""

import os

# TensorFlow prints C++ log noise on import (CUDA probing, oneDNN notes): errors only.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The suite runs small models; with PyTorch's and TensorFlow's thread pools in one process on a
# small machine, spinning threads slow tiny kernels down a hundredfold. One thread each is fastest.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
