"""Shared pytest setup."""

import os

# TensorFlow prints C++ log noise on import (CUDA probing, oneDNN notes): errors only.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
