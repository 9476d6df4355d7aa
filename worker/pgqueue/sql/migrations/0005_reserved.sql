-- Placeholder (branch h2): migration 0005 belongs to another branch of issue 14. This file only
-- keeps the numbering without gaps here; the merge replaces it with the real 0005.
SELECT 1;
