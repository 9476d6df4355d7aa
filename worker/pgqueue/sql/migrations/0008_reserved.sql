-- Placeholder (branch h13): migration 0008 belongs to another branch of this round (0010 is
-- h13's). This file only keeps the numbering without gaps here; the merge replaces it with the
-- real 0008.
SELECT 1;
