-- The Ray node of the job-state actor that dispatched a job: a job RUNNING under a
-- node that no longer exists (the whole service restarted) is requeued at once.
ALTER TABLE jobs ADD COLUMN dispatch_node text;
