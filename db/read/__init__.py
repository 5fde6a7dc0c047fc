"""The read side of the database, one module per subject, shared by `orchestrate` (status,
results, export, hosts list) and the dashboard:

- sweeps:  every sweep with its job counts, host count, state and duration (the sum of
           its coordinators' runs); one sweep's settings
- jobs:    a sweep's jobs with their last attempt, the running attempts, one job in full
- results: the measurements as a frame (BenchResult records, typed) and their summary
- hosts:   the SSH inventory and every host that ran an attempt
- plan:    the sweep file as it reads now: current jobs, their variants' names, baseline
- stats:   95% intervals of means and of speedups (Fieller), and the verdicts
- timeline: every attempt as a bar on its host and GPU, with its engine start and timed
           generate placed inside; the sweep's efficiency (timed generate ÷ GPU time held)
- telemetry: an attempt's GPU samples with its result's phases placed in them, the summary
           of its timed generate, and the GPU mark (throttled, shared GPU) of a result
- changes: a cheap token that moves whenever anything above would read differently (the
           dashboard's pages poll it to follow a running sweep)

Every function takes an open Store and returns plain data (dataclasses, dicts, DataFrames);
nothing here writes. The writes, and the coordinator's own reads, are db.store's."""
