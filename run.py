"""Command line: python run.py CONFIG [--describe] [--smoke] [--set KEY=VALUE ...] [--jobs N]

    python run.py configs/mnist_sparse.yaml                 train, sweep noise, write the report
    python run.py configs/mnist_table1.yaml --jobs 2        the whole table, resumable
    python run.py configs/mnist_table1.yaml --launcher ray  the same on a Ray cluster (docs/cluster.md)
    python run.py configs/mnist_sparse.yaml --describe      layers and parameter counts only
    python run.py configs/mnist_sparse.yaml --smoke         seconds: 256 samples, one epoch
    python run.py configs/mnist_table1.yaml --report        rebuild the report from the records

User errors (bad config, missing files) print one line and exit with code 2.
"""

import argparse
import sys

from experiments.cli import main
from experiments.core.launch import LAUNCHER_OPTIONS


def cli(argv=None):
    """Parse ``argv`` (default: the command line), run, and return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("config", help="experiment YAML file, e.g. configs/mnist_sparse.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a config key, e.g. train.epochs=1")
    parser.add_argument("--describe", action="store_true",
                        help="print each network's layers and parameter counts; no training")
    parser.add_argument("--smoke", action="store_true",
                        help="a seconds-long run: few samples, one epoch, first seed")
    parser.add_argument("--launcher", default="local", metavar="{local,ray}",
                        help="how jobs run: local (this machine, --jobs processes; the default) "
                             "or ray (a Ray cluster; pip install -r requirements-ray.txt)")
    for option in LAUNCHER_OPTIONS:
        parser.add_argument(option.flag, type=option.type, metavar=option.metavar,
                            help=option.help)
    parser.add_argument("--out", default="results", help="results folder (default: results)")
    parser.add_argument("--force", action="store_true",
                        help="overwrite existing runs of this experiment")
    parser.add_argument("--report", action="store_true",
                        help="only rebuild tables and figures from existing records")
    return main(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(cli())
