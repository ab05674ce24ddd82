"""The MetoSim compute service: Ray Serve REST ingress, a job-state actor persisted to
PostgreSQL, solves dispatched as Ray tasks, results in an object store.

Start it with ``metosim serve`` (or :func:`metosim.serve.service.start`)."""
