"""The audit trail: order chains, trade listings and the integrity of a log; queries over the log alone."""
