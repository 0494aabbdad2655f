-- Agents' client certificates: the serial a worker must present on its stream, and the one
-- before it (still accepted while the agent rotates).
ALTER TABLE workers ADD COLUMN cert_serial text;
ALTER TABLE workers ADD COLUMN prev_cert_serial text;
ALTER TABLE workers ADD COLUMN cert_not_after timestamptz;
