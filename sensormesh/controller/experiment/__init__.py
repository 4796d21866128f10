"""`sensormesh experiment`: one pipeline under several placements and network conditions, run
one after the other, measured, and compared side by side (docs/experiments.md).

    plan.py        the runs: placement x network condition x repeat (pure)
    placements.py  placement files (steps pinned to devices, a strategy for the rest)
    one_run.py     one run: start, deploy, warm up, measure, stop
    measures.py    a run's numbers from its metrics samples (pure)
    results.py     the output directory: runs.csv, devices.csv, links.csv, latency.csv,
                   metrics.sqlite, placements/, pipeline/, environment.json
    summary.py     summary.md with the best value per column marked (pure)
    plots.py       the PNG plots (matplotlib)
    progress.py    the progress display
    driver.py      runs the plan, survives failed runs, stops cleanly on Ctrl-C
    cli.py         the command
"""
