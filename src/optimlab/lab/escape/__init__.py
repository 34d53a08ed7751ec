"""The escape study: which remedy gets which optimizer out of which trap, how often, how fast.

An experiment of the lab built on the remedies of :mod:`optimlab.remedies`:

=====================  =========================================================================
``problems``           the traps: saddles and functions with many minima (the lab's test
                       functions of :mod:`optimlab.lab.functions`, with a start, a target and
                       mini-batch data), a 50-d saddle and a small network
``descent``            one seeded run on a trap, with or without a remedy (:func:`descend`)
``study``              the grid of problems, methods and remedies, its tables (``escape_main``)
``figures``            drawing only (matplotlib)
=====================  =========================================================================

Run it with ``optimlab escape``.

    >>> import optimlab
    >>> from optimlab.lab.escape import descend, problems
    >>> descend(problems.SADDLE, optimlab.SGD, lr=0.1, steps=200, noise=0.1).succeeded
    True
"""

from . import problems
from .descent import DescentResult, descend
from .problems import PROBLEMS, Problem
from .study import escape_main

__all__ = ["PROBLEMS", "DescentResult", "Problem", "descend", "escape_main", "problems"]
