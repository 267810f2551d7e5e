"""What every study shares: config schema, experiment files, run folders and their records,
launchers, model selection, and tables and figures as files. Imports no study."""
