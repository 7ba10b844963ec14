"""Load generation: arrival schedules (pure) and the runner that drives requests."""
