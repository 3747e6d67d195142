"""The roof: runs that chain stages (iterate), search over them (sweep) and read their artifacts
into a report. It may import any stage; nothing below imports it."""
