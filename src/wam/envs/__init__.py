"""Simulators and the policy-agnostic closed-loop evaluator.

Importing this package is light; simulator modules import their engines lazily.
"""
