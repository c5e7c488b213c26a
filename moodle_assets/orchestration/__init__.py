"""The Dagster side of the sync: assets, jobs, resources, the instance, and how runs are launched."""
