"""Keep UMAP's compiled kernels between processes.

Why: umap-learn compiles its numba kernels afresh in every new process, since most of them are not
declared ``cache=True``: the reduce stage of a fresh ``themesift suggest`` on the example study took 8.3 s
(0.3 s with the kernels loaded; the whole run 37 s -> 32 s, 2-core AMD EPYC), paid again by every run,
schedule tick and worker. Numba can keep any kernel's machine code on disk
(beside the package's sources, in ``NUMBA_CACHE_DIR`` where set, or in the user's cache folder where the
sources are read-only), keyed by the source file and the CPU, and a later process loads it instead of
compiling: the same code, so the same coordinates.
"""

from __future__ import annotations

import sys
from functools import cache

#: Packages whose numba kernels are cached: UMAP and its nearest-neighbour search.
PACKAGES = ("umap", "pynndescent")


@cache
def cache_compiled(packages: tuple[str, ...] = PACKAGES) -> int:
    """Turn on numba's on-disk cache for every kernel of the imported ``packages`` that has none; returns
    how many. Once per process. A kernel whose cache has nowhere to go stays as it was (compiled each time)."""
    from numba.core.caching import NullCache
    from numba.core.registry import CPUDispatcher

    for package in packages:
        __import__(package)
    turned_on = 0
    for name, module in list(sys.modules.items()):
        if module is None or name.split(".")[0] not in packages:
            continue
        for kernel in list(vars(module).values()):
            if isinstance(kernel, CPUDispatcher) and isinstance(kernel._cache, NullCache):
                try:
                    kernel.enable_caching()
                except RuntimeError:  # no writable cache folder for this source file
                    continue
                turned_on += 1
    return turned_on
