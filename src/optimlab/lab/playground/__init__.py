"""``optimlab playground``: the notes' ideas, interactive in the browser.

A local web page (:mod:`.server`, Starlette served by uvicorn on 127.0.0.1) whose every number
comes from optimlab itself (:mod:`.api`): the paths of the real optimizers, in every variant the
notes disagree on (:mod:`.controls`), over the lab's 2-D test functions; exponentially weighted
averages of a series or a CSV; learning-rate schedules; batch, mini-batch and stochastic descent.
The page's scripts (Plotly for the charts, KaTeX for the formulas) come from the npm registry at
build time (``web/package.json``, ``make build``) and ship in ``static/vendor``, so the page
works offline.
"""
