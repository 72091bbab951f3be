-- PKCE for `xenectl login` (RFC 7636): the S256 challenge xenectl sent with
-- /auth/cli; spending the code needs the verifier that hashes to it. Codes
-- made before this have none and are refused.
ALTER TABLE cli_codes ADD COLUMN challenge TEXT NOT NULL DEFAULT '';
