-- Where a job ran and on what, and the overflow providers' per-job callback token.
ALTER TABLE jobs ADD COLUMN accelerator text;
ALTER TABLE jobs ADD COLUMN requested_accelerator text;
ALTER TABLE jobs ADD COLUMN callback_token_sha256 text;
