-- Issue 28 (console): an admin's note when disabling a webhook.
ALTER TABLE webhook_state ADD COLUMN note text;
