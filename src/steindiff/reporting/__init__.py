"""What steindiff-report computes from a folder of sampling runs, apart from the command line.

``runs`` reads the jobs (results.json, resolved config, config choices), ``settings`` splits them into
experiments and settings (the varying config keys are the table's columns), ``tables`` aggregates over
seed sets and writes report.md and results.csv, ``figures`` draws metric vs NFE with honest error bars,
``metric_info`` names metrics, their units and which direction is better. No torch, no Hydra runtime.
"""
