"""RQ jobs and the worker process: thin wrappers over portal.services."""
