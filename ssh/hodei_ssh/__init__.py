"""The `ssh` provider: bare-metal hosts reached over SSH and bootstrapped into workers.

`hodeictl host ...` registers hosts (in PostgreSQL, with their pinned host keys), checks
and bootstraps them; the provider draws workers from the registered hosts. Needs
`hodei[ssh]` (asyncssh).
"""
