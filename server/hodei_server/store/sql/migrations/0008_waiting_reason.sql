-- Why a pending job is not placed yet ("no worker matches os=linux"), set by the leader's
-- reconciler and shown while the job is PENDING.
ALTER TABLE jobs ADD COLUMN waiting_reason text NOT NULL DEFAULT '';
