"""bitloot core."""
