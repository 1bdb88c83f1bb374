-- Organization tokens get an id to list and revoke them by, and their last four characters to
-- recognise them by; the secret itself stays stored only as its SHA-256. Tokens made before
-- this take their id from their digest and have no last four characters.
ALTER TABLE api_tokens ADD COLUMN id TEXT;
ALTER TABLE api_tokens ADD COLUMN last4 TEXT;
UPDATE api_tokens SET id = 't-' || substr(token_sha256, 1, 16);
CREATE UNIQUE INDEX api_tokens_id ON api_tokens (id);
