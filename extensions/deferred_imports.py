"""Modules that ``import tensorflow`` loads and a job seldom uses, run on first use instead.

TensorFlow's import loads all of Keras 3, and Keras imports its scikit-learn wrappers (which
import scikit-learn and SciPy's statistics: ~0.65 s of CPU) and ``matplotlib.pyplot``
(~0.3 s) whether or not the program touches them. :func:`defer` registers those modules
with :class:`importlib.util.LazyLoader`: ``import`` gives the module at once and its code
runs the first time one of its attributes is read, so ``tf.keras.wrappers.SKLearnClassifier``
and ``plt.plot`` work as before and a program that never reads them never pays for them.
Job workers, the tuning oracle, pre-labelling and the ``hubforge`` command call it at their
start. (Python 3.11's LazyLoader runs a module's code without a lock: two threads reading a
deferred module for the first time at once could both run it. These are modules a program
first reads from one thread: a plot, a scikit-learn wrapper.)
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from types import ModuleType

DEFERRED = frozenset({"keras.wrappers", "keras._tf_keras.keras.wrappers", "matplotlib.pyplot"})
_LAZY = getattr(importlib.util, "_LazyModule", None)  # the class of a module not yet run


class _DeferredFinder(importlib.abc.MetaPathFinder):
    """Finds the DEFERRED modules as the other finders do, with their loader made lazy."""

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name not in DEFERRED:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is None:
                continue
            if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                spec.loader = importlib.util.LazyLoader(spec.loader)
            return spec
        return None


def defer() -> None:
    """Load the DEFERRED modules on first use in this process (once; idempotent)."""
    if not any(isinstance(finder, _DeferredFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _DeferredFinder())


def loaded(name: str) -> bool:
    """Whether module ``name`` has been imported and its code has run (a deferred module
    that nothing has read yet has not)."""
    module = sys.modules.get(name)
    return module is not None and (_LAZY is None or type(module) is not _LAZY)
