-- gcra_cancel. ARGV after P, D, burst: k, the id of the call that reserved the k tokens.
-- -> 1 undone (it was the latest) | 0 a later reservation exists: undoing would let the later
-- one's time count twice, so nothing changes.
local done = gcra_undo(tonumber(ARGV[5]), ARGV[6], G.now)
if done == 1 then gcra_flush(G.now) end
return done
