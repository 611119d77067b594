"""What trains every method: configuration, budget, optimiser and schedule, weight average,
early stopping, data-parallel processes, and the one epoch loop."""
