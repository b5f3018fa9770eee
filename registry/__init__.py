"""The model catalogue: metadata, licences, Hugging Face import, ClamAV and pickle scans,
benchmarks and leaderboard. Not built yet: its RPCs answer UNIMPLEMENTED."""
