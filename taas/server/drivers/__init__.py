"""Service drivers: hooks around every tap resource change (precommit / postcommit)."""
