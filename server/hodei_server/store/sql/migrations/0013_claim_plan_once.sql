-- The claim's plan is made once a session, not at each call. PL/pgSQL planned the query
-- afresh for each claim round (a custom plan: its choice for the first calls, and whenever
-- the generic plan's estimate looks dearer), and that planning cost more the deeper the
-- queue: with 100,000 jobs pending the claim statement took 35-100 % longer than with 1,000
-- while the query itself ran in the same time. The plan is the same either way: the pending
-- index in queue order (sorting is off for this function).
ALTER FUNCTION hodei_claim_pending(jsonb, integer) SET plan_cache_mode = force_generic_plan;
