"""Training engine: optimizer, schedules, EMA, checkpoints, distributed helpers and the trainer."""
