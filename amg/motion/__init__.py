"""Stage 3: speech → motion. Audio→Expression (lip-sync), Audio→Head pose (natural motion), head→body."""
