"""Placeholder until the report lands (issue 3)."""


def write_report(exp_dir):
    print(f"records in {exp_dir}")
