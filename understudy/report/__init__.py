"""`understudy report daily`: the day's operations report, built from what the
nodes themselves wrote — their JSON log lines (the minutely `ops stats` line,
role changes, takeovers, halts, PanicStops) and the lock history kept in the
lock backend. Text for people, JSON for machines."""
