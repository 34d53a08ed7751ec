"""The lab: the experiments behind ``optimlab compare``, ``landscape``, ``ewa``, ``schedule``,
``batch-size`` and ``escape``.

Modules, from the bottom up (nothing here is imported until used, so ``import optimlab`` stays
light and matplotlib loads only when a figure is drawn):

=====================  =========================================================================
``functions``          2-D test functions with known minima: ``FUNCTIONS[name]`` is a frozen
                       ``TestFunction(name, title, formula, f, minima, start, bounds, ...)``
``datasets``           scikit-learn's bundled data sets, split and standardized (``load_split``)
``contenders``         the optimizers compared: ``CONTENDERS``, specs like ``"adam:lr=0.01"``
``problems``           a function or a data set as something to optimize (``make_problem``)
``runner``             one run, many runs (in worker processes), the learning-rate sweep
``summary``            means and spreads over seeds
``compare``            the fair comparison and its report (``run_compare``, ``write_compare``)
``landscape``          paths over the test functions; the contour grids
``averages``           the exponentially-weighted-average demonstration
``schedule_curves``    learning-rate schedules over the steps
``batch_size``         batch / stochastic / mini-batch gradient descent
``escape``             the escape study: the remedies of :mod:`optimlab.remedies` on saddles
                       and functions with many minima (``escape_main``, ``optimlab escape``)
``plots``              drawing only: panels of data to PNG, SVG and GIF
``report``             documents to self-contained HTML and Markdown
``rundir``             the run folder and its ``run.json`` (command, seed, versions)
``user``               your model and data as a problem (``compare_model``, ``--model``)
=====================  =========================================================================

    >>> from optimlab.lab.functions import FUNCTIONS
    >>> sorted(FUNCTIONS)[:3]
    ['beale', 'himmelblau', 'monkey_saddle']
"""


def __getattr__(name: str):
    # the Python face of ``optimlab compare --model``: loaded on first use
    if name == "compare_model":
        from .user import compare_model

        return compare_model
    raise AttributeError(f"module 'optimlab.lab' has no attribute {name!r}")
