-- Reserved for helper h18's migration 0011_queue_pause (branch h18). A placeholder so that
-- branch h20 runs on its own: DROP THIS FILE AT MERGE (the real 0011 replaces it).
SELECT 1;
