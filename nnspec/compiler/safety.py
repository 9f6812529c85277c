"""Initializer safety analysis (NS2xx). Filled in by the rules module."""

from __future__ import annotations


def run_rules(graph, doc) -> list:
    return []
