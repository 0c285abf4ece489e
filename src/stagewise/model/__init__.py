"""What a pipeline is, as plain data: stages, groups, assets, dims and parameters."""
