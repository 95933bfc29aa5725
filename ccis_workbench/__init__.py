"""CCIS Workbench: shape, build and test CentOS cloud images."""

from __future__ import annotations

__version__ = "0.1.0"
