"""The ledger: the database, its models and migrations, the states of deliveries and runs, runs and the suppression list."""
