-- What a join token fixes for the agent that joins with it: its labels
-- (NULL: the agent's own, from its hello) and most runs at once (NULL: the
-- agent's own claim). The agent keeps them for every session, so what it
-- claims cannot win over what the admin decided.
ALTER TABLE join_tokens ADD COLUMN fixed_labels TEXT;
ALTER TABLE join_tokens ADD COLUMN capacity BIGINT;
ALTER TABLE agents ADD COLUMN fixed_labels TEXT;
ALTER TABLE agents ADD COLUMN max_capacity BIGINT;

-- Tokens made before carried labels that joined agents got on top of their
-- own: an unused one now fixes its labels; an agent that joined with one
-- keeps the whole set it has now (the token's and its own), so no selector
-- it served stops matching.
UPDATE join_tokens SET fixed_labels = labels WHERE labels <> '{}';
UPDATE agents SET fixed_labels = labels WHERE builtin = 0 AND EXISTS (
    SELECT 1 FROM join_tokens t WHERE t.used_by = agents.id AND t.labels <> '{}'
);
