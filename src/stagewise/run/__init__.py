"""Running items: planning, the coordinator, workers and executors."""
