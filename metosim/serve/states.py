"""Names the service's processes share: the Ray namespace, the job-state actor's name,
and a job's active and terminal states."""

NAMESPACE = "metosim"
JOBSTATE = "metosim-jobstate"
ACTIVE = ("QUEUED", "RUNNING")
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")
