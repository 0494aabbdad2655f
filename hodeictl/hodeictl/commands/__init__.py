"""The typer sub-applications and commands of hodeictl."""
