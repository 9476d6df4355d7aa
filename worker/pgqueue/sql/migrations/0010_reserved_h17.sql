-- Reserved for helper h17's migration (branch h17). A placeholder so that branch h20 runs on
-- its own: DROP THIS FILE AT MERGE (the real 0010 replaces it).
SELECT 1;
