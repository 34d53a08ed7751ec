"""The fused path: an update rule recorded once and compiled into one loop over all tensors.

Fenced off from the math (:mod:`optimlab.core` is pure functions over lists of tensors) because
it compiles code, loads libraries and keeps a cache on disk:

* :mod:`.tape` records a rule of :mod:`optimlab.core` as a program and this step's scalars;
* :mod:`.native` turns a program into a C loop, compiles it (guarded, under a lock, into a
  private cache) and runs it over tables of data pointers;
* :mod:`.plan` specifies what the loop may take and keeps a group's plan between steps;
  :mod:`.plancheck` asks its per-step questions in C++;
* :mod:`.build` compiles ahead of time what the default optimizers need (``optimlab build``);
* :mod:`.steps` is the one entry point: :class:`~optimlab.fused.steps.FusedSteps`, through which
  an optimizer (:class:`optimlab.optim.base.Optimizer`, ASGD's shared step sizes included)
  asks everything it asks of the fused path.
"""
