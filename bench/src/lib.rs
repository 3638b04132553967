//! Baselines and probes used by `scripts/bench`: a bare poem server to compare the
//! middleware stack against, and a timer for permission checks at different clinic counts.
