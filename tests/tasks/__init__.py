"""Task modules of the tests, as real files that ruff and mypy check.

A test copies the modules it needs into a tasks folder of its own (see
tests/workers.py `copy_tasks`) and points a `pgcc worker` at it. A worker
imports each module by its path, alone: a module here imports nothing from
the tests, so each one carries what it needs.
"""
