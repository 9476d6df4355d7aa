-- Placeholder (branch h13): migration 0009 belongs to another branch of this round (0010 is
-- h13's). This file only keeps the numbering without gaps here; the merge replaces it with the
-- real 0009.
SELECT 1;
