"""The training engine: typed config, the G/D loop, checkpoints, schedules and parameter averages."""
