"""What the two robustness tasks share: check every network's weights before any work, then
run the pending (network, seed) jobs with the chosen launcher."""

from experiments.core.launch import launch
from experiments.core.runs import experiment_dir, prepare
from experiments.core.trained import network_source


def run_suite(suite, out_root, run_job, summary, force, launcher, options, extra=lambda cfg: ()):
    """Run ``suite``'s pending jobs; ``extra(cfg)`` names other networks a job loads (a
    transfer attack's source), whose weights are checked too. Returns the experiment folder."""
    for name in suite.run:
        cfg = suite.jobs[name]
        for seed in suite.seeds:
            for network in (name, *extra(cfg)):
                network_source(cfg, network, seed)
    pending = prepare(suite, out_root, force)
    total = len(suite.run) * len(suite.seeds)
    print(f"{suite.experiment}: {total} jobs, {total - len(pending)} already done, "
          f"{len(pending)} to run")
    launch(pending, run_job, summary, launcher, **options)
    return experiment_dir(suite, out_root)
