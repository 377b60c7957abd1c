"""A pipeline run: the record store, the run loop, the report and the exports."""
